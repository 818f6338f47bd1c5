"""Helpers the executor tests share: polling for what other threads do, and recording hooks."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beluga import workflow


def eventually(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, what: str | None = None
               ) -> Any:
    """Poll `check()` until it returns something truthy; hooks and activities run on other threads.
    `what`: what the test waits for, named in the failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" if what else
                                 f"condition not met within {timeout}s: {check}")
        time.sleep(interval)


def query_eventually(ex: workflow.DurableExecutor, workflow_id: str, query_type: str, timeout: float = 5.0) -> Any:
    """A query's answer once the workflow has set its handler (a fleet may not have run it yet)."""
    def check() -> Any:
        try:
            return ex.query(workflow_id, query_type)
        except workflow.QueryNotFound:
            return None

    return eventually(check, timeout)


def wait_for_event(ex: workflow.DurableExecutor, workflow_id: str, event_type: str,
                   timeout: float = 5.0) -> workflow.WorkflowState:
    """The run's state once its history holds an event of `event_type`."""
    def check() -> workflow.WorkflowState | None:
        state = ex.describe(workflow_id)
        return state if any(ev.type == event_type for ev in state.history) else None

    return eventually(check, timeout)


class Recorder:
    """Hooks that record every call as (hook name, workflow id, payload)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def hooks(self, *names: str) -> workflow.Hooks:
        names = names or tuple(HOOK_NAMES)
        return workflow.Hooks(**{n: (lambda wid, payload, n=n: self.calls.append((n, wid, payload)))
                                 for n in names})

    def of(self, workflow_id: str, name: str | None = None) -> list[Any]:
        return [(n, p) if name is None else p for n, w, p in list(self.calls)
                if w == workflow_id and (name is None or n == name)]


HOOK_NAMES = ["on_workflow_start", "on_workflow_complete", "on_workflow_fail", "on_activity_start",
              "on_activity_complete", "on_signal", "on_retry"]


CRASH_HELPER = Path(__file__).resolve().parent / "crash_helper.py"


def park_then_kill(store: str, scenario: str, workflow_id: str, arg: Any, timeout: float = 60) -> None:
    """Run `crash_helper.py` (STORE: a SQLite path, or a provider store's JSON spec) until it prints
    "parked", then kill it with SIGKILL."""
    env = dict(os.environ, PYTHONPATH=str(CRASH_HELPER.parents[2]))
    proc = subprocess.Popen([sys.executable, str(CRASH_HELPER), store, scenario, workflow_id, json.dumps(arg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        line = ""
    if line.strip() != "parked":
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"the driving process did not park: {line!r}\n{err}")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    proc.stderr.close()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
