"""The Celery application behind `celery -A beluga worker` and the celery executor.

Built once per process from `Settings`; messages use Beluga's msgpack codec (`application/x-beluga`)
and nothing else is accepted, so no pickle ever reaches a worker."""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import warnings
from typing import Any

from celery import Celery, bootsteps, signals
from celery.exceptions import CPendingDeprecationWarning
from celery.worker.consumer import Consumer
from kombu.serialization import register

from beluga import codec, logs
from beluga.celery import kombu_redis
from beluga.logs import get_logger
from beluga.settings import UNCONFIGURED, Settings, redact

log = get_logger("beluga.celery")
CONTENT_TYPE = "application/x-beluga"
_lock = threading.RLock()  # reentrant: loading settings may import a Django project that calls install()
# The app of each settings asked for (None: the environment's), one per process: built by `get_app`, or
# the app `install` put Beluga on, entered under its settings, those it was given, and None.
_apps: dict[Settings | None, Celery] = {}

register("beluga", codec.encode, codec.decode, content_type=CONTENT_TYPE, content_encoding="binary")


def make_app(settings: Settings) -> Celery:
    if not settings.broker_url:
        from beluga.core.errors import ConfigurationError

        raise ConfigurationError(UNCONFIGURED)
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
        kombu_redis.configure(app, settings)
    if settings.broker_is_redis and settings.broker_visibility_timeout:
        # look for messages past their visibility timeout a few times per timeout, not every 100 s
        app.conf.broker_transport_options = {
            **app.conf.broker_transport_options,
            "visibility_timeout": settings.broker_visibility_timeout,
            "unacked_restore_interval": max(1.0, settings.broker_visibility_timeout / 2),
            "unacked_restore_throttle": 1}
    app.conf.beluga_settings = settings
    app.steps["worker"].update((UserModules, FleetWorkerStep))
    from beluga.celery import outcome, tasks

    tasks.bind(app)
    outcome.configure(app)
    return app


BELUGA_TASKS = ("beluga.coordinate", "beluga.wake", "beluga.activity", "beluga.query")
ROUTED = ("beluga.coordinate", "beluga.wake", "beluga.query")  # to BELUGA_DEFAULT_QUEUE (activities: their own)


def install(app: Celery, settings: Settings | None = None) -> Celery:
    """Run Beluga's tasks on your own Celery app, so its workers run your tasks and Beluga's (no second
    worker pool). Call it where the app is made (`proj/celery.py`), after configuring it:

        app = Celery("proj")
        app.config_from_object("django.conf:settings", namespace="CELERY")
        beluga.celery.install(app)

    What it does: Beluga's settings come from `settings` (default: `Settings.load()`, which reads Django's
    settings too), except that the app's own broker carries Beluga's tasks; Beluga's tasks are registered
    on the app, with Beluga's msgpack serializer (added to `accept_content`, nothing else of yours
    changes), no results, and routes for the coordinator, wake and query tasks to `BELUGA_DEFAULT_QUEUE`;
    a worker of the app consumes that queue and one queue per activity it has the code of (the modules
    of `BELUGA_IMPORTS`, which must all import or the worker does not start), and a queue of its own, in
    addition to the queues you give it, and runs the timer scheduler. Clients
    in the same process (`workflow.new("celery")`) send through this app. Recommended for the workers:
    `worker_prefetch_multiplier = 1` (Beluga's own app sets it), `-E` or `worker_send_task_events` for
    Flower. Returns `app`."""
    given = settings or Settings.load()
    broker = app.conf.broker_url
    settings = given.with_overrides(broker_url=str(broker)) if broker else given
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
    ours = {name: {"queue": settings.default_queue} for name in ROUTED}
    if routes is None:
        app.conf.task_routes = ours
    elif isinstance(routes, dict):
        app.conf.task_routes = {**routes, **ours}
    else:
        app.conf.task_routes = (ours, *(routes if isinstance(routes, (list, tuple)) else (routes,)))
    if settings.broker_is_redis:
        kombu_redis.guard_qos()
        kombu_redis.configure(app, settings)
    app.conf.beluga_settings = settings
    app.conf.beluga_installed = True
    app.steps["worker"].update((UserModules, FleetWorkerStep))
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
        for key in (None, given, settings):
            _apps[key] = app
    return app


def get_app(settings: Settings | None = None) -> Celery:
    """The app for `settings` (default: the environment's), built once per process and reused; the app
    `install` put Beluga on, for its settings (those it was given, or the environment's, with the app's
    broker) and by default."""
    with _lock:
        app = _apps.get(settings)
        if app is None:
            app = _apps[settings] = make_app(settings or Settings.load())
        return app


