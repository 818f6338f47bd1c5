"""The Django app `beluga.contrib.django` (label `beluga`)."""

from __future__ import annotations

from django.apps import AppConfig


class BelugaConfig(AppConfig):
    name = "beluga.contrib.django"
    label = "beluga"
    verbose_name = "Beluga workflows"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        """Nothing is connected at start-up: the web process opens Redis and broker connections on the
        first call of `workflow.new("celery")` or of the console."""
