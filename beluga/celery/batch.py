"""A batch of woken runs, coordinated with their I/O pipelined (a shard's wake task, see
`Coordinator.run_many`): the leases of all its runs are taken in one round trip, the runs the process
has not cached are loaded in one, their steps are appended in one pipeline (each append atomic and
conditional on its own, as ever), the indexes of those that closed updated in one, and their closes
announced in one. Each run's step is worked out exactly as one coordinated alone (`Coordinator._plan`),
and whatever the batch cannot finish (an append refused, messages that arrived meanwhile) goes the
one-by-one way. Not on a Redis Cluster (a batch's runs live on several nodes), nor when replicas must
confirm each write (a WAIT counts the writes of its own connection)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from beluga import metrics
from beluga.celery.fleet import Begun
from beluga.celery.outages import TRANSIENT, retry_transient
from beluga.celery.step import INBOX_BATCH, HandOn, Plan, after_one, left_to_sweep
from beluga.core import driver as drv
from beluga.core import steps as st
from beluga.core.errors import UnreadableRun
from beluga.core.records import WorkflowState
from beluga.logs import get_logger

if TYPE_CHECKING:
    from beluga.celery.coordinator import Coordinator

log = get_logger("beluga.coordinator")


class Batch:
    """Takes the steps of a batch of runs for a `Coordinator` (its `run_many`): the steps are the
    coordinator's, worked out and carried out by it; what the batch does is their I/O, pipelined."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.fleet = coordinator.fleet
        self.store = coordinator.store

    def run(self, workflow_ids: list[str]) -> list[str]:
        """Coordinate a batch of runs with their I/O pipelined: one round trip takes their leases and reads
        their inboxes, one loads the runs this process has not cached, one appends their steps (each
        append atomic and conditional on its own, as ever), one updates the indexes of those that closed.
        Returns the runs to coordinate one by one now (messages arrived during the batch)."""
        c = self.coordinator
        c._local.holding = True  # the batch's runs live outside the cache until recorded: trim after
        try:
            return self._held(workflow_ids)
        finally:
            c._local.holding = False
            c._trim()

    def _held(self, workflow_ids: list[str]) -> list[str]:
        c = self.coordinator
        metrics.begin_step()
        known = [(wid, self._cached_version(wid)) for wid in workflow_ids]
        leases = self.fleet.begin_many(known, INBOX_BATCH)
        # None: another coordinator holds the lease, and looks at the inbox again as it lets go
        begun = [(wid, b) for wid, b in zip(workflow_ids, leases, strict=True) if b is not None]
        again: list[str] = []
        live: list[tuple[str, Begun, tuple[drv.RunDriver, st.Step] | None]] = []
        for wid, b in begun:
            if b.run_id is None:
                self._one(wid, b, again)
            else:
                live.append((wid, b, c._live_cached(wid, b.run_id, b.version, b.newer)))
        todo = [(wid, b) for wid, b, got in live if got is None]
        try:
            states = dict(zip([wid for wid, _ in todo], self.store.load_many([wid for wid, _ in todo]), strict=True))
        except BaseException:
            self._release_all([(wid, b) for wid, b, _ in live])
            raise
        plans = self._plans(live, states)
        quiet = [p for p in plans if p.append is None]
        writes = [p for p in plans if p.append is not None]
        for p in quiet:
            c._quiet(p, release=False)
        try:
            left = self.fleet.release_many([(p.workflow_id, p.begun.token) for p in quiet])
            calls = [self.store.append_call(p.append, **p.options) for p in writes]  # type: ignore[arg-type]
            waiting = self.store.append_many(calls)  # type: ignore[arg-type]
        except BaseException:
            for p in writes:
                c._drop(p.workflow_id)
            self._release_all([(p.workflow_id, p.begun) for p in writes])
            raise
        again += [p.workflow_id for p, n in zip(quiet, left, strict=True) if n]
        c._local.announcing = []
        try:
            for p, n in zip(writes, waiting, strict=True):
                if c._recorded(p, n) is None:  # refused: still ours, re-read and step again
                    self._one(p.workflow_id, p.begun, again, waiting=None)
                elif n:
                    again.append(p.workflow_id)
        finally:
            announcing, c._local.announcing = c._local.announcing, None
            after_one(lambda: self.fleet.announce_closed_many(announcing))
        return again

    def _plans(self, live: list[tuple[str, Begun, tuple[drv.RunDriver, st.Step] | None]],
               states: dict[str, WorkflowState | None]) -> list[Plan]:
        """The coordinator's plan of each run's step; a run it cannot plan is settled on its own (handed on,
        held stuck, or left to the sweep), and the batch's other runs carry on."""
        c = self.coordinator
        plans: list[Plan] = []
        for i, (wid, b, got) in enumerate(live):
            try:
                run, step = got if got is not None else c._from_state(wid, states[wid])
                plans.append(c._plan(wid, b, run, step))
            except HandOn as exc:  # nothing of it was taken in: another worker takes it
                c._handed_on(wid, b.token, exc.handoff)
            except TRANSIENT:  # what the worked-out steps took in was not recorded: forget them
                for p in plans:
                    c._drop(p.workflow_id)
                c._drop(wid)
                self._release_all([(w, bb) for w, bb, _ in live[i:]] + [(p.workflow_id, p.begun) for p in plans])
                raise
            except UnreadableRun as exc:  # held stuck on its own: the batch's other runs carry on
                c._unreadable(wid, b, exc)
            except Exception as exc:
                c._drop(wid)
                retry_transient(lambda wid=wid, token=b.token: self.fleet.release(wid, token), 2.0)
                left_to_sweep(wid, exc)
        return plans

    def _one(self, workflow_id: str, begun: Begun, again: list[str], waiting: int | None = -1) -> None:
        """A run of the batch that takes the one-by-one path, its lease held by `begun`."""
        c = self.coordinator
        try:
            if c._drive(workflow_id, begun, waiting):
                again.append(workflow_id)
        except TRANSIENT:
            raise
        except Exception as exc:
            left_to_sweep(workflow_id, exc)

    def _release_all(self, leases: list[tuple[str, Begun]]) -> None:
        """Give back the leases of a batch that failed half way (best effort: they lapse anyway)."""
        try:
            self.fleet.release_many([(wid, b.token) for wid, b in leases])
        except Exception as exc:  # noqa: BLE001 - Redis away: the leases lapse within their ttl
            log.debug("could not release the leases of a failed batch: %s", exc)

    def _cached_version(self, workflow_id: str) -> int:
        c = self.coordinator
        run = c.cache.get(workflow_id)
        return run.version if run is not None else 0
