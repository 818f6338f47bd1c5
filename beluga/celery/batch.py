"""A batch of woken runs, coordinated with their I/O pipelined (a shard's wake task, see
`Coordinator.run_many`): the leases of all its runs are taken in one round trip, the runs the process
has not cached are loaded in one, their steps are appended in one pipeline (each append atomic and
conditional on its own, as ever), the indexes of those that closed updated in one, and their closes
announced in one. Each run's step is worked out exactly as one coordinated alone (`Coordinator._plan`),
and whatever the batch cannot finish (an append refused, messages that arrived meanwhile) goes the
one-by-one way. Not on a Redis Cluster (a batch's runs live on several nodes), nor when replicas must
confirm each write (a WAIT counts the writes of its own connection)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from beluga import metrics
from beluga.celery import coordinator as _coordinator  # the two halves of one class (see Batches)
from beluga.celery.fleet import Begun
from beluga.celery.outages import TRANSIENT, retry_transient
from beluga.core import driver as drv
from beluga.core import steps as st
from beluga.core.errors import UnreadableRun
from beluga.core.records import Append
from beluga.logs import get_logger

if TYPE_CHECKING:
    from beluga.celery.coordinator import Coordinator

log = get_logger("beluga.coordinator")


@dataclass(slots=True)
class Plan:
    """A step worked out and not yet written: `append` (None when it records nothing) with the options
    of its call, the attempt the caller runs eagerly, and a stuck run's next look."""

    workflow_id: str
    begun: Begun
    run: drv.RunDriver
    step: st.Step
    append: Append | None
    options: dict[str, Any]
    eager: st.DispatchAttempt | None
    again: float | None
    started: bool = False  # it consumes the run's start message (see `metrics.run_started`)


class Batches:
    """The batch half of the `Coordinator` (a mixin: it drives the coordinator's own steps)."""

    def _batch(self: Coordinator, workflow_ids: list[str]) -> list[str]:
        """Coordinate a batch of runs with their I/O pipelined: one round trip takes their leases and reads
        their inboxes, one loads the runs this process has not cached, one appends their steps (each
        append atomic and conditional on its own, as ever), one updates the indexes of those that closed.
        Returns the runs to coordinate one by one now (messages arrived during the batch)."""
        self._local.holding = True  # the batch's runs live outside the cache until recorded: trim after
        try:
            return self._batch_held(workflow_ids)
        finally:
            self._local.holding = False
            self._trim()

    def _batch_held(self: Coordinator, workflow_ids: list[str]) -> list[str]:
        metrics.begin_step()
        known = [(wid, self._cached_version(wid)) for wid in workflow_ids]
        leases = self.fleet.begin_many(known, _coordinator.INBOX_BATCH)
        # None: another coordinator holds the lease, and looks at the inbox again as it lets go
        begun = [(wid, b) for wid, b in zip(workflow_ids, leases, strict=True) if b is not None]
        again: list[str] = []
        live: list[tuple[str, Begun, tuple[drv.RunDriver, st.Step] | None]] = []
        for wid, b in begun:
            if b.run_id is None:
                self._one(wid, b, again)
            else:
                live.append((wid, b, self._live_cached(wid, b.run_id, b.version, b.newer)))
        todo = [(wid, b) for wid, b, got in live if got is None]
        try:
            states = dict(zip([wid for wid, _ in todo], self.store.load_many([wid for wid, _ in todo]), strict=True))
        except BaseException:
            self._release_all([(wid, b) for wid, b, _ in live])
            raise
        plans: list[Plan] = []
        for i, (wid, b, got) in enumerate(live):
            try:
                run, step = got if got is not None else self._from_state(wid, states[wid])
                plans.append(self._plan(wid, b, run, step))
            except _coordinator.HandOn as exc:  # nothing of it was taken in: another worker takes it
                self._handed_on(wid, b.token, exc.handoff)
            except TRANSIENT:  # what the worked-out steps took in was not recorded: forget them
                for p in plans:
                    self._drop(p.workflow_id)
                self._drop(wid)
                self._release_all([(w, bb) for w, bb, _ in live[i:]] + [(p.workflow_id, p.begun) for p in plans])
                raise
            except UnreadableRun as exc:  # held stuck on its own: the batch's other runs carry on
                self._unreadable(wid, b, exc)
            except Exception as exc:
                self._drop(wid)
                retry_transient(lambda wid=wid, token=b.token: self.fleet.release(wid, token), 2.0)
                _coordinator.left_to_sweep(wid, exc)
        quiet = [p for p in plans if p.append is None]
        writes = [p for p in plans if p.append is not None]
        for p in quiet:
            self._quiet(p, release=False)
        try:
            left = self.fleet.release_many([(p.workflow_id, p.begun.token) for p in quiet])
            calls = [self.store.append_call(p.append, **p.options) for p in writes]  # type: ignore[arg-type]
            waiting = self.store.append_many(calls)  # type: ignore[arg-type]
        except BaseException:
            for p in writes:
                self._drop(p.workflow_id)
            self._release_all([(p.workflow_id, p.begun) for p in writes])
            raise
        again += [p.workflow_id for p, n in zip(quiet, left, strict=True) if n]
        self._local.announcing = []
        try:
            for p, n in zip(writes, waiting, strict=True):
                if self._recorded(p, n) is None:  # refused: still ours, re-read and step again
                    self._one(p.workflow_id, p.begun, again, waiting=None)
                elif n:
                    again.append(p.workflow_id)
        finally:
            announcing, self._local.announcing = self._local.announcing, None
            _coordinator._after_one(lambda: self.fleet.announce_closed_many(announcing))
        return again

    def _one(self: Coordinator, workflow_id: str, begun: Begun, again: list[str], waiting: int | None = -1) -> None:
        """A run of the batch that takes the one-by-one path, its lease held by `begun`."""
        try:
            if self._drive(workflow_id, begun, waiting):
                again.append(workflow_id)
        except TRANSIENT:
            raise
        except Exception as exc:
            _coordinator.left_to_sweep(workflow_id, exc)

    def _release_all(self: Coordinator, leases: list[tuple[str, Begun]]) -> None:
        """Give back the leases of a batch that failed half way (best effort: they lapse anyway)."""
        try:
            self.fleet.release_many([(wid, b.token) for wid, b in leases])
        except Exception as exc:  # noqa: BLE001 - Redis away: the leases lapse within their ttl
            log.debug("could not release the leases of a failed batch: %s", exc)

    def _cached_version(self: Coordinator, workflow_id: str) -> int:
        run = self.cache.get(workflow_id)
        return run.version if run is not None else 0
