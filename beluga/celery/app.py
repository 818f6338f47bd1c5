"""The Celery application behind `celery -A beluga worker` and the celery executor.

Built once per process from `Settings`; messages use Beluga's msgpack codec (`application/x-beluga`)
and nothing else is accepted, so no pickle ever reaches a worker."""

from __future__ import annotations

import importlib
import threading
import time
import warnings
from typing import Any

from celery import Celery, signals
from celery.exceptions import CPendingDeprecationWarning
from celery.worker.consumer import Consumer
from kombu.serialization import register

from beluga import codec, logs
from beluga.celery import kombu_redis
from beluga.celery.outages import TRANSIENT
from beluga.logs import get_logger
from beluga.settings import Settings, redact

log = get_logger("beluga.celery")
CONTENT_TYPE = "application/x-beluga"
_lock = threading.RLock()  # reentrant: loading settings may import a Django project that calls install()
_apps: dict[Settings | None, Celery] = {}

register("beluga", codec.encode, codec.decode, content_type=CONTENT_TYPE, content_encoding="binary")


def make_app(settings: Settings) -> Celery:
    if settings.broker_url.split(":", 1)[0].endswith("+cluster"):
        from beluga.core.errors import ConfigurationError

        raise ConfigurationError(f"the broker {redact(settings.broker_url)} is a Redis Cluster, which Celery "
                                 "cannot use (kombu has no cluster transport): use a plain Redis or RabbitMQ as "
                                 "BELUGA_BROKER_URL, and the cluster as BELUGA_REDIS_URL")
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
        broker_connection_max_retries=None,  # a worker waits for its broker however long it is away
        worker_hijack_root_logger=False,
        worker_log_format=logs.WORKER_LOG_FORMAT,  # each line about a run names it (beluga.logs)
        worker_send_task_events=True,
        worker_consumer="beluga.celery.app:BelugaConsumer",
        # Activities running when the broker connection is lost keep running: they report to Redis, not
        # the broker, and an attempt whose message is redelivered meanwhile is skipped or ignored.
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    if settings.broker_is_redis:
        kombu_redis.guard_qos()
    if settings.broker_is_redis and settings.broker_visibility_timeout:
        # look for messages past their visibility timeout a few times per timeout, not every 100 s
        app.conf.broker_transport_options = {
            "visibility_timeout": settings.broker_visibility_timeout,
            "unacked_restore_interval": max(1.0, settings.broker_visibility_timeout / 2),
            "unacked_restore_throttle": 1}
    app.conf.beluga_settings = settings
    from beluga.celery import outcome, tasks

    tasks.bind(app)
    outcome.configure(app)
    return app


BELUGA_TASKS = ("beluga.coordinate", "beluga.activity", "beluga.query")
_installed: list[Celery] = []   # the app `install` put Beluga on, in this process


