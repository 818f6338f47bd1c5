"""Beluga on Celery: the app, the coordinator and activity tasks, the timer scheduler, the fleet's Redis
state. Import `beluga.celery.app.get_app` for the application; `beluga.celery.install(app)` puts
Beluga's tasks on a Celery app of your own."""

from __future__ import annotations

from typing import Any


def install(app: Any, settings: Any = None) -> Any:
    """Run Beluga's tasks on your own Celery app (see `beluga.celery.app.install`)."""
    from beluga.celery.app import install as _install

    return _install(app, settings)


__all__ = ["install"]
