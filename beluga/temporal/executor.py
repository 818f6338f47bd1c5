"""The `temporal` executor: the same Beluga workflows and activities, run by a Temporal server.

    executor = workflow.new("temporal", workflow.Config(extra={"target": "127.0.0.1:7233",
                                                                "namespace": "default", "task_queue": "beluga"}))

A Beluga workflow runs as a Temporal workflow whose type is the Beluga workflow's name, and each activity
as a Temporal activity of the activity's name (`beluga.temporal.workflow`, `beluga.temporal.activities`).
Temporal holds the history, retries the activities, fires the timers and delivers signals; workers run
`beluga temporal-worker --imports workers` (or `run_worker`). With `extra={"worker": True}` the executor
also runs a worker in this process, on a background thread (tests, scripts, a single process). Requires
`pip install 'beluga-workflows[temporal]'`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from beluga.core.errors import ConfigurationError

try:
    from temporalio import client as tc
    from temporalio import exceptions
    from temporalio.api.common import v1 as cmn
    from temporalio.api.enums.v1 import WorkflowTaskFailedCause
    from temporalio.api.workflowservice import v1 as wsv
    from temporalio.common import Priority
    from temporalio.service import RPCError, RPCStatusCode, TLSConfig
    from temporalio.worker import Worker
except ImportError as exc:  # pragma: no cover - exercised by simulating the missing client
    raise ConfigurationError("the 'temporal' executor needs the temporalio SDK: "
                             "pip install 'beluga-workflows[temporal]'") from exc

from beluga import codec
from beluga.core.definitions import Registry, workflow_name
from beluga.core.definitions import registry as default_registry
from beluga.core.errors import (
    WorkflowAlreadyStarted,
    WorkflowNotFound,
    WorkflowNotRunning,
)
from beluga.core.failure import failure, nondeterminism, raise_as_own, terminated, workflow_timed_out
from beluga.core.names import check_name
from beluga.core.priority import check_priority
from beluga.core.records import Event, EventType, Signal, WorkflowState, WorkflowStatus
from beluga.core.retry import Duration, seconds
from beluga.executors.base import (
    BUILTIN_QUERIES,
    Config,
    DurableExecutor,
    WorkflowHandle,
    WorkflowOptions,
    log_write,
)
from beluga.hooks import Hooks
from beluga.logs import get_logger
from beluga.runs import DEFAULT_MAX_PAYLOAD, payload_checker
from beluga.stores._loop import LoopThread
from beluga.temporal.activities import set_hooks
from beluga.temporal.failures import failure_of
from beluga.temporal.schedules import TemporalSchedules
from beluga.temporal.workflow import HISTORY_QUERY, MEMO, PARENT_SEQ, SEARCH_ATTRIBUTES, _memo, build, run_memo

T = TypeVar("T")
_STATUS = {
    tc.WorkflowExecutionStatus.RUNNING: WorkflowStatus.RUNNING,
    tc.WorkflowExecutionStatus.CONTINUED_AS_NEW: WorkflowStatus.RUNNING,
    tc.WorkflowExecutionStatus.COMPLETED: WorkflowStatus.COMPLETED,
    tc.WorkflowExecutionStatus.FAILED: WorkflowStatus.FAILED,
    tc.WorkflowExecutionStatus.CANCELED: WorkflowStatus.CANCELED,
    tc.WorkflowExecutionStatus.TERMINATED: WorkflowStatus.CANCELED,
    tc.WorkflowExecutionStatus.TIMED_OUT: WorkflowStatus.TIMED_OUT,
}
_NON_DETERMINISTIC = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR


def new_worker(client: tc.Client, task_queue: str, *, registry: Registry | None = None, hooks: Hooks | None = None,
               max_payload_bytes: int = DEFAULT_MAX_PAYLOAD, activity_threads: int = 16) -> Worker:
    """A Temporal worker that runs every Beluga workflow and activity of `registry` on `task_queue`.
    Workflow tasks run on one thread (a greenlet stays on the thread that made it); activities on
    `activity_threads` threads."""
    registry = registry or default_registry
    limited = sorted(name for name, defn in registry.activities.items() if defn.limit is not None)
    if limited:  # docs/temporal.md: what maps to Temporal's own limits, and what does not
        get_logger("beluga.temporal").warning(
            "activities %s have rate_limit/max_concurrent, which a Temporal worker does not enforce: use the "
            "Worker's max_task_queue_activities_per_second on a task queue of their own (docs/temporal.md)",
            ", ".join(limited))
    wf, activities = build(task_queue, registry, hooks or Hooks(), payload_checker(max_payload_bytes))
    return Worker(client, task_queue=task_queue, workflows=[wf], activities=activities,
                  activity_executor=concurrent.futures.ThreadPoolExecutor(activity_threads,
                                                                          thread_name_prefix="beluga-activity"),
                  workflow_task_executor=concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="beluga-wf"),
                  max_concurrent_activities=activity_threads)


@dataclass(frozen=True)
class Connection:
    """How to reach a Temporal server: its `target` (host:port) and `namespace`; TLS (`tls=True` for the
    system's CAs, or `tls_ca`, a PEM file of the server's CA), mutual TLS (`tls_cert` and `tls_key`, PEM
    files of this client's certificate and key), `tls_server_name` (when the certificate names another
    host), and `api_key` (Temporal Cloud's, sent as a bearer token). From the settings
    `BELUGA_TEMPORAL_*` (see `from_settings`). Never logged: `__repr__` hides the key."""

    target: str = "127.0.0.1:7233"
    namespace: str = "default"
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_server_name: str | None = None
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> Connection:
        values = {name: getattr(settings, f"temporal_{name}") for name in
                  ("target", "namespace", "tls", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "api_key")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def options(self) -> dict[str, Any]:
        """The keyword arguments of `temporalio.client.Client.connect` beside the target."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigurationError("mutual TLS to Temporal needs both a client certificate and its key "
                                     "(BELUGA_TEMPORAL_TLS_CERT and BELUGA_TEMPORAL_TLS_KEY)")
        tls: bool | TLSConfig = self.tls
        if self.tls_ca or self.tls_cert or self.tls_server_name:
            try:
                tls = TLSConfig(server_root_ca_cert=_read(self.tls_ca), client_cert=_read(self.tls_cert),
                                client_private_key=_read(self.tls_key), domain=self.tls_server_name)
            except OSError as exc:
                raise ConfigurationError(f"cannot read a TLS file for Temporal: {exc}") from None
        options: dict[str, Any] = {"namespace": self.namespace, "tls": tls}
        if self.api_key:
            options["api_key"] = self.api_key
        return options

    async def connect(self) -> tc.Client:
        return await tc.Client.connect(self.target, **self.options())


