"""Beluga on Celery: the app, the coordinator and activity tasks, the timer scheduler, the fleet's Redis
state. Import `beluga.celery.app.get_app` for the application."""
