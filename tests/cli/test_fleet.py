"""The `beluga` command against the Celery fleet (`--executor celery`, settings from the environment),
with real workers (the session `fleet`), and as `celery -A beluga beluga ...`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from tests.cli.helpers import ROOT, Result, beluga
from tests.fleet import fleet_env


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def celery_cli(fleet: Any, *args: str) -> Result:
    return beluga("--executor", "celery", *args, env=fleet_env(fleet.url))


def wait_status(fleet: Any, wid: str, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = celery_cli(fleet, "show", wid, "--json")
        assert r.code == 0, r.err
        data = r.json()
        if data["status"] == status or time.monotonic() > deadline:
            assert data["status"] == status, data
            return data
        time.sleep(0.2)


def wait_for(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value
            return value
        time.sleep(0.2)


def test_start_list_show_query_signal_on_the_fleet(fleet: Any, tmp_path: Path) -> None:
    wid = _id("cli-order")
    r = celery_cli(fleet, "start", "order_workflow", "--input", '"ORD-7"', "--id", wid, "--json")
    assert r.code == 0, r.err
    run_id = r.json()["run_id"]

    def parked() -> dict | None:
        data = celery_cli(fleet, "show", wid, "--json").json()
        return data if data["waiting"]["signals"] == ["approve"] else None

    shown = wait_for(parked)      # the workers ran the validation; the run parks on its signal
    assert shown["run_id"] == run_id and shown["status"] == "running" and shown["waiting"]["activities"] == []
    assert [e["type"] for e in shown["history"]] == ["workflow_started", "activity_scheduled", "activity_started",
                                                      "activity_completed"]
    text = celery_cli(fleet, "show", wid).out
    assert "waiting on\n  signal 'approve'\n" in text and "validate_order (seq 1)" in text

    rows = celery_cli(fleet, "list", "--type", "order_workflow", "--status", "running", "--json").json()
    assert any(row["workflow_id"] == wid and row["run_id"] == run_id for row in rows)
    table = celery_cli(fleet, "list", "--limit", "500").out
    assert any(line.split()[:3] == [wid, "order_workflow", "running"] for line in table.splitlines())

    r = celery_cli(fleet, "query", wid, "progress")          # answered by a worker
    assert r.code == 0 and json.loads(r.out) == "awaiting approval", r.err
    assert json.loads(celery_cli(fleet, "query", wid, "status").out) == "running"

    r = celery_cli(fleet, "signal", wid, "approve", "--payload", '"approved"')
    assert r.code == 0 and r.out.strip() == f"signalled {wid}: approve", r.err
    done = wait_status(fleet, wid, "completed")
    assert done["result"] == "order ORD-7 processed"
    assert json.loads(celery_cli(fleet, "query", wid, "result").out) == "order ORD-7 processed"

    path = tmp_path / "run.json"
    assert celery_cli(fleet, "export", wid, "-o", str(path)).code == 0
    r = beluga("replay", str(path), "--imports", "beluga.demo")
    assert r.code == 0 and r.out.splitlines()[-1] == "1 of 1 histories match the code", r.out + r.err


def test_terminate_and_retry_on_the_fleet(fleet: Any) -> None:
    wid = _id("cli-wait")
    assert celery_cli(fleet, "start", "fleet_wait_signal", "--id", wid).code == 0
    r = celery_cli(fleet, "terminate", wid, "--reason", "stale")
    assert r.code == 0, r.err
    terminated = wait_status(fleet, wid, "canceled")
    assert terminated["history"][-1]["type"] == "workflow_terminated"

    r = celery_cli(fleet, "retry", wid, "--json")
    assert r.code == 0, r.err
    assert r.json()["previous_run_kept_as"] == f"{wid}/runs/1"
    kept = celery_cli(fleet, "show", f"{wid}/runs/1", "--json").json()
    assert kept["status"] == "canceled" and kept["history"] == terminated["history"]
    celery_cli(fleet, "signal", wid, "go", "--payload", '"again"')
    done = wait_status(fleet, wid, "completed")
    assert done["result"] == "got again" and done["earlier_runs"][0]["workflow_id"] == f"{wid}/runs/1"

    line = celery_cli(fleet, "signal", _id("missing"), "go").one_error_line()
    assert "no workflow with id 'missing-" in line


def test_the_celery_sub_command(fleet: Any) -> None:
    wid = _id("cli-sub")
    ex = fleet.executor()
    from beluga import workflow

    ex.execute("fleet_wait_signal", workflow.WorkflowOptions(id=wid))
    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "beluga", "beluga", "show", wid, "--json"],
                          cwd=ROOT, env=fleet_env(fleet.url), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["workflow_id"] == wid
    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "beluga", "beluga", "signal", wid, "go"],
                          cwd=ROOT, env=fleet_env(fleet.url), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"signalled {wid}: go", proc.stderr
    assert ex.get_handle(wid).result(timeout=20) == "got None"
    proc = subprocess.run([sys.executable, "-m", "celery", "-A", "beluga", "beluga", "show", "nope"],
                          cwd=ROOT, env=fleet_env(fleet.url), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("beluga: error: no workflow with id 'nope'")


def test_batch_reset_on_the_fleet_after_a_fix(fleet: Any, tmp_path: Path) -> None:
    """The bad deploy: three runs fail at step 2; the fix; one batch resets them to before step 2."""
    from tests.executors import workflows as W

    prefix = _id("cli-batch")
    W.SHARED_URL = fleet.url  # the workers' activities read what is broken from the fleet's Redis
    try:
        W.set_broken(prefix, [2])
        for i in range(3):
            spec = json.dumps({"key": prefix, "steps": 2})
            assert celery_cli(fleet, "start", "wf_steps", "--input", spec, "--id", f"{prefix}-{i}").code == 0
        for i in range(3):
            wait_status(fleet, f"{prefix}-{i}", "failed")
        W.set_broken(prefix, [])
        state = str(tmp_path / "batches")
        r = celery_cli(fleet, "batch", "reset", "--prefix", prefix, "--status", "failed", "--dry-run", "--json",
                       "--state-dir", state)
        assert r.code == 0 and r.json()["count"] == 3, r.err
        r = celery_cli(fleet, "batch", "reset", "--prefix", prefix, "--status", "failed", "--rps", "0", "--json",
                       "--state-dir", state)
        assert r.code == 0, r.err
        assert (r.json()["done"], r.json()["skipped"], r.json()["failed"]) == (3, 0, 0)
        for i in range(3):
            assert wait_status(fleet, f"{prefix}-{i}", "completed")["result"] == [1, 2]
            assert celery_cli(fleet, "show", f"{prefix}-{i}/runs/1", "--json").json()["status"] == "failed"
        assert sum(c["n"] == 1 for c in W.calls(prefix)) == 3  # step 1 ran once per run: replayed after the reset
        again = celery_cli(fleet, "batch", "reset", "--prefix", prefix, "--status", "failed", "--json",
                           "--state-dir", state)
        assert again.code == 0 and again.json()["this_time"] == {"done": 0, "skipped": 0, "failed": 0}
    finally:
        W.SHARED_URL = None
