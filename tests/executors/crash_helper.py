"""A worker process for the crash tests: runs one workflow on a store until it reaches the point the
test wants, prints "parked", then waits to be killed with SIGKILL.

    python tests/executors/crash_helper.py STORE SCENARIO WORKFLOW_ID INPUT_JSON

STORE is a SQLite file's path, or a JSON object {"name": ..., "settings": {...}} given to
`workflow.new_store(name, **settings)` (the provider stores' crash tests).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from beluga import workflow  # noqa: E402
from beluga.stores import SQLiteStore  # noqa: E402
from tests.executors import workflows as W  # noqa: E402


def has(event_type: str) -> Callable[[workflow.WorkflowState, Any], bool]:
    return lambda state, spec: any(ev.type == event_type for ev in state.history)


def activity_running(state: workflow.WorkflowState, spec: Any) -> bool:
    path = Path(spec["path"])
    return path.exists() and path.read_text().startswith("started")


def marker_written(state: workflow.WorkflowState | None, spec: Any) -> bool:
    return Path(spec["path"]).exists()


def close_parent(executor: workflow.DurableExecutor, workflow_id: str, spec: Any) -> None:
    """Start `wf_parent_close` with the children `spec["children"]` (default policy), wait until they
    run, then let the parent complete, with the engine made to stop dead (it writes `spec["path"]` and
    blocks its loop, waiting for the kill) where it would send the children their policy: the parent's
    close is in the store, the children's terminations are not."""
    from beluga.inprocess.engine import Engine

    children = spec["children"]
    executor.execute(W.wf_parent_close, workflow.WorkflowOptions(id=workflow_id, input=[[c, ""] for c in children]))
    deadline = time.monotonic() + 30
    while not all(_started(executor, c) for c in children):
        assert time.monotonic() < deadline, "the children never started"
        time.sleep(0.01)

    def stop_dead(self: Engine, parent_id: str, close: Any) -> None:
        Path(spec["path"]).write_text(parent_id)
        time.sleep(600)

    Engine._close_children = stop_dead  # type: ignore[method-assign]
    # its answer never comes (the engine stops dead before replying): sent from a thread of its own
    threading.Thread(target=executor.signal, args=(workflow_id, workflow.Signal("finish")), daemon=True).start()


def _started(executor: workflow.DurableExecutor, workflow_id: str) -> bool:
    try:
        return bool(executor.describe(workflow_id).history)
    except workflow.WorkflowNotFound:
        return False


SCENARIOS: dict[str, tuple[Any, Callable[[workflow.WorkflowState, Any], bool]]] = {
    "signal": (W.wf_crash_signal, has("activity_completed")),  # one activity done, parked on a signal
    "activity": (W.wf_crash_activity, activity_running),        # an activity mid-run
    "timer": (W.wf_crash_timer, has("timer_started")),          # parked on a durable timer
    "parent_close": (close_parent, marker_written),             # a parent closed, its children not told
}
DRIVEN = {"parent_close"}  # scenarios whose function drives the executor itself (not a workflow to start)


def main() -> int:
    store_arg, scenario, workflow_id, raw = sys.argv[1:5]
    spec = json.loads(raw)
    if isinstance(spec, dict):
        spec["hang_pid"] = os.getpid()  # activities that should hang do so only in this process
    fn, reached = SCENARIOS[scenario]
    if store_arg.startswith("{"):
        named = json.loads(store_arg)
        store = workflow.new_store(named["name"], **named["settings"])
    else:
        store = SQLiteStore(store_arg)
    executor = workflow.new("default", workflow.Config(store=store))
    if scenario in DRIVEN:
        fn(executor, workflow_id, spec)
    else:
        executor.execute(fn, workflow.WorkflowOptions(id=workflow_id, input=spec))
    deadline = time.monotonic() + 30
    while not reached(None if scenario in DRIVEN else executor.describe(workflow_id), spec):
        if time.monotonic() > deadline:
            print("never reached the park point", flush=True)
            return 1
        time.sleep(0.01)
    print("parked", flush=True)
    time.sleep(600)  # the test kills us long before
    return 0


if __name__ == "__main__":
    sys.exit(main())
