"""The fleet's settings: one typed object, loaded in one place and passed down.

Sources, later ones winning: defaults, a `KEY=VALUE` file (`BELUGA_CONFIG`, default `config/beluga.env`
when it exists), Django settings (`BELUGA_*`, `CELERY_BROKER_URL`) when Django is configured, and the
environment. Nothing else in Beluga reads the environment."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_ENV = {"broker_url": "BELUGA_BROKER_URL", "redis_url": "BELUGA_REDIS_URL", "imports": "BELUGA_IMPORTS",
        "max_payload_bytes": "BELUGA_MAX_PAYLOAD_BYTES", "lease_seconds": "BELUGA_LEASE_SECONDS",
        "default_queue": "BELUGA_DEFAULT_QUEUE", "key_prefix": "BELUGA_KEY_PREFIX",
        "stuck_retry_seconds": "BELUGA_STUCK_RETRY_SECONDS", "client_retry_seconds": "BELUGA_CLIENT_RETRY_SECONDS",
        "append_replicas": "BELUGA_APPEND_REPLICAS", "append_replicas_timeout": "BELUGA_APPEND_REPLICAS_TIMEOUT",
        "broker_visibility_timeout": "BELUGA_BROKER_VISIBILITY_TIMEOUT", "metrics_port": "BELUGA_METRICS_PORT",
        "console_token": "BELUGA_CONSOLE_TOKEN", "eager_activities": "BELUGA_EAGER_ACTIVITIES",
        "async_concurrency": "BELUGA_ASYNC_CONCURRENCY", "priority_aging": "BELUGA_PRIORITY_AGING",
        "temporal_target": "BELUGA_TEMPORAL_TARGET", "temporal_namespace": "BELUGA_TEMPORAL_NAMESPACE",
        "temporal_task_queue": "BELUGA_TEMPORAL_TASK_QUEUE", "redis_socket_timeout": "BELUGA_REDIS_SOCKET_TIMEOUT",
        "redis_connect_timeout": "BELUGA_REDIS_CONNECT_TIMEOUT", "temporal_tls": "BELUGA_TEMPORAL_TLS",
        "temporal_tls_ca": "BELUGA_TEMPORAL_TLS_CA", "temporal_tls_cert": "BELUGA_TEMPORAL_TLS_CERT",
        "temporal_tls_key": "BELUGA_TEMPORAL_TLS_KEY", "temporal_tls_server_name": "BELUGA_TEMPORAL_TLS_SERVER_NAME",
        "temporal_api_key": "BELUGA_TEMPORAL_API_KEY"}


UNCONFIGURED = ("no broker configured: set BELUGA_BROKER_URL (for example redis://localhost:6379/0; and "
                "BELUGA_REDIS_URL when the broker is RabbitMQ), or CELERY_BROKER_URL in Django's settings")


@dataclass(frozen=True)
class Settings:
    broker_url: str = ""                   # no default: a fleet never falls back to a Redis it was not told of
    redis_url: str | None = None           # defaults to the broker URL when that is Redis; may be a cluster's
    imports: tuple[str, ...] = ()          # modules with workflows and activities (no default); all must import
    max_payload_bytes: int = 2 * 1024 * 1024
    lease_seconds: float = 15.0            # how soon a lost worker's activities are dispatched again (and
    # how long a worker's announcement of its code lives unless renewed: beluga/celery/roster.py)
    default_queue: str = "beluga"
    key_prefix: str = "beluga"
    stuck_retry_seconds: float = 5.0       # first look again at a stuck run; doubles up to 300 s
    client_retry_seconds: float = 10.0     # how long client calls retry while Redis cannot be reached
    # Every Redis connection (histories, fleet, clients, a Redis broker): how long a command may wait for its
    # reply, and a connection for its set-up, before it counts as lost (a frozen or blackholed Redis would
    # otherwise hold a call until TCP gives up, ~15 min). Blocking reads wait in slices shorter than it.
    redis_socket_timeout: float = 5.0
    redis_connect_timeout: float = 3.0
    append_replicas: int = 0               # replicas that must confirm a history write before it counts
    append_replicas_timeout: float = 1.0   # how long a write waits for them (seconds)
    # Redis broker only: seconds before a message taken but not acknowledged is delivered again (Celery's
    # `visibility_timeout`; its default, an hour, when unset). Beluga does not rely on it: lost attempts
    # are found through their leases.
    broker_visibility_timeout: float | None = None
    metrics_port: int | None = None        # serve Prometheus metrics on this port (workers, in-process executor)
    console_token: str | None = None       # the web console's token for writes; None: the console is read-only
    # Consecutive activity attempts a worker may run right after the one it finished, in the same process,
    # instead of sending them through the broker (0: never); then the run goes back through the broker.
    eager_activities: int = 8
    # `async def` activity attempts one process runs at once on its event loop (see beluga/activity_loop.py);
    # a worker's task that finds the loop full waits for room, so the broker's prefetch holds the rest back.
    async_concurrency: int = 100
    # Seconds of waiting for a concurrency permit worth one level of priority (beluga/core/priority.py): a
    # waiter of priority p is passed by no attempt that begins to wait more than (p - 1) x this after it.
    priority_aging: float = 10.0
    # The `temporal` executor and `beluga temporal-worker`: the server's host:port, namespace and task queue.
    temporal_target: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "beluga"
    # Reaching a secured Temporal (Temporal Cloud, a cluster with TLS): TLS with the system's CAs, or the
    # server's CA file; a client certificate and key (PEM files) for mutual TLS; the name the server's
    # certificate carries when it is not the target's host; an API key (sent as a bearer token).
    temporal_tls: bool = False
    temporal_tls_ca: str | None = None
    temporal_tls_cert: str | None = None
    temporal_tls_key: str | None = None
    temporal_tls_server_name: str | None = None
    temporal_api_key: str | None = None

    def __repr__(self) -> str:
        """Passwords in the URLs masked: settings get logged, and `celery inspect conf` and Flower show them."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown.update({k: redact(v) for k, v in shown.items() if k.endswith("_url") and isinstance(v, str)})
        for secret in ("console_token", "temporal_api_key"):
            if shown.get(secret):
                shown[secret] = "***"
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    @property
    def broker_is_redis(self) -> bool:
        return self.broker_url.split(":", 1)[0] in ("redis", "rediss", "unix")

    @property
    def history_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        if self.broker_is_redis:
            return self.broker_url
        if not self.broker_url:
            raise ValueError(UNCONFIGURED)
        raise ValueError("BELUGA_REDIS_URL is required when the broker is not Redis")

    def with_overrides(self, **values: Any) -> Settings:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: _coerce(k, v) for k, v in values.items() if k in known and v is not None})

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, file: str | Path | None = None) -> Settings:
        env = os.environ if environ is None else environ
        settings = cls()
        path = Path(file or env.get("BELUGA_CONFIG", "config/beluga.env"))
        if path.is_file():
            settings = settings.with_overrides(**_read_env_file(path))
        settings = settings.with_overrides(**_django_settings(env))
        return settings.with_overrides(**{k: env.get(var) for k, var in _ENV.items()})


