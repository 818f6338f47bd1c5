"""The in-process engine: one coordinator thread drives every run; a pool of threads runs activities.

Everything that changes a run arrives in the coordinator's inbox (start, activity result, signal, timer,
cancel, ...). The coordinator drains the inbox in batches, feeds each input to the run's
`WorkflowInstance`, and writes all the resulting events of the batch in one store transaction (group
commit) before it acts on any of them: dispatching activities, arming timers, answering callers. Live
runs stay suspended in an LRU cache; an evicted run is rebuilt by replaying its history. A run whose
code no longer matches its history is left untouched ("stuck") and reported, never replayed wrongly.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future as Reply
from dataclasses import replace
from typing import Any

from beluga import logs, metrics
from beluga.activity_loop import run_closed
from beluga.core import driver as drv
from beluga.core import steps as st
from beluga.core.definitions import Registry, effective_option
from beluga.core.errors import (
    ConfigurationError,
    NonDeterminismError,
    WorkflowAlreadyStarted,
    WorkflowNotFound,
    WorkflowNotRunning,
)
from beluga.core.failure import attempt_timed_out, child_outcome, no_heartbeat, to_failure
from beluga.core.limits import Holder
from beluga.core.pending import pending_work
from beluga.core.priority import AGING, DEFAULT
from beluga.core.records import Append, Signal, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.core.recovery import (
    ArmDeadline,
    AttemptInterrupted,
    ChildToCheck,
    Obligation,
    RearmTimer,
    RetryDue,
    TakeStep,
    continuation_owed,
    orphan_owed,
    owed,
    policy_input,
)
from beluga.core.reset import in_flight
from beluga.hooks import Hooks
from beluga.inprocess.permits import MemoryPermits
from beluga.inprocess.pool import ActivityPool
from beluga.inprocess.records import (
    Activate,
    AttemptDeadline,
    AttemptFinished,
    BatchedStep,
    CheckChild,
    Msg,
    Nudge,
    ParentClosed,
    Query,
    Recover,
    Run,
    SignalWithStart,
    StartRun,
    SubmitLater,
    Update,
    input_msg,
)
from beluga.inprocess.timers import TimerHeap
from beluga.logs import get_logger
from beluga.runs import new_run_state
from beluga.stores.base import WorkflowStore

log = get_logger("beluga.engine")


class Engine:
    def __init__(self, store: WorkflowStore, registry: Registry, hooks: Hooks, *, workers: int,
                 cache_size: int, check_payload: Callable[[Any], Any],
                 clock: Callable[[], float] = time.time, async_activities: int = 100,
                 priority_aging: float = AGING) -> None:
        self.store = store
        self.registry = registry
        self.hooks = hooks
        self.check_payload = check_payload
        self.clock = clock
        self.cache_size = cache_size
        self._rand = random.Random()
        self._inbox: queue.SimpleQueue[Msg | None] = queue.SimpleQueue()
        self._timers = TimerHeap()
        self._permits = MemoryPermits(registry, self.post, clock, priority_aging)
        self._runs: OrderedDict[str, Run] = OrderedDict()
        # the rate's start gate waits in real time: not under a test environment's skipping clock
        self._pool = ActivityPool(workers, registry, lambda: self.hooks, self._inbox.put, check_payload, clock,
                                  self._permits.gate if clock is time.time else None, async_activities)
        self._beats = self._pool.beats
        self._closed = threading.Condition()
        self._outcomes: OrderedDict[str, WorkflowState] = OrderedDict()
        self._updates: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()  # ended updates, for callers
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="beluga-coordinator", daemon=True)
        # Called by the coordinator thread whenever it is about to wait with nothing to do (empty inbox,
        # no activity attempt queued or running), with the next due time it has armed (or None). Test
        # environments skip time from here; the CLI learns that the runs it drove have settled.
        self.on_idle: Callable[[float | None], None] | None = None

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

    def update_done(self, workflow_id: str, update_id: str) -> dict[str, Any] | None:
        """The `update_completed` attrs of an update this engine saw end, else None."""
        with self._closed:
            return self._updates.get((workflow_id, update_id))

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
    def _recover(self) -> int:
        """Resume every open run in the store: re-arm its timers, and retry (under their policy, with
        the same idempotency key) activities that were in flight. Runs parked on signals need nothing
        until a signal arrives."""
        count = 0
        for state in self.store.list(WorkflowFilter(status=WorkflowStatus.RUNNING, limit=2**62)):
            count += 1
            for obligation in owed(state):
                self._carry_out_owed(state.workflow_id, state.run_id, obligation)
            if state.parent:  # a parent that closed while this process was stopping may owe it its policy
                orphan = orphan_owed(state, self.store.load(state.parent["workflow_id"]))
                if orphan is not None:
                    self._close_children(state.parent["workflow_id"], orphan)
        return count

    def _carry_out_owed(self, wid: str, rid: str, obligation: Obligation) -> None:
        """One thing a reloaded run is owed (see `core.recovery.owed`), as the engine's own messages."""
        if isinstance(obligation, ArmDeadline):
            self._timers.arm(obligation.due, input_msg(wid, rid, st.TimedOut()))
        elif isinstance(obligation, TakeStep):  # loading it takes the step (see `_materialize`)
            self.post(Msg(wid, rid, Activate()))
        elif isinstance(obligation, RearmTimer):
            self._timers.arm(obligation.due, input_msg(wid, rid, st.TimerFired(obligation.seq)))
        elif isinstance(obligation, RetryDue):
            self._timers.arm(obligation.due, input_msg(wid, rid, st.AttemptDue(obligation.seq, obligation.attempt)))
        elif isinstance(obligation, AttemptInterrupted):  # it failed; the policy decides
            self.post(input_msg(wid, rid, st.ActivityOutcome(obligation.seq, obligation.attempt, False,
                                                             obligation.failure)))
        elif isinstance(obligation, ChildToCheck):
            self.post(Msg(wid, rid, CheckChild(obligation.seq, obligation.child)))

    # --- the coordinator loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        inbox = self._inbox
        while not self._stopping:
            on_idle = self.on_idle
            if on_idle is not None and self._pool.idle() and inbox.empty():
                on_idle(self._timers.next_due())
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
        batch: dict[str, BatchedStep] = {}
        metrics.begin_step()
        for msg in items:
            try:
                with logs.bound(workflow_id=msg.workflow_id or None, run_id=msg.run_id):
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
                    log.exception("could not handle %s for workflow %s", type(msg.body).__name__, msg.workflow_id)
        writes = [p for p in batch.values() if p.step.writes]
        for p in batch.values():
            assert p.run.driver is not None
            p.run.driver.seal(p.step)
        appends = [Append(p.run.workflow_id, p.run.run_id, p.step.expected, tuple(p.step.events), p.step.status,
                          p.step.result, p.step.error, updated_at=self.clock(),
                          search_attributes=p.step.search_attributes) for p in writes]
        try:
            refused = set(self.store.append(appends)) if appends else set()
        except Exception:
            log.exception("store append failed; retrying the batch's inputs shortly")
            refused = set(batch)
            time.sleep(0.1)
        for wid, pending in batch.items():
            if wid in refused:  # another writer came first: reload and redo
                metrics.coordinator_retry("default")
                self._runs.pop(wid, None)
                for m in pending.msgs:
                    self._inbox.put(m)
                continue
            with logs.bound(workflow_id=wid, run_id=pending.run.run_id,
                            workflow_type=pending.run.state.workflow_type):
                self._carry_out(pending)
        self._evict()

    # --- message handling -------------------------------------------------------------------------
    def _handle(self, msg: Msg, batch: dict[str, BatchedStep]) -> None:
        body = msg.body
        if isinstance(body, Nudge):
            if msg.reply is not None:  # a caller waiting until everything posted before it was handled
                msg.reply.set_result(None)
            return
        if isinstance(body, StartRun):
            self._start(body.state, batch)
            return
        if isinstance(body, SubmitLater):
            self._pool.submit(body.job, body.priority)
            return
        if isinstance(body, Recover):
            assert msg.reply is not None
            msg.reply.set_result(self._recover())
            return
        if isinstance(body, SignalWithStart):
            self._start_unless_open(body.state, batch)
        run = self._get(msg.workflow_id, batch)
        if msg.run_id is not None and msg.run_id != run.run_id:
            if msg.reply is not None:
                raise WorkflowNotRunning(f"run {msg.run_id} of workflow {msg.workflow_id} has ended")
            return  # a late message for an earlier run
        if isinstance(body, Query):
            self._query(run, body, msg)
            return
        if isinstance(body, Update):
            self._update(run, body, msg, batch)
            return
        if isinstance(body, Activate):
            return  # loading the run replayed it and recorded whatever was due
        p = batch.get(run.workflow_id)
        if run.driver is None or (p is None and not run.driver.is_open):
            if msg.reply is not None:
                raise WorkflowNotRunning(f"workflow {msg.workflow_id} is {run.status.value}; it can no "
                                         "longer be signalled or cancelled")
            return
        if p is None:
            p = batch[run.workflow_id] = BatchedStep(run, run.driver.begin())
        p.msgs.append(msg)
        if isinstance(body, CheckChild):
            self._child_check(run, body, p)
            return
        if isinstance(body, ParentClosed):
            if run.state.parent == body.link:
                run.driver.apply(p.step, body.input, self.clock(), self._rand.random())
            return
        input = self._input(run, msg)
        if input is None:
            return
        taken = run.driver.apply(p.step, input, self.clock(), self._rand.random())
        if msg.reply is not None:
            reply = msg.reply
            if taken or run.driver.is_open:
                answer = run.run_id if isinstance(body, SignalWithStart) else None
                p.after.append(lambda: reply.set_result(answer))
            else:
                reply.set_exception(WorkflowNotRunning(f"workflow {msg.workflow_id} is {run.status.value}; it "
                                                       "can no longer be signalled or cancelled"))

    def _input(self, run: Run, msg: Msg) -> st.Input | None:
        """The run input an engine message stands for (activity outcomes and attempt deadlines come
        from the pool and the timer heap); None when it is no longer relevant."""
        body = msg.body
        if isinstance(body, SignalWithStart):
            return body.signal
        if not isinstance(body, (AttemptFinished, AttemptDeadline)):
            return body  # type: ignore[return-value]
        assert run.driver is not None
        act = run.driver.pending.activities.get(body.seq)
        if act is None or not act.started or act.attempt != body.attempt:
            return None  # a late outcome of an attempt that timed out or was already recorded
        key = (run.run_id, body.seq, body.attempt)
        beat = self._beats.get(key)
        if isinstance(body, AttemptFinished):
            outcome = st.ActivityOutcome(body.seq, body.attempt, body.ok, body.payload)
        else:
            defn = self.registry.activities.get(act.name)
            if body.heartbeat:
                heartbeat_timeout = effective_option(act.options, defn, "heartbeat_timeout")
                if beat is not None and self.clock() - beat[0] < heartbeat_timeout:
                    self._timers.arm(beat[0] + heartbeat_timeout, msg)
                    return None
                timed_out = no_heartbeat(act.name, body.attempt, heartbeat_timeout)
            else:
                timed_out = attempt_timed_out(act.name, body.attempt, effective_option(act.options, defn, "timeout"))
            self._pool.cancel(run.run_id, TimeoutError(timed_out["message"]), seq=body.seq)  # an async one stops
            outcome = st.ActivityOutcome(body.seq, body.attempt, False, timed_out)
        if self._beats.pop(key, None) is not None:  # the next attempt starts from the last details
            run.details[body.seq] = beat[1]  # type: ignore[index]
        return outcome

    def _child_check(self, run: Run, check: CheckChild, p: BatchedStep) -> None:
        child = check.child
        state = self.store.load(child["workflow_id"])
        link = {"workflow_id": run.workflow_id, "run_id": run.run_id, "seq": check.seq}
        if state is None or state.parent != link:
            start = st.StartChild(check.seq, child["workflow_type"], child["workflow_id"], child.get("input"))
            p.after.append(lambda: self._start_child(run, start))
        elif not state.status.is_open:
            self._child_closed(state)

    def _query(self, run: Run, query: Query, msg: Msg) -> None:
        # A failed query fails only its caller: raising here would drop the run's other work in this
        # batch (such as the first commands of a run started just before), which nothing would redo.
        assert msg.reply is not None
        instance = run.driver.instance if run.driver is not None else run.reader
        if instance is None:
            error = run.driver.stuck if run.driver is not None else None
            msg.reply.set_exception(NonDeterminismError(
                error["message"] if error else f"workflow {run.workflow_id} cannot be replayed in this process"))
            return
        try:
            value = instance.query(query.name, *query.args)
        except Exception as exc:
            msg.reply.set_exception(exc)
            return
        msg.reply.set_result(value)

    def _update(self, run: Run, update: Update, msg: Msg, batch: dict[str, BatchedStep]) -> None:
        """Run the update's validator on the live run, then record it in this batch: validation and
        acceptance see the same state. A rejection answers the caller only (as a failed query does), and a
        retry of an update already accepted is answered without recording it again."""
        assert msg.reply is not None
        driver = run.driver
        if driver is None or not driver.is_open:
            msg.reply.set_exception(WorkflowNotRunning(f"workflow {run.workflow_id} is {run.status.value}; it "
                                                       "can no longer be updated"))
            return
        if update.update_id in driver.pending.updates:
            msg.reply.set_result(None)
            return
        if driver.instance is None:
            error = driver.stuck
            msg.reply.set_exception(NonDeterminismError(error["message"] if error else
                                                        f"workflow {run.workflow_id} cannot run here"))
            return
        try:
            driver.instance.validate_update(update.name, *update.args)
        except Exception as exc:
            msg.reply.set_exception(exc)
            return
        p = batch.get(run.workflow_id)
        if p is None:
            p = batch[run.workflow_id] = BatchedStep(run, driver.begin())
        p.msgs.append(msg)
        driver.apply(p.step, st.UpdateRequested(update.update_id, update.name, update.args, update.identity),
                     self.clock(), self._rand.random())
        reply = msg.reply
        p.after.append(lambda: reply.set_result(None))

    def _update_completed(self, workflow_id: str, done: st.UpdateCompleted) -> None:
        attrs = {"update_id": done.update_id, "result" if done.ok else "error": done.payload}
        with self._closed:
            self._updates[(workflow_id, done.update_id)] = attrs
            while len(self._updates) > 10_000:
                self._updates.popitem(last=False)
            self._closed.notify_all()

    # --- runs in memory ---------------------------------------------------------------------------
    def _get(self, workflow_id: str, batch: dict[str, BatchedStep]) -> Run:
        run = self._runs.get(workflow_id)
        if run is not None:
            self._runs.move_to_end(workflow_id)
            return run
        state = self.store.load(workflow_id)
        if state is None:
            raise WorkflowNotFound(f"no workflow with id {workflow_id!r}")
        return self._materialize(state, batch)

    def _start(self, state: WorkflowState, batch: dict[str, BatchedStep]) -> None:
        self._materialize(state, batch)
        deadline = state.history[0].attrs.get("deadline") if state.history else None
        if deadline is not None:  # WorkflowOptions.timeout; `_recover` re-arms it after a restart
            self._timers.arm(deadline, input_msg(state.workflow_id, state.run_id, st.TimedOut()))
        if len(state.history) > 1:  # a reset run (core/reset.py): what it had in flight at its point
            for obligation in in_flight(state):
                self._carry_out_owed(state.workflow_id, state.run_id, obligation)

    def _start_unless_open(self, state: WorkflowState, batch: dict[str, BatchedStep]) -> None:
        """Signal-with-start: create the run unless its id has one open (the store decides, atomically);
        the caller's signal is applied next, in this batch, to whichever run is open."""
        try:
            self.store.create(state)
        except WorkflowAlreadyStarted:
            return
        self.forget(state.workflow_id)
        metrics.run_started(state.workflow_type)
        self._start(state, batch)

    def _materialize(self, state: WorkflowState, batch: dict[str, BatchedStep]) -> Run:
        """Bring a run into memory by replaying its history; record what was still due."""
        run = Run(replace(state, history=()))
        self._runs[state.workflow_id] = run
        if not state.status.is_open:
            try:
                run.reader = drv.read_only(state, self.registry.workflow, check_payload=self.check_payload)
            except Exception as exc:
                log.info("closed workflow %s cannot be replayed for queries: %s", state.workflow_id, exc)
            return run
        work = pending_work(state.history)
        if work.closed:  # its close was recorded: a continue-as-new may still owe the next run
            run.state = replace(run.state, status=WorkflowStatus.COMPLETED)
            continuation = continuation_owed(work.closed, state.history[-1])
            if continuation is not None:
                self._continue(run, continuation.input)
            return run
        began = time.perf_counter()
        run.driver, step = drv.load(state, self.registry.workflow, self.registry.retry_policy,
                                    check_payload=self.check_payload, now=self.clock(), permit=self._permits.ask)
        metrics.replayed(state.workflow_type, time.perf_counter() - began)
        if step.writes or step.effects:
            batch[state.workflow_id] = BatchedStep(run, step)
        if run.driver.stuck is not None and step.error:
            reason = run.driver.stuck
            log.error("workflow %s is stuck: %s", state.workflow_id, reason["message"])
            batch[state.workflow_id].after.append(
                lambda: self.hooks.emit("on_workflow_fail", state.workflow_id, NonDeterminismError(reason["message"])
                                        if reason["type"] == "NonDeterminismError" else ConfigurationError(
                                            reason["message"])))
        return run

    def _evict(self) -> None:
        runs = self._runs
        while len(runs) > self.cache_size:
            _, run = runs.popitem(last=False)
            if run.driver is not None:
                run.driver.close()

    # --- effects, once the step is durable ---------------------------------------------------------
    def _carry_out(self, p: BatchedStep) -> None:
        run = p.run
        wid, rid = run.workflow_id, run.run_id
        metrics.observe_step("default", run.state.workflow_type, p.step,
                             self.clock() - run.state.created_at if p.step.status else None)
        for effect in p.step.effects:
            if isinstance(effect, st.DispatchAttempt):
                self._dispatch(run, effect)
            elif isinstance(effect, st.ArmTimer):
                self._timers.arm(effect.due, input_msg(wid, rid, st.TimerFired(effect.seq)))
            elif isinstance(effect, st.ArmRetry):
                self.hooks.emit("on_retry", wid, effect.failure)
                self._timers.arm(effect.due, input_msg(wid, rid, st.AttemptDue(effect.seq, effect.attempt)))
            elif isinstance(effect, st.AwaitPermit):
                due = input_msg(wid, rid, st.AttemptDue(effect.seq, effect.attempt))
                self._timers.arm(effect.due, due)
                if effect.why == "concurrency":
                    self._permits.wait(effect.key, str(Holder(wid, rid, effect.seq, effect.attempt)), due)
            elif isinstance(effect, st.ReturnPermit):
                self._permits.give_back(str(Holder(wid, rid, effect.seq, effect.attempt)))
            elif isinstance(effect, st.StartChild):
                self._start_child(run, effect)
            elif isinstance(effect, st.ContinueAsNew):
                self._continue(run, effect.input)
            elif isinstance(effect, st.RunClosed):
                self._finish(run, effect)
            elif isinstance(effect, st.ActivityClosed):
                queue = self.registry.queue_of(effect.name, effect.options)
                metrics.activity_closed(effect.name, queue, effect.seconds)
            elif isinstance(effect, st.CloseChildren):
                self._close_children(wid, effect)
            elif isinstance(effect, st.UpdateCompleted):
                self._update_completed(wid, effect)
            elif isinstance(effect, st.Observed):
                payload = effect.payload
                if isinstance(payload, st.SignalReceived):
                    payload = Signal(payload.name, payload.payload, self.clock(), payload.sender_id)
                self.hooks.emit(effect.hook, wid, payload)
        for action in p.after:
            action()

    def _dispatch(self, run: Run, d: st.DispatchAttempt) -> None:
        headers = run.driver.headers if run.driver is not None else None
        defn = self.registry.activities.get(d.name)
        job = (run.workflow_id, run.run_id, d.seq, d.attempt, d.name, d.input, run.details.get(d.seq), headers,
               time.time(), effective_option(d.options, defn, "queue"))
        now, priority = self.clock(), d.options.get("priority", DEFAULT)
        if d.start_at is not None and d.start_at > now:  # its rate limit's reserved start: no thread held till then
            self._timers.arm(d.start_at, Msg(run.workflow_id, run.run_id, SubmitLater(job, priority)))
            now = d.start_at
        else:
            self._pool.submit(job, priority)
        for kind in ("timeout", "heartbeat_timeout"):
            limit = effective_option(d.options, defn, kind)
            if limit is not None:
                self._timers.arm(now + limit, Msg(run.workflow_id, run.run_id,
                                                  AttemptDeadline(d.seq, d.attempt, kind == "heartbeat_timeout")))

    def _finish(self, run: Run, closed: st.RunClosed) -> None:
        assert run.driver is not None
        final = replace(run.driver.state, updated_at=self.clock())
        self._runs.pop(run.workflow_id, None)
        self._pool.cancel(run.run_id, run_closed(run.workflow_id, closed.status.value))
        run.driver.close()
        with self._closed:
            self._outcomes[run.workflow_id] = final
            while len(self._outcomes) > 10_000:
                self._outcomes.popitem(last=False)
            self._closed.notify_all()
        if closed.status is WorkflowStatus.COMPLETED:
            self.hooks.emit("on_workflow_complete", run.workflow_id, closed.result)
        else:
            self.hooks.emit("on_workflow_fail", run.workflow_id, closed.error)
        self._child_closed(final)

    # --- children and continue-as-new -------------------------------------------------------------
    def _start_child(self, parent: Run, c: st.StartChild) -> None:
        link = {"workflow_id": parent.workflow_id, "run_id": parent.run_id, "seq": c.seq}
        try:
            defn = self.registry.workflow(c.workflow_type)
            state = new_run_state(defn.name, c.workflow_id, c.input, None, parent.state.queue, self.clock(),
                                  parent=link)
            self.store.create(state)
        except (WorkflowAlreadyStarted, ConfigurationError) as exc:
            self.post(input_msg(parent.workflow_id, parent.run_id, st.ChildClosed(c.seq, False, to_failure(exc))))
            return
        self.created(state)

    def created(self, state: WorkflowState) -> None:
        """A run was just created in the store (by `execute`, as a child, or continued as new): counted
        started here, once, whatever its first step does; then taken up by the coordinator."""
        metrics.run_started(state.workflow_type)
        self.post(Msg(state.workflow_id, state.run_id, StartRun(state)))

    def _close_children(self, parent_id: str, close: st.CloseChildren) -> None:
        """Apply the closed parent's policy to each of its open children (see `st.CloseChildren`)."""
        for child in close.children:
            link = {"workflow_id": parent_id, "run_id": close.parent_run_id, "seq": child.seq}
            self.post(Msg(child.workflow_id, None, ParentClosed(link, policy_input(child, close.reason))))

    def _child_closed(self, child: WorkflowState) -> None:
        link = child.parent
        if not link:
            return
        ok, payload = child_outcome(child)
        self.post(input_msg(link["workflow_id"], link["run_id"], st.ChildClosed(link["seq"], ok, payload)))

    def _continue(self, run: Run, input: Any) -> None:
        self._runs.pop(run.workflow_id, None)
        self._pool.cancel(run.run_id, run_closed(run.workflow_id, "continued as new"))
        summary = run.driver.state if run.driver is not None else run.state  # its upserts carried over
        if run.driver is not None:
            run.driver.close()
        state = new_run_state(run.state.workflow_type, run.workflow_id, input, None, run.state.queue,
                              self.clock(), parent=run.state.parent, continued_from=run.run_id,
                              search_attributes=summary.search_attributes, memo=summary.memo)
        try:
            self.store.create(state, replace_run_id=run.run_id)
        except WorkflowAlreadyStarted:
            log.warning("workflow %s was continued as new by another process", run.workflow_id)
            return
        self.created(state)