async def beluga_memo(execution: Any) -> tuple[dict[str, Any], Any]:
    """The search attributes and Beluga memo a run keeps in its Temporal memo (a described or listed
    execution; see beluga/temporal/workflow.py `run_memo`)."""
    return _memo(await execution.memo_value(SEARCH_ATTRIBUTES, None, type_hint=bytes),
                 await execution.memo_value(MEMO, None, type_hint=bytes))


def _signal_body(signal: Signal, identity: str | None) -> dict[str, Any]:
    """A signal's one argument, as `BelugaWorkflow.on_signal` reads it."""
    body: dict[str, Any] = {"payload": signal.payload, "sender_id": signal.sender_id}
    if identity is not None:  # for the Beluga history; Temporal's own records it as the request's identity
        body["identity"] = identity
    return body


def _read(path: str | None) -> bytes | None:
    return None if not path else Path(path).read_bytes()


async def run_worker(connection: Connection, task_queue: str, **options: Any) -> None:
    """Connect and run a worker until cancelled (what `beluga temporal-worker` runs)."""
    client = await connection.connect()
    await new_worker(client, task_queue, **options).run()


class TemporalExecutor(DurableExecutor):
    """Provider `"temporal"`: a client of a Temporal server (and, with `worker=True`, a worker too)."""

    def __init__(self, hooks: Hooks | None = None, *, target: str = "127.0.0.1:7233", namespace: str = "default",
                 task_queue: str = "beluga", worker: bool = False, registry: Registry | None = None,
                 max_payload_bytes: int = DEFAULT_MAX_PAYLOAD, activity_threads: int = 16,
                 query_timeout: float = 10.0, connection: Connection | None = None,
                 client: tc.Client | None = None) -> None:
        """`connection` (TLS, mutual TLS, an API key) wins over `target` and `namespace`; `client` is a
        ready `temporalio` client of your own (made with any options temporalio has), used as it is."""
        self.hooks = hooks or Hooks()
        self.registry = registry or default_registry
        self.task_queue = task_queue
        self.query_timeout = query_timeout
        self._check = payload_checker(max_payload_bytes)
        self._loop = LoopThread("beluga-temporal")
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        connection = connection or Connection(target, namespace)
        if client is not None:
            self.client: tc.Client = client
        else:
            try:
                self.client = self._run(connection.connect(), 30)
            except ConfigurationError:
                self._loop.stop()
                raise
            except Exception as exc:
                self._loop.stop()
                raise ConfigurationError(f"cannot reach Temporal at {connection.target} (namespace "
                                         f"{connection.namespace!r}): {exc}") from exc
        if worker:
            self._run(self._start_worker(max_payload_bytes, activity_threads))

    async def _start_worker(self, max_payload_bytes: int, activity_threads: int) -> None:
        self._worker = new_worker(self.client, self.task_queue, registry=self.registry, hooks=self.hooks,
                                  max_payload_bytes=max_payload_bytes, activity_threads=activity_threads)
        self._worker_task = asyncio.get_running_loop().create_task(self._worker.run())

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60) -> T:
        return self._loop.run(coro, timeout)

    def set_hooks(self, hooks: Hooks) -> None:
        """Replace the hooks, in this client and in its worker (what `with_hooks()` uses)."""
        self.hooks = hooks
        if self._worker is not None:
            set_hooks(self.task_queue, hooks)

    # --- the executor ----------------------------------------------------------------------------
    def execute(self, workflow: Any, options: WorkflowOptions | None = None) -> WorkflowHandle:
        return self._start(workflow, options or WorkflowOptions(), None)

    def signal_with_start(self, workflow: Any, options: WorkflowOptions, signal: Signal) -> WorkflowHandle:
        """Temporal's own signal-with-start (`start_signal`): atomic on its server."""
        if options.id is None:
            raise ValueError("signal_with_start needs WorkflowOptions.id: the run to signal or start")
        check_name(signal.name, "signal name")
        self._check(signal.payload)
        handle = self._start(workflow, options, signal)
        log_write("signalled", handle.id, options.identity, repr(signal.name))
        return handle

    def _start(self, workflow: Any, options: WorkflowOptions, signal: Signal | None) -> WorkflowHandle:
        # A client without the code (a web app) starts a workflow by name; one that runs a worker checks it.
        if isinstance(workflow, str) and self._worker is None:
            name = workflow_name(workflow)
        else:
            name = self.registry.workflow(workflow).name
        if options.id is not None:
            check_name(options.id, "workflow id")
        self._check(options.input)
        self._check(options.memo)
        wid = options.id or str(uuid.uuid4())
        timeout = seconds(options.timeout)
        extra: dict[str, Any] = {}
        if signal is not None:
            extra = {"start_signal": signal.name,
                     "start_signal_args": [codec.encode(_signal_body(signal, options.identity))]}
        try:
            handle = self._run(self.client.start_workflow(
                name, codec.encode(options.input), id=wid, task_queue=options.queue or self.task_queue,
                execution_timeout=timedelta(seconds=timeout) if timeout else None,
                memo=run_memo(options), **extra,
                **({} if check_priority(options.priority, "a run's priority") is None
                   else {"priority": Priority(priority_key=options.priority)})))
        except exceptions.WorkflowAlreadyStartedError:
            raise WorkflowAlreadyStarted(f"workflow {wid} is already running") from None
        if signal is None:
            self.hooks.emit("on_workflow_start", wid, options.input)
            return WorkflowHandle(self, wid, handle.first_execution_run_id or handle.result_run_id or "")
        # the server's answer says whether it started a run or signalled the open one (no public field)
        if getattr(getattr(handle, "_start_workflow_response", None), "started", True):
            self.hooks.emit("on_workflow_start", wid, options.input)
        run_id = handle.result_run_id or handle.first_execution_run_id or ""
        return WorkflowHandle(self, wid, run_id)

    def signal(self, workflow_id: str, signal: Signal, *, identity: str | None = None) -> None:
        check_name(workflow_id, "workflow id")
        check_name(signal.name, "signal name")
        self._check(signal.payload)
        body = _signal_body(signal, identity)

        async def send() -> None:
            payloads = await self.client.data_converter.encode([codec.encode(body)])
            await self.client.workflow_service.signal_workflow_execution(wsv.SignalWorkflowExecutionRequest(
                namespace=self.client.namespace, workflow_execution=cmn.WorkflowExecution(workflow_id=workflow_id),
                signal_name=signal.name, input=cmn.Payloads(payloads=payloads), identity=self._identity(identity),
                request_id=str(uuid.uuid4())))
        self._call(workflow_id, send)
        log_write("signalled", workflow_id, identity, repr(signal.name))

    def cancel(self, workflow_id: str, *, identity: str | None = None) -> None:
        self._open(workflow_id)  # Temporal accepts a cancel of a closed run and ignores it
        self._call(workflow_id, lambda: self.client.workflow_service.request_cancel_workflow_execution(
            wsv.RequestCancelWorkflowExecutionRequest(
                namespace=self.client.namespace, workflow_execution=cmn.WorkflowExecution(workflow_id=workflow_id),
                identity=self._identity(identity), request_id=str(uuid.uuid4()))))
        log_write("cancel requested for", workflow_id, identity)

    def terminate(self, workflow_id: str, reason: str = "", *, identity: str | None = None) -> None:
        self._open(workflow_id)
        self._call(workflow_id, lambda: self.client.workflow_service.terminate_workflow_execution(
            wsv.TerminateWorkflowExecutionRequest(
                namespace=self.client.namespace, workflow_execution=cmn.WorkflowExecution(workflow_id=workflow_id),
                reason=reason or "no reason given", identity=self._identity(identity))))
        log_write("terminated", workflow_id, identity, reason)

    def reset(self, workflow_id: str, to: int | str = "last-good", *, identity: str | None = None,
              reapply_signals: bool = True) -> Any:
        """Temporal's own ResetWorkflowExecution; the point is a Temporal event (beluga/temporal/reset.py)."""
        from beluga.temporal.reset import reset

        check_name(workflow_id, "workflow id")
        with _gone_as_not_found(workflow_id):
            done = self._run(reset(self, workflow_id, to, identity, reapply_signals))
        log_write("reset", workflow_id, identity, f"new run {done.run_id} from event #{done.point}")
        return done

    def _identity(self, identity: str | None) -> str:
        """Who a request names in Temporal's history: the caller's identity, else the client's own
        (temporalio's default, `<pid>@<host>`)."""
        return identity if identity is not None else self.client.identity

    def query(self, workflow_id: str, query_type: str, *args: Any) -> Any:
        check_name(workflow_id, "workflow id")
        check_name(query_type, "query name")
        if query_type in BUILTIN_QUERIES:
            state = self.summary(workflow_id)
            if query_type == "status":
                return state.status
            return state.result if state.status is WorkflowStatus.COMPLETED else None
        self._check(list(args))
        answer = self._query(workflow_id, query_type, list(args))
        if "error" in answer:
            raise_as_own(answer["error"])
        return answer["value"]

    def update(self, workflow_id: str, name: str, *args: Any, update_id: str | None = None, wait: bool = True,
               timeout: Duration | None = None, identity: str | None = None) -> Any:
        """Temporal's own updates: the workflow's dynamic update handler validates on the live run and
        feeds the accepted update to the run driver (see `BelugaWorkflow.on_update`); Temporal deduplicates
        by the update id."""
        check_name(workflow_id, "workflow id")
        check_name(name, "update name")
        self._check(list(args))
        update_id = check_name(update_id, "update id") if update_id is not None else uuid.uuid4().hex
        body: dict[str, Any] = {"args": list(args)}
        if identity is not None:
            body["identity"] = identity
        limit = seconds(timeout)

        async def send() -> Any:
            handle = self.client.get_workflow_handle(workflow_id)
            if not wait:
                await handle.start_update(name, codec.encode(body), id=update_id, result_type=bytes,
                                          wait_for_stage=tc.WorkflowUpdateStage.ACCEPTED)
                return None
            return await handle.execute_update(name, codec.encode(body), id=update_id, result_type=bytes)
        try:
            raw = self._run(send(), None if limit is None else limit)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"update {update_id!r} of workflow {workflow_id} still running after {limit:g}s") \
                from None
        except tc.WorkflowUpdateFailedError as exc:  # rejected by its validator
            raise_as_own(failure_of(exc.cause))
        except RPCError as exc:
            self._raise(workflow_id, exc)
        log_write("updated", workflow_id, identity, repr(name))
        if not wait:
            return update_id
        answer = dict(codec.decode(raw))
        if "error" in answer:
            raise_as_own(answer["error"])
        return answer.get("value")

    def describe(self, workflow_id: str) -> WorkflowState:
        state = self.summary(workflow_id)
        history: tuple[Event, ...] = ()
        try:
            answer = self._query(workflow_id, HISTORY_QUERY, [])
            history = tuple(codec.decode_event(raw) for raw in answer.get("value", ()))
        except Exception:  # gone, no worker, or the code no longer replays: the summary still tells the status
            pass
        if not history:  # its code never ran (or cannot replay): what Temporal recorded of its start
            history = (Event(1, EventType.WORKFLOW_STARTED, state.created_at,
                             {"workflow_type": state.workflow_type, "input": self._run(self._input(workflow_id))}),)
        close = {"Terminated": EventType.WORKFLOW_TERMINATED}.get(str((state.error or {}).get("type")))
        if state.status is WorkflowStatus.TIMED_OUT:
            close = EventType.WORKFLOW_TIMED_OUT
        asked = self._run(self._operators(workflow_id)) if close or any(
            ev.type == EventType.CANCEL_REQUESTED for ev in history) else {}
        if asked:  # who cancelled or terminated it: Temporal's history holds the requests' identities
            history = tuple(replace(ev, attrs={**ev.attrs, "identity": asked[ev.type]})
                            if ev.type in asked and "identity" not in ev.attrs else ev for ev in history)
        if close is not None and history:
            attrs = {"identity": asked[close]} if close in asked else {}
            history = (*history, Event(len(history) + 1, close, state.updated_at, attrs))
        input = history[0].attrs.get("input") if history else state.input
        return WorkflowState(state.workflow_id, state.run_id, state.workflow_type, state.status, input,
                             state.result, state.error, state.created_at, state.updated_at, history, state.queue,
                             state.parent, state.search_attributes, state.memo)

    def summary(self, workflow_id: str) -> WorkflowState:
        return self._run(self._summary(workflow_id))

    def wait_closed(self, workflow_id: str, timeout: float | None) -> WorkflowState:
        async def wait() -> None:
            handle = self.client.get_workflow_handle(workflow_id)
            try:
                await handle.result()
            except (exceptions.TemporalError, tc.WorkflowFailureError):
                pass

        try:
            self._run(asyncio.wait_for(wait(), timeout), None)
        except (asyncio.TimeoutError, TimeoutError):
            raise TimeoutError(f"workflow {workflow_id} still running after {timeout:g}s") from None
        except RPCError as exc:
            self._raise(workflow_id, exc)
        deadline = time.monotonic() + 5
        while True:  # the close is visible to describe a moment after the result
            state = self.summary(workflow_id)
            if not state.status.is_open or time.monotonic() > deadline:
                return state
            time.sleep(0.01)

    def close(self) -> None:
        if self._worker is not None:
            try:
                self._run(self._worker.shutdown(), 30)
            except Exception:
                pass
            self._worker = None
        self._loop.stop()

    # --- helpers ---------------------------------------------------------------------------------------
    async def _summary(self, workflow_id: str) -> WorkflowState:
        with _gone_as_not_found(workflow_id):  # also when it is deleted between the calls below
            return await self._read_summary(workflow_id)

    async def _read_summary(self, workflow_id: str) -> WorkflowState:
        handle = self.client.get_workflow_handle(workflow_id)
        desc = await handle.describe()
        status = _STATUS.get(desc.status or tc.WorkflowExecutionStatus.RUNNING, WorkflowStatus.RUNNING)
        result: Any = None
        error: dict[str, Any] | None = None
        if desc.status is not None and desc.status != tc.WorkflowExecutionStatus.RUNNING:
            closed = self.client.get_workflow_handle(workflow_id, run_id=desc.run_id)
            try:
                raw = await closed.result(follow_runs=False)
                result = codec.decode(raw)
            except tc.WorkflowContinuedAsNewError:
                pass
            except tc.WorkflowFailureError as exc:
                if desc.status != tc.WorkflowExecutionStatus.CANCELED:
                    error = failure_of(exc)
                    if desc.status == tc.WorkflowExecutionStatus.TERMINATED:
                        error = terminated(workflow_id, f"{getattr(exc.cause, 'message', '') or exc.cause}")
                    elif desc.status == tc.WorkflowExecutionStatus.TIMED_OUT:
                        error = workflow_timed_out(workflow_id)
        elif desc.raw_description.pending_workflow_task.attempt > 1:
            error = await self._stuck(handle)
        parent = None
        if desc.parent_id:
            seq = await desc.memo_value(PARENT_SEQ, None)
            parent = {"workflow_id": desc.parent_id, "run_id": desc.parent_run_id, "seq": seq}
        created = desc.start_time.timestamp() if desc.start_time else 0.0
        updated = desc.close_time.timestamp() if desc.close_time else time.time()
        attributes, memo = await beluga_memo(desc)
        return WorkflowState(workflow_id, desc.run_id, desc.workflow_type, status, None, result, error, created,
                             updated, (), desc.task_queue, parent, attributes, memo)

    async def _operators(self, workflow_id: str) -> dict[str, str]:
        """The identities Temporal recorded on the current run's cancel request and termination, by the
        Beluga event type each stands for."""
        found: dict[str, str] = {}
        with _gone_as_not_found(workflow_id):
            async for ev in self.client.get_workflow_handle(workflow_id).fetch_history_events():
                if ev.HasField("workflow_execution_cancel_requested_event_attributes"):
                    found[EventType.CANCEL_REQUESTED] = ev.workflow_execution_cancel_requested_event_attributes.identity
                elif ev.HasField("workflow_execution_terminated_event_attributes"):
                    found[EventType.WORKFLOW_TERMINATED] = ev.workflow_execution_terminated_event_attributes.identity
        return {k: v for k, v in found.items() if v}

    async def _input(self, workflow_id: str) -> Any:
        with _gone_as_not_found(workflow_id):  # deleted since its summary was read
            async for ev in self.client.get_workflow_handle(workflow_id).fetch_history_events():
                payloads = ev.workflow_execution_started_event_attributes.input.payloads
                return codec.decode(payloads[0].data) if payloads else None
        return None

    async def _stuck(self, handle: tc.WorkflowHandle[Any, Any]) -> dict[str, Any] | None:
        """Why a run's workflow tasks keep failing: Temporal's non-determinism (or the core's own) as
        `NonDeterminismError`, any other failure as itself; the run stays open and untouched."""
        found: dict[str, Any] | None = None
        async for ev in handle.fetch_history_events():
            if ev.HasField("workflow_task_failed_event_attributes"):
                attrs = ev.workflow_task_failed_event_attributes
                message = attrs.failure.message
                if attrs.cause == _NON_DETERMINISTIC or "NonDeterminismError" in message \
                        or "nondetermin" in message.lower():
                    found = nondeterminism(message)
                else:
                    found = failure(attrs.failure.application_failure_info.type or "WorkflowError", message)
            elif ev.HasField("workflow_task_completed_event_attributes"):
                found = None
        return found

    def _query(self, workflow_id: str, name: str, args: list[Any]) -> dict[str, Any]:
        async def ask() -> Any:
            handle = self.client.get_workflow_handle(workflow_id)
            return await handle.query(name, codec.encode(args), result_type=bytes,
                                      rpc_timeout=timedelta(seconds=self.query_timeout))
        try:
            raw = self._run(ask(), self.query_timeout + 5)
        except tc.WorkflowQueryFailedError as exc:
            msg = str(exc)
            if "NonDeterminism" in msg or "nondetermin" in msg.lower():
                raise_as_own(nondeterminism(msg, non_retryable=False))
            raise_as_own(failure("WorkflowError", msg))
        except RPCError as exc:
            self._raise(workflow_id, exc)
        return dict(codec.decode(raw))

    # --- schedules: Temporal's own (beluga/temporal/schedules.py) ----------------------------------
    def schedule_service(self) -> TemporalSchedules:
        return TemporalSchedules(self.client, self._run, self.task_queue)

    def schedule_workflow_type(self, workflow: Any, input: Any) -> str:
        self._check(input)
        if isinstance(workflow, str) and self._worker is None:  # as `execute`: by name, checked by a worker
            return workflow_name(workflow)
        return self.registry.workflow(workflow).name

    def _call(self, workflow_id: str, action: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            self._run(action())
        except RPCError as exc:
            self._raise(workflow_id, exc)

    def _open(self, workflow_id: str) -> None:
        if not self.summary(workflow_id).status.is_open:
            raise WorkflowNotRunning(f"workflow {workflow_id} is not running")

    def _raise(self, workflow_id: str, exc: RPCError) -> None:
        if exc.status == RPCStatusCode.NOT_FOUND:
            self.summary(workflow_id)  # raises WorkflowNotFound when there is no such workflow
            raise WorkflowNotRunning(f"workflow {workflow_id} is not running") from None
        raise exc


@contextmanager
def _gone_as_not_found(workflow_id: str) -> Iterator[None]:
    """Temporal's NOT_FOUND as `WorkflowNotFound`: a run that is not there, or was deleted while it was
    read (Temporal deletes in the background), is reported as one that never existed."""
    try:
        yield
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r}") from None
        raise