def install(app: Celery, settings: Settings | None = None) -> Celery:
    """Run Beluga's tasks on your own Celery app, so its workers run your tasks and Beluga's (no second
    worker pool). Call it where the app is made (`proj/celery.py`), after configuring it:

        app = Celery("proj")
        app.config_from_object("django.conf:settings", namespace="CELERY")
        beluga.celery.install(app)

    What it does: Beluga's settings come from `settings` (default: `Settings.load()`, which reads Django's
    settings too), except that the app's own broker carries Beluga's tasks; Beluga's tasks are registered
    on the app, with Beluga's msgpack serializer (added to `accept_content`, nothing else of yours
    changes), no results, and routes for the coordinator and query tasks to `BELUGA_DEFAULT_QUEUE`;
    a worker of the app consumes that queue and one queue per activity it has the code of (the modules
    of `BELUGA_IMPORTS`), in addition to the queues you give it, and runs the timer scheduler. Clients
    in the same process (`workflow.new("celery")`) send through this app. Recommended for the workers:
    `worker_prefetch_multiplier = 1` (Beluga's own app sets it), `-E` or `worker_send_task_events` for
    Flower. Returns `app`."""
    settings = settings or Settings.load()
    broker = app.conf.broker_url
    if broker:
        settings = settings.with_overrides(broker_url=str(broker))
    try:
        settings.history_url  # noqa: B018
    except ValueError as exc:
        from beluga.core.errors import ConfigurationError

        raise ConfigurationError(f"beluga.celery.install: the app's broker is not Redis, so Beluga needs "
                                 f"BELUGA_REDIS_URL for its histories ({exc})") from None
    accept = list(app.conf.accept_content or ["json"])
    if "beluga" not in accept and CONTENT_TYPE not in accept:
        app.conf.accept_content = [*accept, "beluga"]
    routes = app.conf.task_routes
    ours = {name: {"queue": settings.default_queue} for name in ("beluga.coordinate", "beluga.query")}
    if routes is None:
        app.conf.task_routes = ours
    elif isinstance(routes, dict):
        app.conf.task_routes = {**routes, **ours}
    else:
        app.conf.task_routes = (ours, *(routes if isinstance(routes, (list, tuple)) else (routes,)))
    if settings.broker_is_redis:
        kombu_redis.guard_qos()
    app.conf.beluga_settings = settings
    app.conf.beluga_installed = True
    from beluga.celery import outcome, tasks

    tasks.bind(app)

    def configure_tasks(sender: Any = None, **_: Any) -> None:
        for name in BELUGA_TASKS:
            task = app.tasks[name]
            task.serializer = "beluga"
            task.ignore_result = True
            task._exec_options = None  # recomputed with the serializer
        outcome.configure(app)

    if app.finalized:
        configure_tasks()
    else:  # do not finalize the app here: its own tasks may not all be declared yet
        app.on_after_finalize.connect(configure_tasks, weak=False)
    with _lock:
        _installed[:] = [app]
    return app


def get_app(settings: Settings | None = None) -> Celery:
    """The app for `settings` (default: the environment's), built once per process and reused; the app
    `install` put Beluga on, for settings that differ from its own at most in the broker URL."""
    with _lock:
        if _installed:
            own = _installed[0].conf.beluga_settings
            if settings is None or settings.with_overrides(broker_url=own.broker_url) == own:
                return _installed[0]
        app = _apps.get(settings)
        if app is None:
            app = _apps[settings] = make_app(settings or Settings.load())
        return app


def import_user_modules(settings: Settings) -> None:
    from beluga.settings import setup_django

    setup_django()  # a Django project's activities may use its models
    for name in settings.imports:
        try:
            importlib.import_module(name)
        except ImportError:
            log.exception("could not import %s (BELUGA_IMPORTS); its workflows and activities are missing", name)


def activity_queue(settings: Settings, name: str) -> str:
    """Each activity has a queue of its own, consumed only by workers that have its code, so a message
    for code no worker has waits there until a worker that has it joins the fleet."""
    return f"{settings.default_queue}.activity.{name}"


