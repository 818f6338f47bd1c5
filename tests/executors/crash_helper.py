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


SCENARIOS: dict[str, tuple[Any, Callable[[workflow.WorkflowState, Any], bool]]] = {
    "signal": (W.wf_crash_signal, has("activity_completed")),  # one activity done, parked on a signal
    "activity": (W.wf_crash_activity, activity_running),        # an activity mid-run
    "timer": (W.wf_crash_timer, has("timer_started")),          # parked on a durable timer
}


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
    executor.execute(fn, workflow.WorkflowOptions(id=workflow_id, input=spec))
    deadline = time.monotonic() + 30
    while not reached(executor.describe(workflow_id), spec):
        if time.monotonic() > deadline:
            print("never reached the park point", flush=True)
            return 1
        time.sleep(0.01)
    print("parked", flush=True)
    time.sleep(600)  # the test kills us long before
    return 0


if __name__ == "__main__":
    sys.exit(main())
