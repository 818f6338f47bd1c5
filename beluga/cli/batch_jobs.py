"""Batch operations (`beluga batch ...`, and the console's actions on a selection): one operation —
terminate, cancel, signal, reset or retry — over the runs a filter selects, each run done once even
when the command is killed and run again.

How "once" holds. The runs are selected when the batch is created and the selection is kept — each
run's id and the run id it had then — so a re-run acts on the same runs, not on what the filter matches
now (a reset run is running again and would match `--status running`). Progress is a local journal, one
line per step, flushed and fsynced before the next run is touched: `begun` before acting, then `done`,
`skipped` (with why) or `failed` (with the error). A re-run skips what is `done`, `skipped` or `failed`;
a run left `begun` (the process died while acting on it) is checked before acting again, each operation
by what it left in the run: a terminate or cancel by the run being closed, a reset or retry by the run id
having changed (the earlier try made the new run; its kept copy is found, not made twice), a signal by a
`signal_received` event whose sender is the batch. The signal also carries a request id made of the
batch and the run, which the fleet deduplicates on its own.

Why a local file and not a record in the store: it works the same on every store and executor (the
fleet, Temporal, NATS, ...), needs no new store API, and the batch is driven by one process. The file
lives in `--state-dir` (default `$BELUGA_BATCH_DIR`, else `$XDG_STATE_HOME/beluga/batches`, else
`~/.local/state/beluga/batches`); a batch run from another machine does not see it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beluga.core.records import EventType, Signal, WorkflowFilter, WorkflowState
from beluga.stores._common import position
from beluga.stores.base import WorkflowStore

OPERATIONS = ("terminate", "cancel", "signal", "reset", "retry")
FINAL = ("done", "skipped", "failed")
PAGE = 500  # runs read per listing while selecting


@dataclass(frozen=True)
class Selection:
    """Which runs a batch acts on: every field of `WorkflowFilter` it names (status, type, id prefix, and
    whatever the filter grows: `where` for search attributes passes straight through), plus a time range
    on the run's start (`since` inclusive, `until` exclusive, epoch seconds). Kept copies never."""

    filter: dict[str, Any] = field(default_factory=dict)
    since: float | None = None
    until: float | None = None

    def workflow_filter(self) -> WorkflowFilter:
        known = {f.name for f in dataclasses.fields(WorkflowFilter)}
        unknown = sorted(set(self.filter) - known)
        if unknown:
            raise ValueError(f"this Beluga's WorkflowFilter has no {', '.join(unknown)}")
        return WorkflowFilter(**{**self.filter, "limit": PAGE, "kept_copies": False})

    def runs(self, store: WorkflowStore) -> Iterator[WorkflowState]:
        """The runs selected, newest first, page by page (keyset cursors: each page costs the same); one per
        workflow id (Temporal's visibility lists every run of an id: the newest is the one acted on)."""
        seen: set[str] = set()
        for state in self._listed(store):
            if state.workflow_id not in seen:
                seen.add(state.workflow_id)
                yield state

    def _listed(self, store: WorkflowStore) -> Iterator[WorkflowState]:
        f = self.workflow_filter()
        if self.until is not None:
            f = dataclasses.replace(f, after=(self.until, ""))  # (created_at, id) below (until, ""): before it
        while True:
            page = store.list(f)
            for state in page:
                if self.since is not None and state.created_at < self.since:
                    return
                yield state
            if len(page) < f.limit:
                return
            f = dataclasses.replace(f, after=position(page[-1]))

    def describe(self) -> dict[str, Any]:
        return {"filter": {k: (v.value if hasattr(v, "value") else v) for k, v in sorted(self.filter.items())},
                "since": self.since, "until": self.until}


