"""Beluga: durable, event-sourced workflows on a Celery worker fleet.

`from beluga import workflow` is the API. `beluga.app` (also `beluga.celery`) is the Celery application,
built on first access, so that `celery -A beluga worker` works and importing Beluga stays cheap.
"""

from typing import Any

__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from beluga.celery.app import get_app

        return get_app()
    if name == "workflow":
        import importlib

        return importlib.import_module("beluga.workflow")
    raise AttributeError(f"module 'beluga' has no attribute {name!r}")