def redact(url: str) -> str:
    """A URL safe to log: the password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _coerce(name: str, value: Any) -> Any:
    if name == "imports" and isinstance(value, str):
        return tuple(m.strip() for m in value.split(",") if m.strip())
    if name in ("max_payload_bytes", "append_replicas", "eager_activities"):
        return int(value)
    if name == "async_concurrency":
        if int(value) < 1:
            raise ValueError("BELUGA_ASYNC_CONCURRENCY must be 1 or more")
        return int(value)
    if name == "priority_aging":
        if not float(value) > 0:
            raise ValueError("BELUGA_PRIORITY_AGING must be more than 0 seconds")
        return float(value)
    if name == "metrics_port":
        return int(value) if str(value).strip() else None
    if name in ("console_token", "temporal_tls_ca", "temporal_tls_cert", "temporal_tls_key",
                "temporal_tls_server_name", "temporal_api_key"):
        return str(value) or None
    if name == "temporal_tls":
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
    if name in ("lease_seconds", "stuck_retry_seconds", "client_retry_seconds", "append_replicas_timeout",
                "broker_visibility_timeout", "redis_socket_timeout", "redis_connect_timeout"):
        return float(value)
    return value


def _read_env_file(path: Path) -> dict[str, str]:
    by_var = {var: key for key, var in _ENV.items()}
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        var, _, value = line.partition("=")
        key = by_var.get(var.strip())
        if key:
            out[key] = value.strip().strip('"').strip("'")
    return out


def _django_settings(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """BELUGA_* (and CELERY_BROKER_URL) from Django's settings: when Django is configured, or when
    DJANGO_SETTINGS_MODULE names a settings module (a worker started with it, `celery -A beluga worker`
    included, reads that module here, before Celery's own Django set-up has run)."""
    env = os.environ if env is None else env
    if "django" not in sys.modules and not env.get("DJANGO_SETTINGS_MODULE"):
        return {}
    try:
        from django.conf import settings as dj  # type: ignore[import-not-found]
    except ImportError:  # Django is not installed
        if env.get("DJANGO_SETTINGS_MODULE"):
            raise ValueError(f"DJANGO_SETTINGS_MODULE={env.get('DJANGO_SETTINGS_MODULE')} is set but Django is not "
                             f"installed here: pip install 'beluga-workflows[django]', or unset it") from None
        return {}
    try:
        if not dj.configured:
            if not env.get("DJANGO_SETTINGS_MODULE"):
                return {}
            _importable_cwd()
            dj.INSTALLED_APPS  # noqa: B018 - the first attribute read imports the settings module
    except Exception as exc:  # a settings module that does not import (ModuleNotFoundError too) is the project's
        raise ValueError(f"DJANGO_SETTINGS_MODULE={env.get('DJANGO_SETTINGS_MODULE')} cannot be imported: "
                         f"{type(exc).__name__}: {exc} (start the process from the directory that holds the "
                         f"project, or put that directory on PYTHONPATH)") from exc
    out = {key: getattr(dj, var) for key, var in _ENV.items() if hasattr(dj, var)}
    if "broker_url" not in out and hasattr(dj, "CELERY_BROKER_URL"):
        out["broker_url"] = dj.CELERY_BROKER_URL
    return out


def _importable_cwd() -> None:
    """The directory a process was started from is importable, as `celery -A` and `manage.py` make it:
    a project's settings module and workflows are found from there."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)


def setup_django() -> None:
    """`django.setup()` when DJANGO_SETTINGS_MODULE is set and Django's apps are not loaded yet (a worker
    about to import a Django project's workflows, whose activities may use its models)."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return
    try:
        import django
        from django.apps import apps
    except ImportError:
        return
    if not apps.ready and not apps.loading:
        django.setup()
