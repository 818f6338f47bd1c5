"""Settings of the example shop. The URLs come from SHOP_* variables here only to show that Beluga reads
Django's settings: Beluga's own environment variables (BELUGA_*) are not needed, though they would win."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = ["beluga.contrib.django", "shop"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware", "django.middleware.csrf.CsrfViewMiddleware"]
ROOT_URLCONF = "shop.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES: dict = {}       # the example keeps no data of its own; Beluga keeps the runs in Redis
USE_TZ = True

# --- Celery: the team's own app (shop/celery.py reads CELERY_*) --------------------------------------------
CELERY_BROKER_URL = os.environ.get("SHOP_BROKER_URL", "redis://localhost:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("SHOP_RESULT_URL", CELERY_BROKER_URL)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_SEND_TASK_EVENTS = True

# --- Beluga (read by workers, clients and the console; CELERY_BROKER_URL is the broker) -----------------
BELUGA_REDIS_URL = os.environ.get("SHOP_REDIS_URL", CELERY_BROKER_URL)
BELUGA_IMPORTS = "shop.workflows"
BELUGA_CONSOLE_TOKEN = os.environ.get("SHOP_CONSOLE_TOKEN")     # None: the console at /beluga/ is read-only
BELUGA_CONSOLE_PUBLIC = DEBUG                                    # else reading it needs a staff user

SHOP_NAME = "The Beluga Shop"
