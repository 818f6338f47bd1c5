"""The coordinator: drains a run's inbox, replays the workflow with the pure core, compare-and-appends
the new events to the run's Redis Stream (consuming the inbox messages in the same atomic step), and
only then dispatches what comes next.

Only the holder of the run's lease appends; a coordinator that loses a race re-reads and tries again.
A run waiting on activities stays live in a small per-process cache; when another worker process has
advanced it meanwhile, the cached instance catches up by applying just the new events, so a step
costs the same at event 6000 as at event 6. Runs parked on signals or timers are dropped from memory
at once and replayed when they wake."""

from __future__ import annotations

import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from beluga import codec, logs, metrics
from beluga.celery import messages
from beluga.celery.attempts import DUE
from beluga.celery.batch import Batch
from beluga.celery.fleet import Begun, Fleet, timer_member
from beluga.celery.fleet_scripts import REPORT_QUEUED
from beluga.celery.outages import TRANSIENT, retry_transient
from beluga.celery.permits import FleetPermits, retry_timer_member
from beluga.celery.report import CARRIED, SENT_AT, UNTIL, AttemptReport
from beluga.celery.roster import Handoff
from beluga.celery.step import INBOX_BATCH, HandOn, Plan, RunVanished, after_one, left_to_sweep
from beluga.core import driver as drv
from beluga.core import steps as st
from beluga.core.definitions import Registry, effective_option
from beluga.core.errors import HistoryLost, SerializationError, UnreadableRun
from beluga.core.failure import child_outcome, unreadable
from beluga.core.limits import Holder
from beluga.core.pending import Pending
from beluga.core.records import Append, WorkflowState, WorkflowStatus
from beluga.core.recovery import (
    ChildrenToClose,
    ChildToCheck,
    ContinuationOwed,
    backups_owed,
    continuation_owed,
    policy_input,
)
from beluga.logs import get_logger
from beluga.stores.redis import on_primary

log = get_logger("beluga.coordinator")
CARRY_MAX = 2048  # bytes of encoded events an activity message carries at most
STUCK_RETRY_MAX = 300.0
REPORTED_MAX = 10_000  # runs a process remembers having reported unreadable or vanished (each said once)