class BelugaConsumer(Consumer):
    """Celery's consumer, reconnecting to a lost broker every 0.5-2 s (Celery's default backs off 2, 4,
    6, ... up to 30 s, so a worker could sit idle for half a minute after the broker is back), logging
    the first failure and then one every ten seconds (not one per try)."""

    def ensure_connected(self, conn: Any) -> Any:
        ensure = conn.ensure_connection

        def paced(errback: Any = None, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("interval_start", 0.5)
            kwargs.setdefault("interval_step", 0.5)
            kwargs.setdefault("interval_max", 2)
            last = [-1e9]

            def quiet(exc: Exception, interval: float) -> None:
                now = time.monotonic()
                if errback is not None and now - last[0] >= 10:
                    last[0] = now
                    errback(exc, interval)

            return ensure(quiet, *args, **kwargs)

        conn.ensure_connection = paced
        return super().ensure_connected(conn)


@signals.celeryd_after_setup.connect
def _on_worker_setup(sender: Any = None, instance: Any = None, **_: Any) -> None:
    app = getattr(instance, "app", None)
    settings = getattr(getattr(app, "conf", None), "beluga_settings", None)
    if not isinstance(settings, Settings):
        return
    import_user_modules(settings)
    from beluga.celery.runtime import runtime
    from beluga.core.definitions import registry

    if getattr(app.conf, "beluga_installed", False):  # a team's own app: consume Beluga's queue as well
        app.amqp.queues.select_add(settings.default_queue)
    for name in sorted(registry.activities):
        app.amqp.queues.select_add(activity_queue(settings, name))
    try:
        runtime(app).fleet.publish_names(sorted(registry.workflows), sorted(registry.activities))
    except TRANSIENT as exc:  # the scheduler announces them once Redis answers
        log.warning("could not announce this worker's workflows and activities yet: %s", exc)


@signals.worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    if isinstance(getattr(getattr(app, "conf", None), "beluga_settings", None), Settings):
        from beluga.celery.runtime import runtime
        from beluga.celery.scheduler import start_scheduler
        from beluga.core.definitions import registry

        settings = app.conf.beluga_settings
        # Celery warns at every lost broker connection that activities keep running (see make_app); set up
        # here, after Celery's logging set-up asked to see its warnings always.
        warnings.filterwarnings("ignore", message=r"\s*In Celery 5\.1 we introduced an optional breaking change",
                                category=CPendingDeprecationWarning)
        log.info("beluga worker %s: broker %s, histories in %s, imports %s, activities %s", sender.hostname,
                 redact(settings.broker_url), redact(settings.history_url), ",".join(settings.imports),
                 ",".join(sorted(registry.activities)))
        check_persistence(runtime(app).store.redis, settings.history_url)
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
    """Renew the deadline of an activity attempt whose message this worker just took, unless it is far
    enough ahead (see `Holds`), so that a worker that dies holding it is noticed within the lease; and
    put a Celery retry's ETA, given on the fleet's clock, on this worker's (see `eta_on_local_clock`)."""
    if request is None or request.type != "beluga.activity":  # .name is the Flower shadow name
        return
    app = getattr(sender, "app", None)
    if not isinstance(getattr(getattr(app, "conf", None), "beluga_settings", None), Settings):
        return
    from beluga.celery.attempts import DUE, eta_on_local_clock
    from beluga.celery.coordinator import UNTIL
    from beluga.celery.runtime import runtime

    args = request.args
    try:
        attempt = (args[0], int(args[2]), int(args[3]))
        until = (args[6] or {}).get(UNTIL)
        due = (args[6] or {}).get(DUE)
    except Exception:  # a malformed message is rejected by the task itself; never break the consumer
        return
    rt = runtime(app)
    rt.holds.note(attempt, until if isinstance(until, float) else None)
    if due is not None:
        eta_on_local_clock(request, rt.fleet.clock)


@signals.worker_shutdown.connect
def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    from beluga import metrics
    from beluga.celery.scheduler import stop_scheduler

    stop_scheduler()
    metrics.worker_shutdown()


@signals.after_setup_logger.connect
def _on_logging_set_up(sender: Any = None, logger: Any = None, format: str | None = None, **_: Any) -> None:
    """A worker log format naming `%(beluga)s` needs the run fields on every record its handlers see."""
    if logger is not None and format and "%(beluga)s" in format:
        from celery.utils.log import get_multiprocessing_logger

        logs.add_to_handlers(logger)
        logs.add_to_handlers(get_multiprocessing_logger())


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """In the worker's main process, before its pool starts: serve metrics when BELUGA_METRICS_PORT is set."""
    app = getattr(sender, "app", None)
    settings = getattr(getattr(app, "conf", None), "beluga_settings", None)
    if isinstance(settings, Settings) and settings.metrics_port:
        from beluga import metrics
        from beluga.celery.runtime import runtime

        metrics.serve_worker(settings.metrics_port, runtime(app).store)


from beluga.celery import observe  # noqa: E402,F401  (connects the tasks' log, trace and metric signals)