def import_user_modules(settings: Settings) -> list[tuple[str, BaseException]]:
    """Import the modules of `BELUGA_IMPORTS`, every one of them: [(module, what its import raised)] for
    those that failed, whatever they raised. The current directory is importable, as `celery -A` makes
    it only while it looks for the app, so `BELUGA_IMPORTS=workflows celery -A beluga worker` run in the
    directory of `workflows.py` finds it."""
    from beluga.settings import setup_django

    if settings.imports and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    setup_django()  # a Django project's activities may use its models
    failed: list[tuple[str, BaseException]] = []
    for name in settings.imports:
        try:
            importlib.import_module(name)
        except Exception as exc:  # whatever a module raises, the worker must not start without it
            failed.append((name, exc))
    return failed


EX_CONFIG = 78  # sysexits.h: a configuration error (the worker's modules do not import)


class UserModules(bootsteps.Step):
    """A worker bootstep: imports `BELUGA_IMPORTS` as the worker is built, after Celery set up its logging
    and before it starts its pool or consumes a message. A module that fails to import (any exception)
    stops the worker with exit status 78 (EX_CONFIG) and a log line naming the module and the error: a
    worker without some of its code would take work it cannot do (wake tasks of workflows it lacks). Not
    a signal receiver: Celery only logs what those raise."""

    name = "beluga.imports"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        settings = getattr(getattr(getattr(parent, "app", None), "conf", None), "beluga_settings", None)
        if not isinstance(settings, Settings):
            return
        failed = import_user_modules(settings)
        for name, exc in failed:
            log.critical("cannot import %s (BELUGA_IMPORTS): %s: %s", name, type(exc).__name__, exc,
                         exc_info=(type(exc), exc, exc.__traceback__))
        if failed:
            names = ", ".join(f"{name} ({type(exc).__name__}: {exc})" for name, exc in failed)
            _refuse(f"cannot import {names} (BELUGA_IMPORTS)")
        from beluga.core.definitions import registry

        if not registry.workflows and not registry.activities:
            _refuse("it has no workflows and no activities: set BELUGA_IMPORTS to the modules that define them "
                    f"(now {','.join(settings.imports) or 'unset'}; e.g. BELUGA_IMPORTS=myapp.workflows, or "
                    "beluga.demo for the demo's order workflow)")
        queues = parent.app.amqp.queues
        if getattr(parent.app.conf, "beluga_installed", False) or settings.default_queue in queues.consume_from:
            return
        if not registry.activities:  # the activity queues are added for the activities it has, nothing else
            _refuse(f"it consumes none of the queues Beluga sends to: add -Q {settings.default_queue} (the "
                    f"queue of coordinator, wake and query tasks; now -Q {','.join(queues.consume_from)})")
        log.warning("this worker runs activities only: it does not consume %r, where coordinator, wake and query "
                    "tasks go (add -Q %s if no other worker does)", settings.default_queue, settings.default_queue)


class FleetWorkerStep(bootsteps.Step):
    """A worker bootstep, after `UserModules`: builds the worker's `FleetWorker` once, in its main process
    (its pool's processes inherit it), and hands it to the tasks (`app.beluga_process`, read by
    `FleetTask.worker`); refuses to start (exit status 1) on a history Redis that may evict keys (see
    `check_history_redis`), before the worker takes any message; serves metrics when BELUGA_METRICS_PORT
    is set."""

    name = "beluga.worker"
    requires = (UserModules,)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        app = getattr(parent, "app", None)
        settings = getattr(getattr(app, "conf", None), "beluga_settings", None)
        if not isinstance(settings, Settings):
            return
        from beluga.celery.worker import FleetWorker
        from beluga.core.errors import ConfigurationError

        worker = FleetWorker(app, settings, parent.hostname)
        try:  # SystemExit is what Celery's start-up lets through
            check_history_redis(worker.store.redis, settings.history_url)
        except ConfigurationError as exc:
            log.critical("refusing to start: %s", exc)
            raise SystemExit(1) from None
        try:  # read before the pool forks: every pool process has it
            worker.fleet.identity()
        except Exception as exc:  # noqa: BLE001 - read again at the first message
            log.warning("could not read this fleet's id yet: %s", exc)
        app.beluga_process = worker
        if settings.metrics_port:
            from beluga import metrics

            if metrics.serve_worker(settings.metrics_port, worker.store):
                metrics.slots(int(getattr(parent, "concurrency", None) or 1))  # the pool's; its tasks take them


