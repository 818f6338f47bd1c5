"""The in-process engine: one coordinator thread drives every run; a pool of threads runs activities.

Everything that changes a run arrives in the coordinator's inbox (start, activity result, signal, timer,
cancel, ...). The coordinator drains the inbox in batches, feeds each input to the run's
`WorkflowInstance`, and writes all the resulting events of the batch in one store transaction (group
commit) before it acts on any of them: dispatching activities, arming timers, answering callers. Live
runs stay suspended in an LRU cache; an evicted run is rebuilt by replaying its history. A run whose
code no longer matches its history is left untouched ("stuck") and reported, never replayed wrongly.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future as Reply
from dataclasses import replace
from typing import Any

from beluga.core import commands as cmds
from beluga.core.definitions import Registry, effective_option, effective_retry
from beluga.core.errors import (
    ConfigurationError,
    NonDeterminismError,
    WorkflowAlreadyStarted,
    WorkflowNotFound,
    WorkflowNotRunning,
)
from beluga.core.failure import child_outcome, to_failure
from beluga.core.instance import WorkflowInstance
from beluga.core.pending import pending_work
from beluga.core.records import (
    Append,
    Event,
    EventType,
    Signal,
    WorkflowFilter,
    WorkflowState,
    WorkflowStatus,
)
from beluga.executors._activity_pool import ActivityPool
from beluga.executors._engine_records import Msg, Pending, Run, Task
from beluga.executors._runs import new_run_state
from beluga.executors._timers import TimerHeap
from beluga.hooks import Hooks
from beluga.stores.base import WorkflowStore

log = logging.getLogger("beluga.engine")
E = EventType
_CLOSE_STATUS = {cmds.CompleteWorkflow: WorkflowStatus.COMPLETED, cmds.FailWorkflow: WorkflowStatus.FAILED,
                 cmds.CancelWorkflow: WorkflowStatus.CANCELED}


class Engine:
    def __init__(self, store: WorkflowStore, registry: Registry, hooks: Hooks, *, workers: int,
                 cache_size: int, check_payload: Callable[[Any], Any],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.registry = registry
        self.hooks = hooks
        self.check_payload = check_payload
        self.clock = clock
        self.cache_size = cache_size
        self._rand = random.Random()
        self._inbox: queue.SimpleQueue[Msg | None] = queue.SimpleQueue()
        self._timers = TimerHeap()
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._pool = ActivityPool(workers, registry, lambda: self.hooks, self._inbox.put, check_payload, clock)
        self._beats = self._pool.beats
        self._closed = threading.Condition()
        self._outcomes: OrderedDict[str, WorkflowState] = OrderedDict()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="beluga-coordinator", daemon=True)

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._pool.start()

    def stop(self) -> None:
        self._stopping = True
        self._inbox.put(None)
        self._pool.stop()
        self._thread.join(timeout=10)

    def post(self, msg: Msg) -> None:
        self._inbox.put(msg)

    def call(self, msg: Msg, timeout: float = 30.0) -> Any:
        """Post `msg` and wait for the coordinator's answer (re-raising its error)."""
        msg.reply = Reply()
        self._inbox.put(msg)
        return msg.reply.result(timeout)

    # --- waiting for outcomes (any thread) --------------------------------------------------------
    def closed_state(self, workflow_id: str) -> WorkflowState | None:
        with self._closed:
            return self._outcomes.get(workflow_id)

    def forget(self, workflow_id: str) -> None:
        """Drop the remembered outcome of an earlier run of this id (a new run starts)."""
        with self._closed:
            self._outcomes.pop(workflow_id, None)

    def wait_change(self, timeout: float, workflow_id: str | None = None) -> None:
        """Wait until a run closes (at most `timeout`); returns at once when `workflow_id` already has,
        so a close between the caller's last look and this wait is not missed."""
        with self._closed:
            if workflow_id is not None and workflow_id in self._outcomes:
                return
            self._closed.wait(timeout)

    # --- recovery ---------------------------------------------------------------------------------
    def _on_recover(self, msg: Msg, batch: dict[str, Pending]) -> None:
        assert msg.reply is not None
        msg.reply.set_result(self._recover())

    def _recover(self) -> int:
        """Resume every open run in the store: re-arm its timers, and retry (under their policy, with
        the same idempotency key) activities that were in flight. Runs parked on signals need nothing
        until a signal arrives."""
        count = 0
        for state in self.store.list(WorkflowFilter(status=WorkflowStatus.RUNNING, limit=2**62)):
            count += 1
            wid, rid = state.workflow_id, state.run_id
            work = pending_work(state.history)
            if work.deadline is not None:
                self._timers.arm(work.deadline, Msg("timeout", wid, rid))
            if len(state.history) == 1 or work.closed:
                self.post(Msg("activate", wid, rid))
                continue
            if state.error is not None:  # stuck under earlier code: inputs it kept may be due now
                self.post(Msg("activate", wid, rid))
            for seq, fire_at in work.timers.items():
                self._timers.arm(fire_at, Msg("timer", wid, rid, seq))
            for seq, act in work.activities.items():
                if act.started:  # the process died during this attempt: it failed, the policy decides
                    self.post(Msg("activity", wid, rid, seq, act.attempt, ok=False, payload={
                        "type": "ProcessLost", "message": f"attempt {act.attempt} was interrupted: the process "
                        "running it stopped", "traceback": "", "non_retryable": False}))
                else:
                    self._timers.arm(act.not_before, Msg("dispatch", wid, rid, seq, act.attempt, force=True))
            for seq, child in work.children.items():
                self.post(Msg("child_check", wid, rid, seq, payload=child))
        return count

    # --- the coordinator loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        inbox = self._inbox
        while not self._stopping:
            try:
                first = inbox.get(timeout=self._timers.wait_time(self.clock(), 1.0))
            except queue.Empty:
                first = None
            items = [] if first is None else [first]
            while len(items) < 1024:
                try:
                    items.append(inbox.get_nowait())
                except queue.Empty:
                    break
            items.extend(self._timers.pop_due(self.clock()))
            items = [m for m in items if m is not None]
            if items:
                try:
                    self._process(items)
                except Exception:  # the loop must survive anything a batch does
                    log.exception("coordinator batch failed; its runs are reloaded from the store")
                    self._runs.clear()

    def _process(self, items: list[Msg]) -> None:
        batch: dict[str, Pending] = {}
        for msg in items:
            try:
                self._handle(msg, batch)
            except Exception as exc:
                pending = batch.pop(msg.workflow_id, None)
                self._runs.pop(msg.workflow_id, None)
                if pending is not None:  # redo the run's earlier inputs of this batch from the store
                    for earlier in pending.msgs:
                        self._inbox.put(earlier)
                if msg.reply is not None:
                    msg.reply.set_exception(exc)
                elif not isinstance(exc, (WorkflowNotFound, WorkflowNotRunning)):
                    log.exception("could not handle %s for workflow %s", msg.kind, msg.workflow_id)
        if not batch:
            return
        appends = [Append(p.run.workflow_id, p.run.run_id, p.expected, tuple(p.events), p.status,
                          p.result, p.error, updated_at=self.clock()) for p in batch.values()]
        try:
            refused = set(self.store.append(appends))
        except Exception:
            log.exception("store append failed; retrying the batch's inputs shortly")
            refused = set(batch)
            time.sleep(0.1)
        for wid, pending in batch.items():
            if wid in refused:  # another writer came first: reload and redo
                self._runs.pop(wid, None)
                for m in pending.msgs:
                    self._inbox.put(m)
                continue
            for action in pending.after:
                action()
        self._evict()

    # --- message handling -------------------------------------------------------------------------
    def _handle(self, msg: Msg, batch: dict[str, Pending]) -> None:
        kind = msg.kind
        if kind == "noop":
            return
        if kind == "start":
            self._start(msg, batch)
            return
        if kind == "recover":
            self._on_recover(msg, batch)
            return
        run = self._get(msg.workflow_id, batch)
        if msg.run_id is not None and msg.run_id != run.run_id:
            if msg.reply is not None:
                raise WorkflowNotRunning(f"run {msg.run_id} of workflow {msg.workflow_id} has ended")
            return  # a late message for an earlier run
        if kind == "query":
            self._query(run, msg)
            return
        if run.status is not WorkflowStatus.RUNNING:
            if msg.reply is not None:
                raise WorkflowNotRunning(f"workflow {msg.workflow_id} is {run.status.value}; it can no "
                                         "longer be signalled or cancelled")
            return
        handler = getattr(self, "_on_" + kind)
        handler(run, msg, self._pending(run, batch, msg))

    def _pending(self, run: Run, batch: dict[str, Pending], msg: Msg | None) -> Pending:
        p = batch.get(run.workflow_id)
        if p is None:
            p = batch[run.workflow_id] = Pending(run, run.version)
        if msg is not None:
            p.msgs.append(msg)
        return p

    def _on_activate(self, run: Run, msg: Msg, p: Pending) -> None:
        return  # loading the run replayed it and recorded whatever was due

    def _on_signal(self, run: Run, msg: Msg, p: Pending) -> None:
        sig: Signal = msg.payload
        p.after.append(lambda: self.hooks.emit("on_signal", run.workflow_id, sig))  # before any close
        self._record(run, p, E.SIGNAL_RECEIVED, {"name": sig.name, "payload": sig.payload,
                                                  "sender_id": sig.sender_id})
        reply = msg.reply
        if reply is not None:
            p.after.append(lambda: reply.set_result(None))

    def _on_cancel(self, run: Run, msg: Msg, p: Pending) -> None:
        self._record(run, p, E.CANCEL_REQUESTED, {})
        reply = msg.reply
        if reply is not None:
            p.after.append(lambda: reply.set_result(None))

    def _on_timer(self, run: Run, msg: Msg, p: Pending) -> None:
        if run.instance is not None and not run.instance.is_pending(msg.seq):
            return  # fired already (a timer re-armed twice after recovery)
        self._record(run, p, E.TIMER_FIRED, {"seq": msg.seq})

    def _on_timeout(self, run: Run, msg: Msg, p: Pending) -> None:
        error = {"type": "TimeoutError", "message": f"workflow {run.workflow_id} ran past its timeout",
                 "traceback": "", "non_retryable": True}
        self._append(run, p, [Event(run.version + 1, E.WORKFLOW_TIMED_OUT, self.clock(), {})])
        self._close(run, p, WorkflowStatus.TIMED_OUT, None, error)

    def _on_child_done(self, run: Run, msg: Msg, p: Pending) -> None:
        if run.instance is not None and not run.instance.is_pending(msg.seq):
            return
        if msg.ok:
            self._record(run, p, E.CHILD_WORKFLOW_COMPLETED, {"seq": msg.seq, "result": msg.payload})
        else:
            self._record(run, p, E.CHILD_WORKFLOW_FAILED, {"seq": msg.seq, "error": msg.payload})

    def _on_child_check(self, run: Run, msg: Msg, p: Pending) -> None:
        child = msg.payload
        state = self.store.load(child["workflow_id"])
        link = {"workflow_id": run.workflow_id, "run_id": run.run_id, "seq": msg.seq}
        if state is None or state.parent != link:
            p.after.append(lambda: self._start_child(run, cmds.StartChildWorkflow(
                msg.seq, child["workflow_type"], child["workflow_id"], child.get("input"))))
        elif not state.status.is_open:
            self._child_closed(state)

    def _on_activity(self, run: Run, msg: Msg, p: Pending) -> None:
        task = run.tasks.get(msg.seq)
        if task is None or not task.running or task.attempt != msg.attempt:
            return  # a late result of an attempt that timed out or was already recorded
        task.running = False
        beat = self._beats.pop((run.run_id, msg.seq, msg.attempt), None)
        if beat is not None:
            task.details = beat[1]
        if msg.ok:
            del run.tasks[msg.seq]
            result = msg.payload  # hook first: the workflow may close in reaction to this result
            p.after.append(lambda: self.hooks.emit("on_activity_complete", run.workflow_id, result))
            self._record(run, p, E.ACTIVITY_COMPLETED, {"seq": msg.seq, "attempt": msg.attempt,
                                                         "result": msg.payload})
            return
        failure = msg.payload
        delay = task.retry.next_delay(msg.attempt, failure, self._rand.random())
        if delay is None:
            del run.tasks[msg.seq]
        self._record(run, p, E.ACTIVITY_FAILED, {"seq": msg.seq, "attempt": msg.attempt, "error": failure,
                                                  "retry_in": delay})
        if delay is not None:
            due = self.clock() + delay
            retry = Msg("dispatch", run.workflow_id, run.run_id, msg.seq, msg.attempt + 1)

            def arm() -> None:
                self.hooks.emit("on_retry", run.workflow_id, failure)
                self._timers.arm(due, retry)

            p.after.append(arm)

    def _on_dispatch(self, run: Run, msg: Msg, p: Pending) -> None:
        task = run.tasks.get(msg.seq)
        if task is None or (task.running and not msg.force) or (msg.attempt <= task.attempt and not msg.force):
            return
        self._begin_attempt(run, p, msg.seq, task, msg.attempt)

    def _on_attempt_timeout(self, run: Run, msg: Msg, p: Pending) -> None:
        task = run.tasks.get(msg.seq)
        if task is None or not task.running or task.attempt != msg.attempt:
            return
        if msg.payload == "heartbeat":
            last = self._beats.get((run.run_id, msg.seq, msg.attempt))
            assert task.heartbeat_timeout is not None
            if last is not None and self.clock() - last[0] < task.heartbeat_timeout:
                self._timers.arm(last[0] + task.heartbeat_timeout, msg)
                return
            text = f"no heartbeat for {task.heartbeat_timeout:g}s"
        else:
            text = f"attempt {msg.attempt} ran past its {task.timeout:g}s timeout"
        failure = {"type": "TimeoutError", "message": f"activity {task.name!r}: {text}", "traceback": "",
                   "non_retryable": False}
        self._on_activity(run, Msg("activity", run.workflow_id, run.run_id, msg.seq, msg.attempt,
                                   failure, ok=False), p)

    def _query(self, run: Run, msg: Msg) -> None:
        # A failed query fails only its caller: raising here would drop the run's other work in this
        # batch (such as the first commands of a run started just before), which nothing would redo.
        assert msg.reply is not None
        if run.instance is None:
            msg.reply.set_exception(NonDeterminismError(
                run.state.error["message"] if run.state.error else
                f"workflow {run.workflow_id} cannot be replayed in this process"))
            return
        name, args = msg.payload
        try:
            value = run.instance.query(name, *args)
        except Exception as exc:
            msg.reply.set_exception(exc)
            return
        msg.reply.set_result(value)

    # --- runs in memory ---------------------------------------------------------------------------
    def _get(self, workflow_id: str, batch: dict[str, Pending]) -> Run:
        run = self._runs.get(workflow_id)
        if run is not None:
            self._runs.move_to_end(workflow_id)
            return run
        state = self.store.load(workflow_id)
        if state is None:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
        return self._materialize(state, batch)

    def _start(self, msg: Msg, batch: dict[str, Pending]) -> None:
        state: WorkflowState = msg.payload
        self._materialize(state, batch)
        deadline = state.history[0].attrs.get("deadline") if state.history else None
        if deadline is not None:  # WorkflowOptions.timeout; `_recover` re-arms it after a restart
            self._timers.arm(deadline, Msg("timeout", state.workflow_id, state.run_id))

    def _materialize(self, state: WorkflowState, batch: dict[str, Pending]) -> Run:
        """Bring a run into memory by replaying its history; record the commands that were still due."""
        history = state.history
        run = Run(replace(state, history=()), None, len(history), state.status)
        self._runs[state.workflow_id] = run
        if not state.status.is_open:
            self._replay_closed(run, history)
            return run
        work = pending_work(history)
        if work.closed:  # continue-as-new was recorded but the next run was never created
            last = history[-1]
            if last.type == E.WORKFLOW_CONTINUED_AS_NEW:
                p = self._pending(run, batch, None)
                p.after.append(lambda: self._continue(run, last.attrs.get("input")))
            run.status = WorkflowStatus.COMPLETED
            return run
        try:
            defn = self.registry.workflow(state.workflow_type)
            instance = WorkflowInstance(defn, state.workflow_id, state.run_id, check_payload=self.check_payload)
            new = instance.activate(history)
        except (NonDeterminismError, ConfigurationError) as exc:
            self._stuck(run, exc, batch)
            return run
        run.instance = instance
        if state.error is not None:  # it was stuck; the code now matches its history again
            self._pending(run, batch, None).error = {}
        for seq, act in work.activities.items():
            run.tasks[seq] = self._task(act.name, act.input, act.options)
            run.tasks[seq].attempt = act.attempt if act.started else act.attempt - 1
            run.tasks[seq].running = act.started
        if new:
            p = self._pending(run, batch, None)
            self._append_commands(run, p, new, history[-1].timestamp)
        return run

    def _replay_closed(self, run: Run, history: tuple[Event, ...]) -> None:
        """A closed run is replayed only to answer its query handlers."""
        try:
            defn = self.registry.workflow(run.state.workflow_type)
            run.instance = WorkflowInstance(defn, run.workflow_id, run.run_id,
                                            check_payload=self.check_payload, read_only=True)
            closing = [i for i, ev in enumerate(history) if ev.type in (E.WORKFLOW_TIMED_OUT,)]
            run.instance.activate(history[: closing[0]] if closing else history)
        except Exception as exc:
            log.info("closed workflow %s cannot be replayed for queries: %s", run.workflow_id, exc)
            run.instance = None

    def _stuck(self, run: Run, exc: Exception, batch: dict[str, Pending]) -> None:
        log.error("workflow %s is stuck: %s", run.workflow_id, exc)
        failure = to_failure(exc)
        run.state = replace(run.state, error=failure)
        p = self._pending(run, batch, None)
        p.error = failure
        p.after.append(lambda: self.hooks.emit("on_workflow_fail", run.workflow_id, exc))

    def _evict(self) -> None:
        runs = self._runs
        while len(runs) > self.cache_size:
            _, run = runs.popitem(last=False)
            if run.instance is not None:
                run.instance.close()

    # --- recording --------------------------------------------------------------------------------
    def _record(self, run: Run, p: Pending, type: str, attrs: dict[str, Any]) -> None:
        """Append one input event and the commands the workflow issues in reaction to it."""
        now = self.clock()
        ev = Event(run.version + 1, type, now, attrs)
        if run.instance is None:  # stuck: keep the input, run nothing
            self._append(run, p, [ev])
            return
        new = run.instance.activate((ev,))
        self._append(run, p, [ev])
        if new:
            self._append_commands(run, p, new, now)

    def _append(self, run: Run, p: Pending, events: list[Event]) -> None:
        p.events.extend(events)
        run.version += len(events)

    def _append_commands(self, run: Run, p: Pending, new: list[cmds.Command], now: float) -> None:
        base = run.version
        self._append(run, p, [cmds.to_event(c, base + i + 1, now) for i, c in enumerate(new)])
        for c in new:
            if isinstance(c, cmds.ScheduleActivity):
                task = run.tasks[c.seq] = self._task(c.name, c.input, c.options)
                self._begin_attempt(run, p, c.seq, task, 1)
            elif isinstance(c, cmds.StartTimer):
                due, timer = now + c.duration, Msg("timer", run.workflow_id, run.run_id, c.seq)
                p.after.append(lambda due=due, timer=timer: self._timers.arm(due, timer))
            elif isinstance(c, cmds.StartChildWorkflow):
                p.after.append(lambda c=c: self._start_child(run, c))
            elif isinstance(c, cmds.ContinueAsNew):
                run.status = WorkflowStatus.COMPLETED  # this run is over; its id lives on
                p.after.append(lambda c=c: self._continue(run, c.input))
            elif type(c) in _CLOSE_STATUS:
                result = c.result if isinstance(c, cmds.CompleteWorkflow) else None
                error = c.error if isinstance(c, cmds.FailWorkflow) else None
                self._close(run, p, _CLOSE_STATUS[type(c)], result, error)

    def _task(self, name: str, input: Any, options: dict[str, Any]) -> Task:
        defn = self.registry.activities.get(name)
        return Task(name, input, effective_retry(options, defn), effective_option(options, defn, "timeout"),
                    effective_option(options, defn, "heartbeat_timeout"))

    def _begin_attempt(self, run: Run, p: Pending, seq: int, task: Task, attempt: int) -> None:
        task.attempt, task.running = attempt, True
        self._record(run, p, E.ACTIVITY_STARTED, {"seq": seq, "attempt": attempt})
        item = (run.workflow_id, run.run_id, seq, attempt, task.name, task.input, task.details)
        p.after.append(lambda: self._pool.submit(item))
        now = self.clock()
        if task.timeout is not None:
            due = now + task.timeout
            msg = Msg("attempt_timeout", run.workflow_id, run.run_id, seq, attempt, "timeout")
            p.after.append(lambda: self._timers.arm(due, msg))
        if task.heartbeat_timeout is not None:
            due_hb = now + task.heartbeat_timeout
            msg_hb = Msg("attempt_timeout", run.workflow_id, run.run_id, seq, attempt, "heartbeat")
            p.after.append(lambda: self._timers.arm(due_hb, msg_hb))

    def _close(self, run: Run, p: Pending, status: WorkflowStatus, result: Any,
               error: dict[str, Any] | None) -> None:
        run.status = status
        p.status, p.result = status, result
        if error is not None:
            p.error = error
        final = replace(run.state, status=status, result=result, error=error, updated_at=self.clock())

        def closed() -> None:
            self._runs.pop(run.workflow_id, None)
            if run.instance is not None:
                run.instance.close()
            with self._closed:
                self._outcomes[run.workflow_id] = final
                while len(self._outcomes) > 10_000:
                    self._outcomes.popitem(last=False)
                self._closed.notify_all()
            if status is WorkflowStatus.COMPLETED:
                self.hooks.emit("on_workflow_complete", run.workflow_id, result)
            else:
                self.hooks.emit("on_workflow_fail", run.workflow_id, error)
            self._child_closed(final)

        p.after.append(closed)

    # --- children and continue-as-new -------------------------------------------------------------
    def _start_child(self, parent: Run, c: cmds.StartChildWorkflow) -> None:
        link = {"workflow_id": parent.workflow_id, "run_id": parent.run_id, "seq": c.seq}
        try:
            defn = self.registry.workflow(c.workflow_type)
            state = new_run_state(defn.name, c.workflow_id, c.input, None, parent.state.queue, self.clock(),
                                  parent=link)
            self.store.create(state)
        except (WorkflowAlreadyStarted, ConfigurationError) as exc:
            self.post(Msg("child_done", parent.workflow_id, parent.run_id, c.seq, payload=to_failure(exc),
                          ok=False))
            return
        self.post(Msg("start", state.workflow_id, state.run_id, payload=state))

    def _child_closed(self, child: WorkflowState) -> None:
        link = child.parent
        if not link:
            return
        ok, payload = child_outcome(child)
        self.post(Msg("child_done", link["workflow_id"], link["run_id"], link["seq"], payload=payload, ok=ok))

    def _continue(self, run: Run, input: Any) -> None:
        self._runs.pop(run.workflow_id, None)
        if run.instance is not None:
            run.instance.close()
        state = new_run_state(run.state.workflow_type, run.workflow_id, input, None, run.state.queue,
                              self.clock(), parent=run.state.parent, continued_from=run.run_id)
        try:
            self.store.create(state, replace_run_id=run.run_id)
        except WorkflowAlreadyStarted:
            log.warning("workflow %s was continued as new by another process", run.workflow_id)
            return
        self.post(Msg("start", state.workflow_id, state.run_id, payload=state))