def factory(config: Config | None = None) -> TemporalExecutor:
    """`workflow.new("temporal", Config(extra={...}))`: `target`, `namespace`, `task_queue` (defaults from
    the settings `BELUGA_TEMPORAL_TARGET`, `BELUGA_TEMPORAL_NAMESPACE`, `BELUGA_TEMPORAL_TASK_QUEUE`),
    `worker` (also run a worker in this process), `registry`, `max_payload_bytes`, `query_timeout`; TLS and
    keys as `Connection` names them (`tls`, `tls_ca`, `tls_cert`, `tls_key`, `tls_server_name`, `api_key`,
    defaults from `BELUGA_TEMPORAL_*`), or a ready `temporalio` `client`."""
    config = config or Config()
    extra = dict(config.extra)
    from beluga.settings import Settings

    settings = Settings.load()
    if "client" not in extra and "connection" not in extra:
        extra["connection"] = Connection.from_settings(
            settings, target=extra.pop("target", None), namespace=extra.pop("namespace", None),
            **{k: extra.pop(k) for k in ("tls", "tls_ca", "tls_cert", "tls_key", "tls_server_name", "api_key")
               if k in extra})
    extra.setdefault("task_queue", settings.temporal_task_queue)
    return TemporalExecutor(config.hooks, **extra)
