"""What the command works on: a store given by URL (with the in-process executor when a command needs
one), or the Celery fleet's client. Opened lazily, so `list` on a store never starts an engine."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from beluga.cli.errors import CLIError
from beluga.core.definitions import registry
from beluga.core.records import WorkflowState
from beluga.settings import Settings, redact
from beluga.testing.replayer import import_modules

if TYPE_CHECKING:
    from beluga.executors.base import DurableExecutor
    from beluga.stores.base import WorkflowStore

STORE_HELP = ("sqlite:///relative.db, sqlite:////absolute.db, redis://[:password@]host:port/db (or rediss://), "
              "redis+cluster://host:port (or rediss+cluster://), nats://host:4222[?prefix=P], "
              "kafka://host:9092[?prefix=P&topic=T], dapr://host:3500[?store=statestore&prefix=P] (or dapr+https://)")
# the provider stores by URL scheme: (store name, what the URL's host and query become)
_PROVIDER_SCHEMES = {"nats": "nats", "tls": "nats", "kafka": "kafka", "dapr": "dapr", "dapr+http": "dapr",
                     "dapr+https": "dapr"}


class Target:
    """`kind` is "sqlite", "redis", "nats", "kafka", "dapr" (an in-process store) or "celery" (the fleet)."""

    def __init__(self, *, store_url: str | None, executor: str | None, imports: str | None,
                 settings: Settings | None = None, may_create: bool = False) -> None:
        executor = executor or ("default" if store_url else None)
        if executor not in (None, "default", "celery", "temporal"):
            raise CLIError(f"unknown executor {executor!r}; use --executor celery or temporal, or --store URL for "
                           "the in-process executor")
        if executor in REMOTE and store_url:
            raise CLIError(f"--store names an in-process store; --executor {executor} finds its runs through its "
                           f"own settings ({'BELUGA_REDIS_URL' if executor == 'celery' else 'BELUGA_TEMPORAL_*'}; "
                           "drop one of the two)")
        if executor is None:
            raise CLIError("say where the runs are: --store URL (" + STORE_HELP + ") or --executor celery "
                           "(or set BELUGA_STORE)")
        if executor == "default" and not store_url:
            raise CLIError("the in-process executor needs --store URL (" + STORE_HELP + ")")
        self._settings = settings
        self._executor: DurableExecutor | None = None
        self._owned = True   # this target made its executor and store, and closes them
        self._idle = threading.Event()
        self._armed = False
        self._lock = threading.Lock()
        if executor == "celery":
            self.kind = "celery"
            self.settings = settings or Settings.load()
            self.url = redact(self.settings.history_url if self._redis_histories() else self.settings.broker_url)
            self._store: WorkflowStore | None = None
        elif executor == "temporal":
            self.kind = "temporal"
            self.settings = settings or Settings.load()
            self.url = f"{self.settings.temporal_target} (namespace {self.settings.temporal_namespace})"
            self._store = None
        else:
            self.settings = settings or Settings.load()
            self.kind, self._store, self.url = _open_store(str(store_url), may_create, self.settings)
        # Modules named with --imports must import. Those of BELUGA_IMPORTS (for the fleet: the workers'
        # setting) are tried quietly: most commands need no code, and `need_code` reports what failed.
        self.import_problems: list[str] = []
        if imports is not None:
            self.imports = import_modules(imports)
        else:
            self.imports = []
            names = (self.settings.imports if self.kind == "celery"
                     else [m for m in os.environ.get("BELUGA_IMPORTS", "").split(",") if m.strip()])
            for name in names:
                try:
                    self.imports += import_modules([name])
                except Exception as exc:
                    self.import_problems.append(str(exc))

    @classmethod
    def for_executor(cls, executor: DurableExecutor) -> Target:
        """A target on an executor the caller made (and closes): the web console mounted in an app that
        has one. Its kind is "celery" for the fleet's client, "store" for an in-process executor."""
        from beluga.celery.client import CeleryExecutor

        inner: Any = executor
        while hasattr(inner, "inner"):   # middleware (with_tracing, with_hooks) wraps the executor
            inner = inner.inner
        self = cls.__new__(cls)
        self._executor, self._owned, self._lock = executor, False, threading.Lock()
        self._idle, self._armed = threading.Event(), False
        self.imports, self.import_problems = [], []
        if isinstance(inner, CeleryExecutor):
            self.kind, self.settings = "celery", inner._rt.settings
            self._settings = self.settings
            self.url = redact(self.settings.history_url)
        else:
            self.kind, self.settings, self._settings = "store", Settings(), None
            self.url = type(inner.store).__name__
        self._store = inner.store
        return self

    def _redis_histories(self) -> bool:
        try:
            self.settings.history_url  # noqa: B018
            return True
        except ValueError:
            return False

    # --- the store and the executor ---------------------------------------------------------------------
    @property
    def remote(self) -> bool:
        """The runs are driven elsewhere (the fleet's workers, Temporal's): commands need no workflow code
        here and carry nothing forward in this process."""
        return self.kind in REMOTE

    @property
    def store(self) -> WorkflowStore:
        if self._store is None:
            if self.kind == "temporal":  # Temporal's visibility, read through its own client
                from beluga.temporal.executor import Connection
                from beluga.temporal.store import TemporalStore

                self._store = TemporalStore(connection=Connection.from_settings(self.settings))
            else:
                self._store = self.executor().store  # type: ignore[attr-defined]
        return self._store

    def executor(self) -> DurableExecutor:
        with self._lock:  # the web console serves requests on several threads
            return self._make_executor()

    def _make_executor(self) -> DurableExecutor:
        if self._executor is None:
            if self.kind == "celery":
                from beluga.celery.client import CeleryExecutor

                self._executor = CeleryExecutor(self.settings)
            elif self.kind == "temporal":  # a client only: `beluga temporal-worker` processes run the code
                from beluga.core.errors import ConfigurationError
                from beluga.temporal.executor import Connection, TemporalExecutor

                try:
                    self._executor = TemporalExecutor(connection=Connection.from_settings(self.settings),
                                                      task_queue=self.settings.temporal_task_queue)
                except ConfigurationError as exc:
                    raise CLIError(str(exc)) from None
            else:
                from beluga.inprocess.executor import InProcessExecutor

                # recover=False: this short-lived process drives only the runs it is told to act on
                # schedule_interval=None: schedules fire in the processes that run on this store, not here
                ex = InProcessExecutor(self.store, recover=False, workers=4, schedule_interval=None)
                ex._engine.on_idle = self._on_idle
                self._executor = ex
        return self._executor

    def untaken(self, workflow_id: str, attempts: list[tuple[int, int]]) -> dict[tuple[int, int], tuple[str, bool]]:
        """Of these (seq, attempt) of a fleet's run, those that no worker has taken yet -> (the queue
        they wait in, whether a live worker consumes it). Empty for an in-process store, and on error
        (only what `show` says of them)."""
        if self.kind != "celery" or not attempts:
            return {}
        try:
            fleet = self.executor().fleet  # type: ignore[attr-defined]
            queues = fleet.waiting_attempts(workflow_id, attempts)
            live = fleet.live_queues() if queues else set()
        except Exception:  # noqa: BLE001 - never fail a page or `show` for it
            return {}
        return {a: (q, q in live) for a, q in queues.items()}

    def load(self, workflow_id: str) -> WorkflowState:
        state = self.store.load(workflow_id)
        if state is None:
            raise CLIError(f"no workflow with id {workflow_id!r} in {self.url}")
        return state

    def need_code(self, workflow_type: str, what: str) -> None:
        """The in-process executor runs the workflow's code here: it must be imported."""
        if not self.remote and workflow_type not in registry.workflows:
            hint = (f"imported {', '.join(self.imports)}, which do not define it" if self.imports
                    else "pass --imports MODULE (or set BELUGA_IMPORTS)")
            if self.import_problems:
                hint += f" ({'; '.join(self.import_problems)})"
            raise CLIError(f"{what} needs the code of workflow type {workflow_type!r}, which is not registered "
                           f"in this process; {hint}")

    # --- driving runs in this process (in-process executor) ---------------------------------------------
    def _on_idle(self, next_due: float | None) -> None:
        # Settled: nothing runs and nothing falls due soon (a short timer or backoff is waited for).
        if self._armed and (next_due is None or next_due > time.time() + SETTLE_HORIZON):
            self._idle.set()

    def settle(self, timeout: float) -> bool:
        """With the in-process executor, wait until the runs this command set going have nothing left to
        do here: no activity attempt running and nothing due within a few seconds. True when settled."""
        if self.remote or self._executor is None:
            return True
        from beluga.inprocess.records import Msg, Nudge

        engine = self._executor._engine  # type: ignore[attr-defined]
        engine.call(Msg("", None, Nudge()))    # everything this command posted has been handled ...
        self._idle.clear()
        self._armed = True               # ... so the next idle report is about what it set going
        engine.post(Msg("", None, Nudge()))
        try:
            return self._idle.wait(timeout)
        finally:
            self._armed = False

    def close(self) -> None:
        if not self._owned:
            return
        if self._executor is not None and self.kind != "celery":
            self._executor.close()
        if self._store is not None and self.kind != "celery" and (self._executor is None
                                                                 or self._store is not getattr(self._executor,
                                                                                               "store", None)):
            self._store.close()