@dataclass(frozen=True)
class BatchSpec:
    """The operation, its arguments (reason, signal name and payload, reset point), the selection and
    the place the runs are (a store URL, the fleet): what names a batch. The same spec, the same batch:
    running the same command again resumes it."""

    operation: str
    args: dict[str, Any]
    selection: Selection
    where: str

    def digest(self) -> str:
        raw = json.dumps({"op": self.operation, "args": self.args, "sel": self.selection.describe(),
                          "where": self.where}, sort_keys=True, default=repr)
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def default_dir() -> Path:
    if os.environ.get("BELUGA_BATCH_DIR"):
        return Path(os.environ["BELUGA_BATCH_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "beluga" / "batches"


class Journal:
    """A batch's durable record: `<id>.json` (the spec and the selected runs, written once, atomically)
    and `<id>.log` (one JSON line per step, fsynced)."""

    def __init__(self, directory: Path, batch_id: str) -> None:
        self.id = batch_id
        self.head_path = directory / f"{batch_id}.json"
        self.log_path = directory / f"{batch_id}.log"

    def exists(self) -> bool:
        return self.head_path.is_file()

    def create(self, spec: BatchSpec, runs: list[tuple[str, str]]) -> None:
        self.head_path.parent.mkdir(parents=True, exist_ok=True)
        head = {"id": self.id, "operation": spec.operation, "args": spec.args, "selection": spec.selection.describe(),
                "where": spec.where, "created_at": time.time(), "runs": [list(r) for r in runs]}
        tmp = self.head_path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(head, f, default=repr)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.head_path)

    def runs(self) -> list[tuple[str, str]]:
        head = json.loads(self.head_path.read_text(encoding="utf-8"))
        return [(str(w), str(r)) for w, r in head["runs"]]

    def states(self) -> dict[str, dict[str, Any]]:
        """Each run's last recorded step (a torn last line, from a kill mid-write, is ignored)."""
        out: dict[str, dict[str, Any]] = {}
        if not self.log_path.is_file():
            return out
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[entry["w"]] = entry
        return out

    def record(self, workflow_id: str, step: str, detail: str = "") -> None:
        line = json.dumps({"w": workflow_id, "s": step, "t": time.time(), **({"d": detail} if detail else {})})
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def new_batch_id(spec: BatchSpec, fresh: bool) -> str:
    """The batch of this spec (`fresh`: a new one, though an earlier batch had the same spec)."""
    return f"{spec.operation}-{spec.digest()}" + (f"-{uuid.uuid4().hex[:6]}" if fresh else "")


@dataclass
class Tally:
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    earlier: int = 0   # finished by an earlier, interrupted invocation of the batch

    @property
    def finished(self) -> int:
        return self.done + self.skipped + self.failed + self.earlier


class Pacer:
    """At most `rps` operations a second (0 or None: no limit), evenly spaced."""

    def __init__(self, rps: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rps if rps else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_at: float | None = None

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if self.next_at is not None and now < self.next_at:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


# what to do to one run: (workflow id, run id selected, whether an earlier try may have acted) -> a skip
# reason, or None when it was done
Act = Callable[[str, str, bool], str | None]


def run_batch(journal: Journal, act: Act, pacer: Pacer, progress: Callable[[Tally], None],
              retry_failed: bool = False) -> Tally:
    """Act on every selected run not finished by an earlier invocation, journaling each step."""
    runs = journal.runs()
    states = journal.states()
    tally = Tally(len(runs))
    final = ("done", "skipped") if retry_failed else FINAL
    for workflow_id, run_id in runs:
        before = states.get(workflow_id, {}).get("s")
        if before in final:
            tally.earlier += 1
            continue
        pacer.wait()
        journal.record(workflow_id, "begun")
        try:
            skipped = act(workflow_id, run_id, before is not None)
        except Exception as exc:  # noqa: BLE001 - recorded, reported, and the batch goes on
            journal.record(workflow_id, "failed", f"{type(exc).__name__}: {exc}")
            tally.failed += 1
        else:
            journal.record(workflow_id, "skipped" if skipped else "done", skipped or "")
            if skipped:
                tally.skipped += 1
            else:
                tally.done += 1
        progress(tally)
    return tally


def signalled_by(state: WorkflowState, sender: str) -> bool:
    """Whether the run holds a signal sent by `sender` (a batch: its signal was recorded already)."""
    return any(ev.type == EventType.SIGNAL_RECEIVED and ev.attrs.get("sender_id") == sender for ev in state.history)


def batch_signal(batch_id: str, workflow_id: str, name: str, payload: Any) -> Signal:
    sender = f"batch:{batch_id}"
    return Signal(name, payload, sender_id=sender, request_id=f"{sender}:{workflow_id}")
