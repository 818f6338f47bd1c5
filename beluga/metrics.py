"""Prometheus metrics of the executors (needs `prometheus_client`: `pip install 'beluga-workflows[metrics]'`).

Both executors count into `prometheus_client`'s default registry as they work (nothing is recorded when
the package is missing). `BELUGA_METRICS_PORT` serves them over HTTP:

- `celery -A beluga worker`: the worker's main process serves `http://<host>:<port>/metrics` with what
  all its pool processes counted (prometheus_client's multiprocess mode, in `PROMETHEUS_MULTIPROC_DIR`,
  or a directory of its own that it removes at shutdown), plus the runs in the store by status;
- the in-process executor (`workflow.new("default", ...)`) serves from the process that created it
  (also `Config(extra={"metrics_port": P})`);
- anywhere else, `beluga.metrics.serve(port, store=...)`, or mount prometheus_client's own WSGI app.

The metrics (all prefixed `beluga_`; the table with their labels is in docs/observability.md, a Grafana
dashboard over them in docs/grafana-dashboard.json): runs started, completed, failed (by failure type),
canceled and stuck (counters by workflow type); each run's end-to-end latency (by type and outcome) and
its replay latency; `runs` by status in the store (a gauge read when scraped); activity attempts and
failures, attempt duration, schedule-to-start and schedule-to-close latency (by activity and queue); the
worker's task slots used and free (gauges); step latency; coordinator retries; runs found vanished.

Where a run is counted started, once (so that the served metrics add up to the runs that ran): the
in-process executor counts it where it creates it (`execute`, a child, a continue-as-new); on the fleet,
the process whose recorded step consumes the run's start message counts it, whatever that step did
(even nothing, for a run that parks at once). That is a worker, or a client that has the code and takes
the first step itself, which it does only while its own metrics are served (`shown_here`).

Everything is observed from what the executors have at hand: no metric costs a Redis round trip.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from typing import Any

log = logging.getLogger("beluga.metrics")
_lock = threading.Lock()
_metrics: Any = None          # the metric objects once made; False when prometheus_client is missing
_served: dict[int, Any] = {}  # port -> server
_local = threading.local()
_own_dir: str | None = None

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0)
DEFAULT_QUEUE = "default"  # the `queue` label of an activity that names no queue of its own
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class _Metrics:
    def __init__(self, p: Any, registry: Any = None) -> None:
        r = {} if registry is None else {"registry": registry}
        self.runs_started = p.Counter("beluga_runs_started_total", "Runs created (each counted once, see "
                                      "`run_started`)", ["workflow_type"], **r)
        self.runs_completed = p.Counter("beluga_runs_completed_total", "Runs that completed", ["workflow_type"],
                                        **r)
        self.runs_failed = p.Counter("beluga_runs_failed_total", "Runs that ended failed or timed out",
                                     ["workflow_type", "status", "failure_type"], **r)
        self.runs_canceled = p.Counter("beluga_runs_canceled_total", "Runs canceled or terminated",
                                       ["workflow_type"], **r)
        self.runs_stuck = p.Counter("beluga_runs_stuck_total", "Times a run got stuck: its code missing or not "
                                    "matching its history", ["workflow_type", "reason"], **r)
        self.endtoend_seconds = p.Histogram("beluga_workflow_endtoend_latency_seconds", "From a run's creation to "
                                            "its close", ["workflow_type", "outcome"], buckets=DURATION_BUCKETS, **r)
        self.replay_seconds = p.Histogram("beluga_workflow_replay_latency_seconds", "Replaying a run's history "
                                          "(or catching a cached run up) before a step", ["workflow_type"],
                                          buckets=LATENCY_BUCKETS, **r)
        self.attempts = p.Counter("beluga_activity_attempts_total", "Activity attempts started",
                                  ["activity", "queue"], **r)
        self.failures = p.Counter("beluga_activity_failures_total", "Activity attempts that failed",
                                  ["activity", "queue", "failure_type"], **r)
        self.attempt_seconds = p.Histogram("beluga_activity_seconds", "Duration of activity attempts",
                                           ["activity", "queue"], buckets=DURATION_BUCKETS, **r)
        self.schedule_to_start = p.Histogram("beluga_activity_schedule_to_start_latency_seconds", "From an "
                                             "activity attempt being sent (or falling due) to it starting",
                                             ["activity", "queue"], buckets=LATENCY_BUCKETS, **r)
        self.schedule_to_close = p.Histogram("beluga_activity_schedule_to_close_latency_seconds", "From an "
                                             "activity being scheduled to its outcome recorded for good, across "
                                             "its attempts", ["activity", "queue"], buckets=DURATION_BUCKETS, **r)
        self.step_seconds = p.Histogram("beluga_step_seconds", "From taking up a run's inputs to the resulting "
                                        "events being recorded and acted on", ["executor"], buckets=LATENCY_BUCKETS,
                                        **r)
        self.runs_vanished = p.Counter("beluga_runs_vanished_total", "Runs found gone (their summary missing) "
                                       "while messages for them waited: evicted or deleted", **r)
        self.coordinator_retries = p.Counter("beluga_coordinator_retries_total", "Steps redone because another "
                                             "writer changed the run first", ["executor"], **r)
        # a worker's slots (its pool's processes or threads): each process counts its own tasks; the
        # process that owns the pool adds its size to `free` (summed over live processes when scraped)
        self.slots_used = p.Gauge("beluga_worker_task_slots_used", "Task slots of the worker busy running a task",
                                  multiprocess_mode="livesum", **r)
        self.slots_free = p.Gauge("beluga_worker_task_slots_free", "Task slots of the worker free",
                                  multiprocess_mode="livesum", **r)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: prometheus_client checks and locks on every call, which cost
        more than the count itself on a step's path (the labels are few: names the code defines). A
        multiprocess value made before a fork still counts in the process that uses it."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


def _get() -> _Metrics | None:
    global _metrics
    m = _metrics
    if m is None:
        with _lock:
            if _metrics is None:
                try:
                    import prometheus_client
                except ImportError:
                    _metrics = False
                else:
                    _metrics = _Metrics(prometheus_client)
            m = _metrics
    return m or None


def available() -> bool:
    return _get() is not None


def shown_here() -> bool:
    """Whether what this process counts is seen: it serves its metrics (a fleet worker's pool processes
    inherit that from their main process), or nothing is counted anywhere (prometheus_client missing).
    A fleet client that is not takes no step of a run itself (see `CeleryExecutor.execute`), so that
    the runs it starts are counted by the worker that takes their first step."""
    return bool(_served) or not available()


def exported_names() -> set[str]:
    """The name of every series Beluga exports (a counter's with `_total`, a histogram's `_bucket`,
    `_sum` and `_count`), for checking dashboards and docs against."""
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    _Metrics(prometheus_client, registry)
    names = {"beluga_runs"}  # RunsCollector's, read from the store when scraped
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in registry.collect():
        names.update(family.name + s for s in suffixes[family.type])
    return names


# --- what the executors report --------------------------------------------------------------------------
def begin_step() -> None:
    """This thread starts taking up a run's inputs (the step's latency is measured from here)."""
    _local.began = time.perf_counter()


def run_started(workflow_type: str) -> None:
    """A run was created: counted once, by the process that creates it in-process; on the fleet, by the
    process whose recorded step consumed its start message (see `Coordinator`)."""
    m = _get()
    if m is not None:
        m.child(m.runs_started, workflow_type).inc()


def observe_step(executor: str, workflow_type: str, step: Any, age: float | None = None) -> None:
    """A step of a run was recorded and is being carried out: count what it did. `age`: how long ago the
    run was created (for the end-to-end latency of a step that closes it)."""
    m = _get()
    if m is None:
        return
    now = time.perf_counter()
    began = getattr(_local, "began", None)
    if began is not None:
        m.child(m.step_seconds, executor).observe(now - began)
    _local.began = now  # the next step of this thread is measured from here
    if step.error and step.status is None:
        m.child(m.runs_stuck, workflow_type, str(step.error.get("type", "error"))).inc()
    status = getattr(step.status, "value", step.status)
    if status is None or status == "running":
        return
    if age is not None:
        m.child(m.endtoend_seconds, workflow_type, status).observe(max(0.0, age))
    if status == "completed":
        m.child(m.runs_completed, workflow_type).inc()
    elif status in ("failed", "timed_out"):
        m.child(m.runs_failed, workflow_type, status, failure_type(step.error)).inc()
    elif status == "canceled":
        m.child(m.runs_canceled, workflow_type).inc()


def replayed(workflow_type: str, seconds: float) -> None:
    """A run's history was replayed (or a cached run caught up) in `seconds`, before a step."""
    m = _get()
    if m is not None:
        m.child(m.replay_seconds, workflow_type).observe(seconds)