REMOTE = ("celery", "temporal")  # executors whose runs are driven elsewhere
SETTLE_HORIZON = 3.0  # seconds: a timer or retry due sooner than this is waited for before exiting


def _open_store(url: str, may_create: bool, settings: Settings) -> tuple[str, Any, str]:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        rest = url[len("sqlite:"):]
        if not rest.startswith("//") or len(rest) <= 3:
            raise CLIError(f"bad SQLite store URL {url!r}; use {STORE_HELP}")
        path = rest[3:] if rest.startswith("///") else rest[2:]
        if not path:
            raise CLIError(f"bad SQLite store URL {url!r}; use {STORE_HELP}")
        if not may_create and not Path(path).is_file():
            raise CLIError(f"no SQLite store at {path} (from {url}); check the path")
        from beluga.stores.sqlite import SQLiteStore

        return "sqlite", SQLiteStore(path), url
    if scheme in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        prefix = query.pop("prefix", settings.key_prefix)
        clean = urlunsplit(parts._replace(query=urlencode(query)))
        from beluga.stores.redis import RedisStore

        try:
            store = RedisStore(clean, prefix=prefix)
        except ValueError as exc:
            raise CLIError(f"bad Redis URL {redact(url)}: {exc}") from None
        return "redis", store, redact(url)
    if scheme in _PROVIDER_SCHEMES:
        return _open_provider_store(_PROVIDER_SCHEMES[scheme], scheme, url)
    raise CLIError(f"unknown store URL {redact(url)!r}; use {STORE_HELP}")


