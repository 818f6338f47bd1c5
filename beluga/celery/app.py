"""The Celery application behind `celery -A beluga worker` and the celery executor.

Built once per process from `Settings`; messages use Beluga's msgpack codec (`application/x-beluga`)
and nothing else is accepted, so no pickle ever reaches a worker."""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from celery import Celery, signals
from kombu.serialization import register

from beluga import codec
from beluga.settings import Settings, redact

log = logging.getLogger("beluga.celery")
CONTENT_TYPE = "application/x-beluga"
_lock = threading.Lock()
_apps: dict[Settings | None, Celery] = {}

register("beluga", codec.encode, codec.decode, content_type=CONTENT_TYPE, content_encoding="binary")


def make_app(settings: Settings) -> Celery:
    app = Celery("beluga", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="beluga",
        result_serializer="beluga",
        accept_content=["beluga"],
        event_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.default_queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
    )
    app.conf.beluga_settings = settings
    from beluga.celery import tasks

    tasks.bind(app)
    return app


def get_app(settings: Settings | None = None) -> Celery:
    """The app for `settings` (default: the environment's), built once per process and reused."""
    with _lock:
        app = _apps.get(settings)
        if app is None:
            app = _apps[settings] = make_app(settings or Settings.load())
        return app


def import_user_modules(settings: Settings) -> None:
    for name in settings.imports:
        try:
            importlib.import_module(name)
        except ImportError:
            log.exception("could not import %s (BELUGA_IMPORTS); its workflows and activities are missing", name)


def activity_queue(settings: Settings, name: str) -> str:
    """Each activity has a queue of its own, consumed only by workers that have its code, so a message
    for code no worker has waits there until a worker that has it joins the fleet."""
    return f"{settings.default_queue}.activity.{name}"


@signals.celeryd_after_setup.connect
def _on_worker_setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
    app = getattr(instance, "app", None)
    settings = getattr(getattr(app, "conf", None), "beluga_settings", None)
    if not isinstance(settings, Settings):
        return
    import_user_modules(settings)
    from beluga.celery.tasks import runtime
    from beluga.core.definitions import registry

    for name in sorted(registry.activities):
        app.amqp.queues.select_add(activity_queue(settings, name))
    runtime(app).fleet.publish_names(sorted(registry.workflows), sorted(registry.activities))


@signals.worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    if isinstance(getattr(getattr(app, "conf", None), "beluga_settings", None), Settings):
        from beluga.celery.scheduler import start_scheduler
        from beluga.celery.tasks import runtime
        from beluga.core.definitions import registry

        settings = app.conf.beluga_settings
        log.info("beluga worker %s: broker %s, histories in %s, imports %s, activities %s", sender.hostname,
                 redact(settings.broker_url), redact(settings.history_url), ",".join(settings.imports),
                 ",".join(sorted(registry.activities)))
        check_persistence(runtime(app).store.redis, settings.history_url)
        runtime(app).fleet.alive(sender.hostname)
        start_scheduler(app, sender.hostname)


def check_persistence(client: Any, url: str) -> None:
    """Say once, as a worker starts, when the history Redis would forget everything on a restart: its
    histories are the only record of each run, so without AOF (or at least snapshots) a restart undoes
    every acknowledged step. Managed Redis services often disable or rename CONFIG; then this says only
    that it could not check. Never raises: a worker must start whatever this finds."""
    try:
        aof = client.config_get("appendonly").get("appendonly")
        save = client.config_get("save").get("save")
    except Exception as exc:  # CONFIG renamed, disabled or denied by an ACL (redis.ResponseError), or unreachable
        log.info("could not check the persistence of the history Redis %s (%s); make sure it runs with "
                 "appendonly yes (see Durability in the README)", redact(url), exc)
        return
    if aof == "no" and not save:
        log.warning("the history Redis %s persists nothing (appendonly no, save \"\"): a restart of it loses "
                    "every workflow history; set appendonly yes (see Durability in the README)", redact(url))
    elif aof == "no":
        log.info("the history Redis %s keeps RDB snapshots only (save %s): a crash loses the steps since the "
                 "last one; appendonly yes loses none (see Durability in the README)", redact(url), save)


@signals.task_received.connect
def _on_task_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """Note which worker holds an activity's message before it starts (see `Fleet.received`)."""
    if request is None or request.type != "beluga.activity":  # .name is the Flower shadow name
        return
    app = getattr(sender, "app", None)
    if not isinstance(getattr(getattr(app, "conf", None), "beluga_settings", None), Settings):
        return
    from beluga.celery.tasks import runtime

    args = request.args
    try:
        workflow_id, run_id, seq, attempt = args[0], args[1], args[2], args[3]
    except Exception:  # a malformed message is rejected by the task itself; never break the consumer
        return
    runtime(app).receipts.note((workflow_id, seq, attempt, run_id, request.hostname))


@signals.worker_shutdown.connect
def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    from beluga.celery.scheduler import stop_scheduler

    stop_scheduler()