class Coordinator:
    def __init__(self, fleet: Fleet, registry: Registry, *, dispatch: Callable[..., None],
                 wake: Callable[[str, str | None], None], start_child: Callable[..., None],
                 check_payload: Callable[[Any], Any], cache_size: int = 256, stuck_retry: float = 5.0,
                 eager: Callable[[str, int, dict[str, Any]], bool] | None = None,
                 elsewhere: Callable[[str, tuple[str, ...]], Handoff | None] | None = None,
                 hand_on: Callable[[str, Handoff], None] | None = None) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self.registry = registry
        self.dispatch = dispatch
        self.wake = wake
        self.start_child = start_child
        self.check_payload = check_payload
        self._caches = threading.local()  # the live runs of each thread (see `cache`)
        self.cache_size = cache_size
        self.stuck_retry = stuck_retry
        # whether the caller would run an attempt (name, attempt, options) itself, right after the append
        # that dispatches it, instead of having it sent (see process.FleetProcess.takes_eagerly)
        self.eager = eager
        # a live worker that may drive a run this process cannot (workflow type, versions tried), and how
        # to send the run there (see roster); None: a stuck run is stuck here
        self.elsewhere = elsewhere
        self.hand_on = hand_on
        self._rand = random.Random()
        self.permits = FleetPermits(fleet, registry)  # the activities' rate and concurrency limits
        # runs are coordinated in batches (run_many) where their writes may be pipelined: not on a Redis
        # Cluster (a batch's runs live on several nodes), nor when replicas must confirm each write
        self.batches = Batch(self) if not self.store.cluster and self.store.append_replicas <= 0 else None
        self._local = threading.local()  # a batch's closed runs, announced together (see Batch)
        self._reported: OrderedDict[str, None] = OrderedDict()  # see `_first_report`
        self._reported_lock = threading.Lock()

    @property
    def cache(self) -> OrderedDict[str, drv.RunDriver]:
        """The live runs of the calling thread: a run's suspended code (a greenlet) resumes only on the
        thread that started it, so each thread keeps its own (a pool thread; the threads that report a
        process's async attempts). A run another thread advanced catches up from the store, as one
        another process advanced does."""
        cache = getattr(self._caches, "runs", None)
        if cache is None:
            cache = self._caches.runs = OrderedDict()
        return cache

    def run(self, workflow_id: str, report: AttemptReport | None = None, tried: tuple[str, ...] = ()) -> bool:
        """Process the run's inbox under its lease. False when another coordinator holds the lease: it
        looks at the inbox again as it lets go, so nothing waits unseen. `report` is an activity
        attempt's, handed over by the task that ran it.
        `tried`: the versions of the run's code that workers tried before handing it here (see roster)."""
        self._local.tried = tried
        try:
            return self._run(workflow_id, report)
        finally:
            self._local.tried = ()

    def _run(self, workflow_id: str, report: AttemptReport | None) -> bool:
        metrics.begin_step()
        worked = False
        if report is not None:
            try:
                done = self._report_fast(workflow_id, report)
            except BaseException:
                self._drop(workflow_id)  # the cached run took in the report, which was not recorded
                raise
            if done:
                return True
            if done is not None:
                report = None  # queued by the script: the coordinator below takes it from the inbox
        for _ in range(100):
            cached = self.cache.get(workflow_id)
            known = cached.version if cached else 0
            if report is not None:
                begun = self.fleet.report_and_begin(workflow_id, report.seq, report.attempt, report.message,
                                                    report.next_attempt, INBOX_BATCH, known,
                                                    heartbeat=report.heartbeat)
                report = None
            else:
                begun = self.fleet.begin(workflow_id, INBOX_BATCH, known)
            if begun is None:
                return worked
            worked = True
            if not self._drive(workflow_id, begun):
                return True
        self.wake(workflow_id, None)
        return True

    def _drive(self, workflow_id: str, begun: Begun, waiting: int | None = -1) -> int:
        """Take one step of the run whose lease `begun` holds (`waiting`: None when that step's append
        was refused already), re-reading after a lost append race; on failure drop its cached instance
        and give the lease back. Returns how many messages wait in its inbox after it."""
        try:
            if waiting is not None:
                waiting = self._step(workflow_id, begun)
            while waiting is None:  # lost an append race while holding the lease: re-read
                metrics.coordinator_retry("celery")
                waiting = self._step(workflow_id, self.fleet.read(workflow_id, begun.token, INBOX_BATCH))
        except HandOn as exc:
            self._handed_on(workflow_id, begun.token, exc.handoff)
            return 0
        except BaseException:
            self._drop(workflow_id)  # its cached instance may have taken inputs that were not recorded
            retry_transient(lambda token=begun.token: self.fleet.release(workflow_id, token), 2.0)  # Redis back?
            raise
        return waiting

    def _handed_on(self, workflow_id: str, token: str, handoff: Handoff) -> None:
        """The run goes to a worker that may drive it: its lease given back first (else that worker finds
        it taken and leaves the run to us), its inbox untouched (the messages are the other worker's to
        record). Never raises. Should the message be lost, the run stays dirty and the sweep wakes it again."""
        self._drop(workflow_id)
        try:
            retry_transient(lambda: self.fleet.release(workflow_id, token), 2.0)
        except TRANSIENT as exc:  # the lease lapses within its ttl; then the sweep wakes the run anyway
            log.warning("could not give back the lease of workflow %s before handing it on: %s", workflow_id, exc)
        if self.hand_on is not None:
            self.hand_on(workflow_id, handoff)

    def run_many(self, workflow_ids: list[str]) -> None:
        """Coordinate these runs (a shard's wake task). A run that fails is logged and left to the sweep
        (its inbox keeps its messages); a Redis outage ends the batch (the sweep wakes the rest).

        Several runs are taken as one batch (see `Batch`): their leases in one round trip, the runs this
        process has not cached in one read, their appends in one pipeline. What the batch leaves (more
        messages arrived meanwhile, a lease lost) is coordinated one by one after it."""
        if len(workflow_ids) > 1 and self.batches is not None:
            workflow_ids = self.batches.run(workflow_ids)
        for workflow_id in workflow_ids:
            try:
                self.run(workflow_id)
            except TRANSIENT:
                raise
            except Exception as exc:
                left_to_sweep(workflow_id, exc)

    def _report_fast(self, workflow_id: str, report: AttemptReport) -> bool | None:
        """The common case in one round trip: this process has the run cached, so it applies the report
        and appends the result at once, conditional on nobody having touched the run meanwhile. True
        when done; False when the script queued the report instead; None when not tried.

        `report` may say (`sent_at`) which version the run had when the attempt was sent: a cached run
        behind it (another process of the pool took the step before) first catches up with the events
        it missed, from those the message carried (`carried`) or else in one more round trip, instead of
        the coordinator's lease, read and reload."""
        message, sent_at, carried = report.message, report.sent_at, report.carried
        run = self.cache.get(workflow_id)
        if run is None and sent_at is not None:
            run = self._load_for_report(workflow_id, message.get("run"))
        if run is None or not run.is_open:
            return None
        before: Any = run.state
        if sent_at is not None and run.version < sent_at:
            if message.get("run") != run.run_id:
                return None
            missed = _carried_since(run.version, sent_at, carried)
            if missed is None:
                try:
                    missed, carried = self.store.history(workflow_id, after=run.version), []
                except UnreadableRun:  # the coordinator finds it too, and holds the run stuck
                    self._drop(workflow_id)
                    return None
            if len(missed) < sent_at - run.version or not self._catch_up(run, missed):
                self._drop(workflow_id)
                return None
            run.tail = (run.version, list(carried or ()))
            before = None  # the cached summary may be behind: the append reads the store's if the step closes the run
        step = run.begin()
        run.apply(step, messages.decode(message), self.fleet.clock.now(), self._rand.random())  # type: ignore[arg-type]
        if not step.events:  # stale for this cached state: let the coordinator sort it out
            return None
        if step.search_attributes is not None:  # an upsert is indexed by append_attrs.lua: the coordinator's path
            self._drop(workflow_id)
            return None
        plan = self._sealed(workflow_id, None, run, step, step.expected, before)
        call = self.store.append_call(plan.append, **plan.options)  # type: ignore[arg-type]
        if call is None:  # the run vanished meanwhile: the coordinator sorts it out
            self._drop(workflow_id)
            return None
        left = on_primary(self.fleet.report_and_append, call, report.seq, report.attempt, message,
                          report.next_attempt, report.heartbeat)
        # REPORT_QUEUED: it was applied to the cached instance, which is dropped (rebuilt from the store)
        if self._recorded(plan, None if left == REPORT_QUEUED else left, call.events) is None:
            metrics.coordinator_retry("celery")
            return False
        return True

    def _load_for_report(self, workflow_id: str, run_id: str | None) -> drv.RunDriver | None:
        """An attempt's report for a run this process has not cached (another process of the pool took
        its steps so far): replay it from the store, one read, so that the fast path can follow. None
        when the run is not in a state to take the report directly (closed, another run, stuck, or its
        replay owes writes): the coordinator takes the report then."""
        state = self.store.load(workflow_id)
        if state is None or not state.status.is_open or state.run_id != run_id or unreadable(state) is not None:
            return None
        run, step = self._replay(state)
        if step.writes or run.stuck is not None:
            run.close()
            return None
        self.cache[workflow_id] = run  # dropped again (and closed) should the fast path fail
        return run

    # --- one step -------------------------------------------------------------------------------------
    # A step is taken one way, whichever path takes it (a run alone: `_step`; a batch's runs: `Batch`; an
    # attempt's report on a cached run: `_report_fast`): the run's inputs are applied (`_plan`, or the
    # report), the step sealed into a `Plan` (`_sealed`), its append written (`append_one`, `append_many`
    # or `report_and_append`), then what it leads to carried out (`_recorded`), or `_quiet` when it
    # records nothing. The paths differ only in how they get the run, take its lease and write.
    def _step(self, workflow_id: str, begun: Begun) -> int | None:
        """Record the messages and release the lease in one append. Returns how many messages wait in
        the inbox after it, or None when the append was refused (the lease is still held)."""
        run_id, version, raw = begun.run_id, begun.version, begun.messages
        logs.update(run_id=run_id)
        if run_id is None:
            if raw:
                self._vanished(workflow_id, len(raw))
            return self.fleet.release(workflow_id, begun.token)
        try:
            plan = self._plan(workflow_id, begun, *self._live(workflow_id, run_id, version, begun.newer))
            if plan.append is None:
                return self._quiet(plan)
            waiting = on_primary(self.store.append_one, plan.append, **plan.options)
        except UnreadableRun as exc:
            return self._unreadable(workflow_id, begun, exc)
        return self._recorded(plan, waiting)

    def _unreadable(self, workflow_id: str, begun: Begun, exc: UnreadableRun) -> int:
        """A run whose stored data cannot be read whole (events of its history lost, say to an evicting
        Redis; or data this Beluga cannot decode) is held stuck: never replayed and never extended (its
        cached instance is dropped: nothing is appended past a hole, and it never completes). Its inputs
        stay in its inbox; it leaves the sweep's dirty set, so it is looked at again only when a new
        input comes, not every few seconds. Said once per process at ERROR and counted as stuck; lost
        events are also marked on the run, so that a summary read (`load_summary`) says so. Returns 0:
        nothing for the caller to coordinate."""
        self._drop(workflow_id)
        if isinstance(exc, HistoryLost) and begun.run_id:
            self.store.mark_lost(workflow_id, begun.run_id, str(exc))
        if self._first_report(workflow_id):
            log.error("workflow %s is held stuck, its stored run cannot be read whole (it never completes; its "
                      "inputs are kept): %s", workflow_id, exc)
            metrics.run_unreadable(exc.workflow_type or "unknown", type(exc).__name__)
        self.fleet.forget_dirty(workflow_id)
        self.fleet.release(workflow_id, begun.token)
        return 0

    def _vanished(self, workflow_id: str, messages: int) -> None:
        """Messages wait for a run whose summary is gone (evicted or deleted, while its inbox, attempts or
        timers remained): reported once per process at ERROR and counted, and the inbox dropped, so that
        nothing retries it forever."""
        if self._first_report(workflow_id):
            log.error("workflow %s has %d messages waiting but no run: its summary is gone (evicted? the history "
                      "Redis needs maxmemory-policy noeviction; or deleted). Dropping its inbox", workflow_id, messages)
            metrics.run_vanished()
        self.fleet.redis.delete(self.store.names.run(workflow_id).inbox)

    def _first_report(self, workflow_id: str) -> bool:
        """Whether this process has not yet reported the run as unreadable or vanished (it remembers the
        last REPORTED_MAX)."""
        with self._reported_lock:
            if workflow_id in self._reported:
                return False
            self._reported[workflow_id] = None
            if len(self._reported) > REPORTED_MAX:
                self._reported.popitem(last=False)
            return True

    def _plan(self, workflow_id: str, begun: Begun, run: drv.RunDriver, step: st.Step) -> Plan:
        """Apply the messages `begun` read to the run: what to append (or, when nothing is to be recorded,
        what to do instead)."""
        logs.update(run_id=run.run_id)
        if run.is_open and run.pending.closed and self._continue_lost(run):
            # its messages stay in the inbox, which the next run keeps (see create.lua)
            return Plan(workflow_id, begun, run, step, None, {}, None, None)
        before = run.state  # the stored summary: the append needs not read it again
        retry_stuck: float | None = None
        started = False
        for item in begun.messages:
            msg = _decode(item, workflow_id)
            if msg is None or msg.get("run") not in (None, run.run_id):
                continue  # foreign, or for an earlier run of this id
            try:
                input = messages.decode(msg)
            except (KeyError, TypeError, ValueError) as exc:
                log.error("dropping a malformed message in the inbox of %s: %s", workflow_id, exc)
                continue
            if isinstance(input, messages.RetryStuck):
                retry_stuck = input.delay
            elif isinstance(input, messages.EnsureChild):
                self._ensure_child(run, input.seq)
            elif isinstance(input, messages.NotifyParent):
                self._notify_parent(run)
            elif isinstance(input, messages.Start):
                started = True
            elif isinstance(input, messages.CloseChildren):
                self._close_children(run.workflow_id, input.close)
            elif isinstance(input, messages.ParentClosed):
                if run.state.parent == input.parent:  # still that parent's child: the policy applies
                    run.apply(step, input.input, self.fleet.clock.now(), self._rand.random())
            elif not isinstance(input, messages.EnsureContinued):
                run.apply(step, input, self.fleet.clock.now(), self._rand.random())
        # One durable retry chain per stuck run, started when it gets stuck: inputs wake it as well, but
        # only the chain's own message re-arms it, so a stuck run never multiplies its retries.
        again: float | None = None
        if run.stuck is not None and run.is_open and (step.error or retry_stuck is not None):
            again = self.stuck_retry if step.error else min(STUCK_RETRY_MAX, 2 * (retry_stuck or 0.0))
            if step.error:
                log.error("workflow %s is stuck (looking again in %gs; its inputs are kept): %s", workflow_id,
                          again, run.stuck["message"])
        if not step.writes and not begun.inbox_used:
            return Plan(workflow_id, begun, run, step, None, {}, None, again)
        plan = self._sealed(workflow_id, begun, run, step, begun.version, before, again,
                            inbox_used=begun.inbox_used, lease_token=begun.token)
        plan.started = started
        return plan

    def _sealed(self, workflow_id: str, begun: Begun | None, run: drv.RunDriver, step: st.Step, expected: int,
                summary: WorkflowState | None, again: float | None = None, **options: Any) -> Plan:
        """The plan that records `step`: its append, conditional on the run's version being `expected`
        (`summary`: the run's stored summary, when known), with `options` for the append call; the attempt
        the caller runs itself (see `eager`), the deadline of those it dispatches, and the durable timers
        the step arms (`again`: a stuck run's next look)."""
        run.seal(step)
        append = Append(workflow_id, run.run_id, expected, tuple(step.events), step.status, step.result,
                        step.error, self.fleet.clock.now(), search_attributes=step.search_attributes)
        eager = self._eager_pick(step)
        options.update(attempts=_allowed(step), dispatch_deadline=self._deadline(eager), summary=summary,
                       timers=self._timers(run, step, again))
        return Plan(workflow_id, begun, run, step, append, options, eager, again)

    def _quiet(self, plan: Plan, release: bool = True) -> int:
        """A step that records nothing: its effects (a stuck run's retry), then the lease back."""
        run = plan.run
        if plan.again is not None:
            self.fleet.arm(plan.workflow_id, self.fleet.clock.now() + plan.again,
                           messages.encode(messages.RetryStuck(plan.again), run.run_id))
        self._carry_out(run, plan.step)
        self._keep_or_drop(run)
        return self.fleet.release(plan.workflow_id, plan.begun.token) if release else 0

    def _recorded(self, plan: Plan, waiting: int | None, encoded: tuple[bytes, ...] | None = None) -> int | None:
        """After the plan's append: its effects, or None when it was refused (a lease taken is still held;
        an attempt's report was queued instead). `encoded`: the append's events, encoded."""
        if waiting is None:
            self._drop(plan.workflow_id)
            return None
        if plan.started:  # the append consumed the run's start message: it is counted here, once
            metrics.run_started(plan.run.state.workflow_type)
        self._carry_out(plan.run, plan.step, plan.eager, plan.options["dispatch_deadline"], encoded)
        self._keep_or_drop(plan.run)
        return waiting

    def _keep_or_drop(self, run: drv.RunDriver) -> None:
        """Keep open runs live in a bounded LRU (a signal to a cached parked run costs no replay); the
        number of parked runs never grows worker memory past `cache_size`. Closed and stuck runs cost
        none (a stuck run is loaded afresh each time, so newly deployed code is seen)."""
        wid = run.workflow_id
        if run.is_open and run.stuck is None:
            self.cache[wid] = run
            self.cache.move_to_end(wid)
            if not getattr(self._local, "holding", False):
                self._trim()
        else:
            self._drop(wid)
            run.close()

    def _trim(self) -> None:
        """Evict (and close) the least recently used runs past `cache_size`. Not while a batch holds runs
        of its own outside the cache (see Batch): evicting one of them would close the instance that the
        batch then puts back."""
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)[1].close()

    def _drop(self, workflow_id: str) -> None:
        run = self.cache.pop(workflow_id, None)
        if run is not None:
            run.close()

    def _live(self, workflow_id: str, run_id: str, version: int, newer: list[bytes]
              ) -> tuple[drv.RunDriver, st.Step]:
        got = self._live_cached(workflow_id, run_id, version, newer)
        return got if got is not None else self._from_state(workflow_id, self.store.load(workflow_id))

    def _live_cached(self, workflow_id: str, run_id: str, version: int, newer: list[bytes]
                     ) -> tuple[drv.RunDriver, st.Step] | None:
        """The run from this process's cache, caught up to `version`; None (and dropped) when it must be
        loaded from the store."""
        run = self.cache.get(workflow_id)
        if run is not None and run.run_id == run_id and run.version <= version:
            if run.version == version:
                return run, run.begin()
            read = len(newer) == version - run.version
            try:
                events = [codec.decode_event(e) for e in newer] if read else self.store.history(
                    workflow_id, after=run.version)
            except (UnreadableRun, SerializationError):  # the load that follows finds it: held stuck
                events = None
            # another process advanced the run: apply just the new events
            if events is not None and self._catch_up(run, events):
                run.tail = (run.version, list(newer) if read else [])
                return run, run.begin()
        self._drop(workflow_id)
        return None

    def _from_state(self, workflow_id: str, state: WorkflowState | None) -> tuple[drv.RunDriver, st.Step]:
        """The run replayed from its stored state."""
        if state is None:
            raise RunVanished(f"workflow {workflow_id} vanished while being coordinated")
        damaged = unreadable(state)
        if damaged is not None:
            damaged.workflow_type = state.workflow_type
            raise damaged
        if not state.status.is_open:
            closed = drv.RunDriver(replace(state, history=()), len(state.history), Pending(), None,
                                   self.registry.retry_policy)
            return closed, closed.begin()
        run, step = self._replay(state)
        if run.stuck is not None and self.elsewhere is not None:
            handoff = self.elsewhere(state.workflow_type, getattr(self._local, "tried", ()))
            if handoff is not None:  # never marked stuck here: a live worker may have its code
                run.close()
                raise HandOn(handoff)
        return run, step

    def _replay(self, state: WorkflowState) -> tuple[drv.RunDriver, st.Step]:
        """The open run replayed from its stored history (timed: `beluga_workflow_replay_latency_seconds`)."""
        began = time.perf_counter()
        got = drv.load(state, self.registry.workflow, self.registry.retry_policy, check_payload=self.check_payload,
                       now=self.fleet.clock.now(), permit=self.permits.ask)
        metrics.replayed(state.workflow_type, time.perf_counter() - began)
        return got

    def _catch_up(self, run: drv.RunDriver, events: Sequence[Any]) -> bool:
        """A cached run brought up to date with the events another process appended (timed as a replay)."""
        began = time.perf_counter()
        ok = run.catch_up(events)
        metrics.replayed(run.state.workflow_type, time.perf_counter() - began)
        return ok

    def _options(self, name: str, options: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        """What the activity message carries: the call's own options plus where and how long to run
        (the sender needs those) and the run's trace context; the worker that runs it resolves the retry
        policy from its own code."""
        defn = self.registry.activities.get(name)
        merged = dict(options)
        if headers:
            merged["trace"] = headers
        for key in ("timeout", "heartbeat_timeout", "schedule_to_start_timeout", "queue"):
            value = effective_option(options, defn, key)
            if value is not None:
                merged[key] = value
        return merged

    def _eager_pick(self, step: st.Step) -> st.DispatchAttempt | None:
        """The one attempt of this step that the caller will run itself (see `eager`), if any."""
        if self.eager is None:
            return None
        for effect in step.effects:
            # a limited activity goes through the broker: its start is the one its permit gave it
            if isinstance(effect, st.DispatchAttempt) and self.registry.limit_of(effect.name) is None and self.eager(
                    effect.name, effect.attempt, self._options(effect.name, effect.options)):
                return effect
        return None

    def _deadline(self, eager: st.DispatchAttempt | None) -> float:
        """The deadline of the attempts a step dispatches: a lease when one of them starts at once in this
        process (which renews it), else the time allowed for a worker to take the message."""
        return self.fleet.lease_deadline() if eager is not None else self.fleet.dispatch_deadline()

    # --- effects, once the step is durable -------------------------------------------------------------
    def _timers(self, run: drv.RunDriver, step: st.Step, stuck_retry: float | None = None
                ) -> list[tuple[float, bytes]]:
        """The durable timers the step arms, written in its own append: a process that dies right after
        the append cannot lose one."""
        wid, rid = run.workflow_id, run.run_id
        now = self.fleet.clock.now()
        out = []
        for effect in step.effects:
            if isinstance(effect, st.ArmTimer):
                out.append((effect.due, timer_member(wid, messages.encode(st.TimerFired(effect.seq), rid))))
            elif isinstance(effect, (st.ArmRetry, st.AwaitPermit)):
                out.append((effect.due, retry_timer_member(wid, rid, effect.seq, effect.attempt)))
        # a backup for each of what the step owes, should the process die before carrying it out (the
        # parent's news in the run's own inbox: the parent's may be in another shard)
        for owed in backups_owed(step.effects, bool(run.state.parent)):
            backup = (messages.EnsureChild(owed.seq) if isinstance(owed, ChildToCheck) else
                      messages.EnsureContinued() if isinstance(owed, ContinuationOwed) else
                      messages.CloseChildren(owed.close) if isinstance(owed, ChildrenToClose) else
                      messages.NotifyParent())
            # the children's policy names the run that closed: whichever run of the id is current applies it
            for_run = None if isinstance(backup, messages.CloseChildren) else rid
            out.append((now + self.fleet.backup_delay(), timer_member(wid, messages.encode(backup, for_run))))
        if stuck_retry is not None:
            out.append((now + stuck_retry, timer_member(wid, messages.encode(messages.RetryStuck(stuck_retry),
                                                                                     rid))))
        return out

    def _carry_out(self, run: drv.RunDriver, step: st.Step, eager: st.DispatchAttempt | None = None,
                   deadline: float | None = None, encoded: tuple[bytes, ...] | None = None) -> None:
        """What a recorded step leads to (send activities, start children, tell the parent): each is done
        even if an earlier one failed, since the step is recorded and will not run again, and each
        carries on from what the primary holds (see `on_primary`): a run must not stall while a replica
        lags. Timers were armed by the append itself. `eager`: the attempt the caller runs itself;
        `deadline`: the one the append gave the attempts it dispatched; `encoded`: its events, encoded."""
        metrics.observe_step("celery", run.state.workflow_type, step,
                             self.fleet.clock.now() - run.state.created_at if step.status else None)
        sent: dict[str, Any] = {SENT_AT: run.version}
        if deadline is not None:
            sent[UNTIL] = deadline
        if any(isinstance(e, st.DispatchAttempt) and e is not eager for e in step.effects):
            carried = _carry(run, step, encoded)
            if carried:
                sent[CARRIED] = carried
        for effect in step.effects:
            if isinstance(effect, st.ActivityClosed):
                queue = self.registry.queue_of(effect.name, effect.options)
                metrics.activity_closed(effect.name, queue, effect.seconds)
            elif not isinstance(effect, (st.ArmTimer, st.ArmRetry, st.AwaitPermit)):
                after_one(lambda effect=effect: self._effect(run, effect, effect is eager, sent))

    def _effect(self, run: drv.RunDriver, effect: st.Effect, eager: bool = False,
                sent: dict[str, Any] | None = None) -> None:
        wid, rid = run.workflow_id, run.run_id
        if isinstance(effect, st.DispatchAttempt):
            options = {**self._options(effect.name, effect.options, run.headers), **(sent or {})}
            if eager:
                self.dispatch(wid, rid, effect.seq, effect.attempt, effect.name, effect.input, options, eager=True)
            elif effect.start_at is not None:  # the start its rate limit reserved: held by the worker till then
                options[DUE] = effect.start_at  # on the fleet's clock (see attempts.wait_until_due)
                self.dispatch(wid, rid, effect.seq, effect.attempt, effect.name, effect.input, options,
                              countdown=max(effect.start_at - self.fleet.clock.now(), 0.0))
            else:
                self.dispatch(wid, rid, effect.seq, effect.attempt, effect.name, effect.input, options)
        elif isinstance(effect, st.StartChild):
            link = {"workflow_id": wid, "run_id": rid, "seq": effect.seq}
            self.start_child(effect, link, run.state.queue)
        elif isinstance(effect, st.ContinueAsNew):
            self.start_child(None, None, run.state.queue, continue_from=run.state, input=effect.input)
        elif isinstance(effect, st.RunClosed):
            self._closed(run, effect)
        elif isinstance(effect, st.CloseChildren):
            self._close_children(wid, effect)
        elif isinstance(effect, st.UpdateCompleted):  # its caller waits on this key (else reads the history)
            self.fleet.reply(self.fleet.update_reply_key(wid, effect.update_id),
                             {"update_id": effect.update_id, "result" if effect.ok else "error": effect.payload})
        elif isinstance(effect, st.ReturnPermit):
            woken = self.permits.give_back(effect.name, effect.input, Holder(wid, rid, effect.seq, effect.attempt))
            if woken is not None:
                self.wake(woken, None)

    def _close_children(self, parent_id: str, close: st.CloseChildren) -> None:
        """Send each open child its parent-close policy, through its inbox (as a client's terminate or
        cancel travels); the closing append armed a backup that sends them again (`messages.CloseChildren`),
        and a child applies one only while it is still this parent's child, once (a closed run refuses a
        terminate, a second cancel request records nothing)."""
        for child in close.children:
            link = {"workflow_id": parent_id, "run_id": close.parent_run_id, "seq": child.seq}
            self.fleet.push(child.workflow_id, messages.encode(messages.ParentClosed(
                link, policy_input(child, close.reason))))
            self.wake(child.workflow_id, None)

    def _ensure_child(self, run: drv.RunDriver, seq: int) -> None:
        """Create the child recorded at `seq` if its creation was lost (it is still pending, and no run of
        its id names this parent)."""
        child = run.pending.children.get(seq)
        if child is None or not run.is_open:
            return
        existing = self.store.load_summary(child["workflow_id"])
        link = {"workflow_id": run.workflow_id, "run_id": run.run_id, "seq": seq}
        if existing is None or existing.parent != link:
            log.warning("workflow %s: the start of child %s was lost; starting it now", run.workflow_id,
                        child["workflow_id"])
            self.start_child(st.StartChild(seq, child["workflow_type"], child["workflow_id"], child.get("input")),
                             link, run.state.queue)

    def _continue_lost(self, run: drv.RunDriver) -> bool:
        """A run whose history ends with its continue-as-new while it is still the id's current run: the
        process that was to create the next run died after the step (its backup, `EnsureContinued`, or any
        other message brought this coordinator here). Create it now; False when the history ends otherwise."""
        last = self.store.history(run.workflow_id, after=max(run.version - 1, 0))
        owed = continuation_owed(run.pending.closed, last[-1] if last else None)
        if owed is None:
            return False
        log.warning("workflow %s: run %s continued as new, but its next run was never created; creating it now",
                    run.workflow_id, run.run_id)
        run.state = replace(run.state, status=WorkflowStatus.COMPLETED)  # its id lives on in the next run
        self.start_child(None, None, run.state.queue, continue_from=run.state, input=owed.input)
        return True

    def _closed(self, run: drv.RunDriver, closed: st.RunClosed) -> None:
        announcing = getattr(self._local, "announcing", None)
        if announcing is not None:  # a batch announces its closed runs together
            announcing.append((run.workflow_id, closed.status.value))
        else:
            self.fleet.announce_closed(run.workflow_id, closed.status.value)
        self._notify_parent(run)

    def _notify_parent(self, run: drv.RunDriver) -> None:
        """Tell a closed child's parent how it ended (again, from the backup: the parent ignores news of
        a child it no longer waits for)."""
        parent = run.state.parent
        if not parent or run.is_open:
            return
        ok, payload = child_outcome(run.state)
        self.fleet.push(parent["workflow_id"], messages.encode(st.ChildClosed(parent["seq"], ok, payload),
                                                               parent["run_id"]))
        self.wake(parent["workflow_id"], None)


def _carry(run: drv.RunDriver, step: st.Step, encoded: Sequence[bytes] | None) -> list[bytes]:
    """The events an activity message of this recorded step carries: the run's latest, as far back as
    CARRY_MAX bytes allow, ending with the step's own (none when those alone are larger). They become
    the run's tail, which the next step extends."""
    own = list(encoded) if encoded is not None else [codec.encode_event(e) for e in step.events]
    size = sum(map(len, own))
    if size > CARRY_MAX:
        run.tail = (run.version, [])
        return []
    end, before = run.tail
    older: list[bytes] = []
    for event in reversed(before if end == step.expected else []):  # else it has a gap: start afresh
        size += len(event)
        if size > CARRY_MAX:
            break
        older.append(event)
    run.tail = (run.version, [*reversed(older), *own])
    return run.tail[1]


def _carried_since(version: int, sent_at: int, carried: list[bytes] | None) -> list[Any] | None:
    """The events past `version` from those an activity message carried (the run's latest, ending at
    `sent_at`), or None when they do not reach back that far."""
    if not isinstance(carried, list) or not carried or sent_at - len(carried) > version:
        return None
    try:
        events = [codec.decode_event(e) for e in carried[version - sent_at:]]
    except (SerializationError, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("an activity message carried undecodable events (reading the store instead): %s", exc)
        return None
    if [e.id for e in events] != list(range(version + 1, sent_at + 1)):
        log.warning("an activity message carried events %s..%s for %s..%s (reading the store instead)",
                    events[0].id if events else None, events[-1].id if events else None, version + 1, sent_at)
        return None
    return events


def _allowed(step: st.Step) -> list[tuple[int, int]]:
    """The activity attempts this step sends: allowed to run in the same atomic append."""
    return [(e.seq, e.attempt) for e in step.effects if isinstance(e, st.DispatchAttempt)]


def _decode(item: bytes, workflow_id: str) -> dict[str, Any] | None:
    try:
        msg = codec.decode(item)
    except SerializationError as exc:
        log.error("dropping an undecodable message in the inbox of %s: %s", workflow_id, exc)
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("k"), str):
        log.error("dropping a foreign message in the inbox of %s: %.200r", workflow_id, msg)
        return None
    return msg