def activity_closed(name: str, queue: str | None, seconds: float) -> None:
    """An activity's outcome was recorded for good, `seconds` after it was scheduled."""
    m = _get()
    if m is not None:
        m.child(m.schedule_to_close, name, queue or DEFAULT_QUEUE).observe(max(0.0, seconds))


def failure_type(failure: Any) -> str:
    """The label of a recorded failure (`{"type": ...}`): its exception's class name, bounded by the code."""
    kind = failure.get("type") if isinstance(failure, dict) else None
    return str(kind) if kind else "unknown"


def error_type(error: BaseException | None) -> str:
    """The failure type of an exception, as `to_failure` records it (a rebuilt `RemoteError`: the original
    class's name)."""
    if error is None:
        return "unknown"
    from beluga.core.errors import RemoteError

    return error.type if isinstance(error, RemoteError) and error.type else type(error).__name__


def run_unreadable(workflow_type: str, reason: str) -> None:
    """A run found that cannot be read whole (events lost, data undecodable): counted as stuck, by reason
    (`HistoryLost`, `UnreadableRun`)."""
    m = _get()
    if m is not None:
        m.child(m.runs_stuck, workflow_type, reason).inc()


def run_vanished() -> None:
    """A run whose summary is gone while messages for it waited (see `runs_vanished`)."""
    m = _get()
    if m is not None:
        m.runs_vanished.inc()


