from django.urls import include, path

from shop import views

urlpatterns = [
    path("", views.orders, name="orders"),
    path("orders/<str:workflow_id>/approve", views.approve, name="approve"),
    path("beluga/", include("beluga.contrib.django.urls")),       # the web console
]
