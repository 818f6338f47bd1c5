"""`path("beluga/", include("beluga.contrib.django.urls"))`: the web console under that prefix."""

from __future__ import annotations

from django.urls import re_path

from beluga.contrib.django.views import console

app_name = "beluga"
urlpatterns = [re_path(r"^(?P<path>.*)$", console, name="console")]