def coordinator_retry(executor: str) -> None:
    m = _get()
    if m is not None:
        m.child(m.coordinator_retries, executor).inc()


def activity_started(name: str, queue: str | None, queued_at: float | None, now: float) -> None:
    m = _get()
    if m is None:
        return
    queue = queue or DEFAULT_QUEUE
    m.child(m.attempts, name, queue).inc()
    if queued_at is not None:
        m.child(m.schedule_to_start, name, queue).observe(max(0.0, now - queued_at))


def activity_finished(name: str, queue: str | None, outcome: str, seconds: float, failure: str = "unknown") -> None:
    """`outcome`: the Celery state (`SUCCESS`, `RETRY`, `FAILURE`) or `ok`/`failed`; `failure`: the
    failed attempt's failure type (its exception's class name)."""
    m = _get()
    if m is None:
        return
    queue = queue or DEFAULT_QUEUE
    m.child(m.attempt_seconds, name, queue).observe(seconds)
    if outcome in ("RETRY", "FAILURE", "failed"):
        m.child(m.failures, name, queue, failure).inc()


def slots(n: int) -> None:
    """This process owns a pool of `n` task slots (negative when it lets go of them)."""
    m = _get()
    if m is not None:
        m.slots_free.inc(n)


def slot_taken() -> None:
    m = _get()
    if m is not None:
        m.slots_used.inc()
        m.slots_free.dec()


def slot_freed() -> None:
    m = _get()
    if m is not None:
        m.slots_used.dec()
        m.slots_free.inc()


# --- serving ------------------------------------------------------------------------------------------
class RunsCollector:
    """`beluga_runs{status}`: the runs in a store by status, counted when scraped."""

    def __init__(self) -> None:
        self.store: Any = None

    def describe(self) -> list[Any]:
        return []  # counted only when scraped; never at registration

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        store = self.store
        if store is None:
            return
        try:
            counts = store.counts()
        except Exception as exc:  # a scrape must not fail because Redis is away for a moment
            log.warning("could not count runs for beluga_runs: %s", exc)
            return
        family = GaugeMetricFamily("beluga_runs", "Runs in the store by status", labels=["status"])
        for status, n in sorted(counts.items()):
            family.add_metric([status], n)
        yield family


_runs = RunsCollector()
_registered: set[int] = set()   # id() of the registries _runs is registered with


def serve(port: int, *, store: Any = None, addr: str = "0.0.0.0", registry: Any = None) -> bool:
    """Serve the metrics on `port` (and `beluga_runs` from `store`), once per port per process. False,
    after logging why, when it cannot: prometheus_client missing, or the port taken."""
    try:
        import prometheus_client
    except ImportError:
        log.error("metrics port %s is set but prometheus_client is not installed: "
                  "pip install 'beluga-workflows[metrics]'", port)
        return False
    _get()
    registry = registry or prometheus_client.REGISTRY
    with _lock:
        if store is not None:
            _runs.store = store
            if id(registry) not in _registered:
                registry.register(_runs)
                _registered.add(id(registry))
        if port in _served:
            return True
        try:
            _served[port] = prometheus_client.start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            log.error("could not serve metrics on port %s: %s", port, exc)
            return False
    log.info("metrics on http://%s:%s/metrics", addr, port)
    return True


def serve_worker(port: int, store: Any) -> bool:
    """In a Celery worker's main process, before its pool starts: switch prometheus_client to its
    multiprocess mode (so that what the pool processes count adds up) and serve on `port`."""
    global _own_dir
    try:
        import prometheus_client
        from prometheus_client import multiprocess, values
    except ImportError:
        log.error("BELUGA_METRICS_PORT is set but prometheus_client is not installed: pip install "
                  "'beluga-workflows[metrics]'")
        return False
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = _own_dir = tempfile.mkdtemp(prefix="beluga-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.get_value_class()  # values made from now on live in the directory
    if _metrics:
        log.warning("metrics were recorded before the worker set up its metrics; those stay uncounted")
    registry = prometheus_client.CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return serve(port, store=store, registry=registry)


def worker_shutdown() -> None:
    """Remove the multiprocess directory the worker made for itself."""
    global _own_dir
    if _own_dir is not None:
        shutil.rmtree(_own_dir, ignore_errors=True)
        _own_dir = None
