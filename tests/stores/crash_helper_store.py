"""A driving process for the provider stores' crash tests: runs one scenario of
tests/executors/crash_helper.py on a store built by name, prints "parked" at the scenario's point and
waits to be killed with SIGKILL.

    python tests/stores/crash_helper_store.py STORE_JSON SCENARIO WORKFLOW_ID INPUT_JSON

STORE_JSON is {"name": ..., "settings": {...}}, given to `workflow.new_store(name, **settings)`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from beluga import workflow  # noqa: E402
from tests.executors.crash_helper import SCENARIOS  # noqa: E402


def main() -> int:
    raw_store, scenario, workflow_id, raw = sys.argv[1:5]
    spec = json.loads(raw)
    if isinstance(spec, dict):
        spec["hang_pid"] = os.getpid()  # activities that should hang do so only in this process
    fn, reached = SCENARIOS[scenario]
    store_spec = json.loads(raw_store)
    store = workflow.new_store(store_spec["name"], **store_spec["settings"])
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
