"""The project's own Celery app, as a Django team has it, with Beluga's tasks installed on it: one worker
pool runs the team's tasks and Beluga's workflows (`celery -A shop worker`)."""

import os

from celery import Celery

import beluga.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

app = Celery("shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
beluga.celery.install(app)     # Beluga's settings come from settings.py (BELUGA_*), the broker is the app's
