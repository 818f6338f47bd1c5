"""Beluga in a Django project.

1. `INSTALLED_APPS += ["beluga.contrib.django"]`, and Beluga's settings in `settings.py` under their
   environment names (`BELUGA_REDIS_URL`, `BELUGA_IMPORTS = "shop.workflows"`, `BELUGA_CONSOLE_TOKEN`,
   ...; `CELERY_BROKER_URL` is the broker unless `BELUGA_BROKER_URL` is set). The environment still wins.
2. Workers read those settings when they start: `DJANGO_SETTINGS_MODULE=shop.settings celery -A beluga
   worker`, or, to run Beluga's tasks on the project's own Celery app (one worker pool for both),
   `beluga.celery.install(app)` in `shop/celery.py` and `celery -A shop worker`. Either way Django is set
   up before the workflows' modules are imported, so activities may use the ORM.
3. Views start, signal and query runs with `workflow.new("celery")`, which needs no workflow code.
4. The web console at a URL of the project: `path("beluga/", include("beluga.contrib.django.urls"))`
   (reading needs a logged-in staff user unless `BELUGA_CONSOLE_PUBLIC = True`; writes need the token).

`examples/django_project/` is a complete project.
"""