def _open_provider_store(name: str, scheme: str, url: str) -> tuple[str, Any, str]:
    """A NATS, Kafka or Dapr store from its URL: the host (and port) is the server, the query its options
    (`prefix`, Kafka's `topic`, Dapr's `store`). The store's client library must be installed: the error
    names the extra otherwise."""
    from beluga.core.errors import ConfigurationError
    from beluga.providers import new_store

    parts = urlsplit(url)
    options: dict[str, Any] = dict(parse_qsl(parts.query))
    if not parts.netloc:
        raise CLIError(f"bad {name} store URL {redact(url)!r}: it names no host; use {STORE_HELP}")
    if name == "nats":
        options["url"] = urlunsplit(parts._replace(query=""))
    elif name == "kafka":
        options["bootstrap_servers"] = parts.netloc
    else:
        http = "https" if scheme == "dapr+https" else "http"
        options["url"] = urlunsplit((http, parts.netloc, parts.path, "", ""))
    allowed = {"nats": {"url", "prefix"}, "kafka": {"bootstrap_servers", "prefix", "topic"},
               "dapr": {"url", "prefix", "store"}}[name]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise CLIError(f"the {name} store URL takes {', '.join(sorted(allowed - {'url', 'bootstrap_servers'}))} "
                       f"in its query, not {', '.join(unknown)}")
    try:
        return name, new_store(name, **options), redact(url)
    except ConfigurationError as exc:
        raise CLIError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - the server did not answer, or refused: one line, not a traceback
        raise CLIError(f"cannot open the {name} store at {redact(url)}: {type(exc).__name__}: {exc}") from None