def _refuse(why: str) -> None:
    """A worker that could not do its job exits with EX_CONFIG, saying why on stderr as well, where a
    supervisor shows it even when the log goes to a file."""
    log.critical("not starting: %s", why)
    print(f"beluga worker: not starting: {why}", file=sys.stderr, flush=True)
    raise SystemExit(EX_CONFIG)


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


@signals.worker_ready.connect
def _on_worker_ready(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    if isinstance(getattr(getattr(app, "conf", None), "beluga_settings", None), Settings):
        from beluga.core.definitions import registry

        settings = app.conf.beluga_settings
        # Celery warns at every lost broker connection that activities keep running (see make_app); set up
        # here, after Celery's logging set-up asked to see its warnings always.
        warnings.filterwarnings("ignore", message=r"\s*In Celery 5\.1 we introduced an optional breaking change",
                                category=CPendingDeprecationWarning)
        log.info("beluga worker %s: broker %s, histories in %s, imports %s, activities %s", sender.hostname,
                 redact(settings.broker_url), redact(settings.history_url), ",".join(settings.imports),
                 ",".join(sorted(registry.activities)))


SAFE_POLICY = "noeviction"
_unchecked: set[str] = set()  # history URLs this process could not check (said once)


def check_history_redis(client: Any, url: str, *, worker: bool = True) -> None:
    """Check the history Redis as a worker or client starts. Its histories are the only record of each
    run, so a Redis that may evict keys (`maxmemory-policy` other than `noeviction`: allkeys-lru is a
    common managed default) would lose whole runs or parts of their histories under memory pressure:
    refused with `ConfigurationError` naming the setting. (volatile-* policies are refused too: they evict
    the keys Beluga gives a time to live, a signal's request ids among them, whose loss records a retried
    signal twice; and a later CONFIG SET maxmemory would start the eviction without a word.) A worker
    also says once when the Redis would forget everything on a restart (no AOF, no snapshots).
    Managed Redis services often disable or rename CONFIG: then this says once, at INFO, that it could
    not check, and lets the process start."""
    try:
        policies = _config_values(client, "maxmemory-policy")
        aof = _config_values(client, "appendonly") if worker else []
        save = _config_values(client, "save") if worker else []
    except Exception as exc:  # CONFIG renamed, disabled or denied by an ACL (redis.ResponseError), or unreachable
        if url not in _unchecked:
            _unchecked.add(url)
            log.info("could not check the eviction policy and persistence of the history Redis %s (%s); make "
                     "sure it runs with maxmemory-policy noeviction and appendonly yes (see Durability in the "
                     "docs/production.md)", redact(url), exc)
        return
    evicting = sorted({p for p in policies if p != SAFE_POLICY})
    if evicting:
        from beluga.core.errors import ConfigurationError

        raise ConfigurationError(
            f"the history Redis {redact(url)} runs with maxmemory-policy {', '.join(evicting)}: under memory "
            "pressure it would evict keys, losing whole workflow runs or parts of their histories. Set "
            "maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, or the managed service's "
            "parameter group); a full Redis then refuses writes, which Beluga retries, instead of losing data")
    if worker and "no" in aof and not any(save):
        log.warning("the history Redis %s persists nothing (appendonly no, save \"\"): a restart of it loses "
                    "every workflow history; set appendonly yes (see docs/production.md)", redact(url))
    elif worker and "no" in aof:
        log.info("the history Redis %s keeps RDB snapshots only (save %s): a crash loses the steps since the "
                 "last one; appendonly yes loses none (see docs/production.md)", redact(url),
                 ", ".join(s for s in save if s))


def _config_values(client: Any, name: str) -> list[str]:
    """CONFIG GET `name` on every node that answers for `client`: a Redis Cluster's client gives one
    answer per node."""
    got = client.config_get(name)
    if got and all(isinstance(v, dict) for v in got.values()):
        return [str(v.get(name, "")) for v in got.values()]
    return [str(got.get(name, ""))] if name in got else []


@signals.worker_shutdown.connect
def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    from beluga import metrics

    metrics.worker_shutdown()


@signals.after_setup_logger.connect
def _on_logging_set_up(sender: Any = None, logger: Any = None, format: str | None = None, **_: Any) -> None:
    """A worker log format naming `%(beluga)s` needs the run fields on every record its handlers see."""
    if logger is not None and format and "%(beluga)s" in format:
        from celery.utils.log import get_multiprocessing_logger

        logs.add_to_handlers(logger)
        logs.add_to_handlers(get_multiprocessing_logger())


from beluga.celery import observe  # noqa: E402,F401  (connects the tasks' log, trace and metric signals)
