"""`beluga --executor temporal`: the command as a client of a real Temporal dev server, whose worker (here
one in the test's process, as `beluga temporal-worker` would be) runs the code; the command itself
imports none. start, list, show, signal, query, terminate and export."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beluga import workflow
from tests.cli import workflows as _code  # noqa: F401  (the worker below runs cli_order)
from tests.cli.helpers import beluga, clean_env
from tests.executors.helpers import eventually


@pytest.fixture
def temporal(temporal_server: Any) -> Iterator[dict[str, str]]:
    queue = f"beluga-cli-{uuid.uuid4().hex[:10]}"
    worker = workflow.new("temporal", workflow.Config(extra={"target": temporal_server.target, "worker": True,
                                                             "task_queue": queue}))
    try:
        yield clean_env(BELUGA_TEMPORAL_TARGET=temporal_server.target, BELUGA_TEMPORAL_TASK_QUEUE=queue)
    finally:
        worker.close()


def test_the_command_drives_runs_on_temporal(temporal: dict[str, str], tmp_path: Path) -> None:
    def cli(*args: str) -> Any:
        return beluga("--executor", "temporal", *args, env=temporal, timeout=120)

    tag = uuid.uuid4().hex[:8]
    wid, other = f"t-{tag}", f"t2-{tag}"
    arg = json.dumps({"dir": str(tmp_path), "order": wid})
    r = cli("start", "cli_order", "--input", arg, "--id", wid, "--json")
    assert r.code == 0, r.err
    assert r.json()["workflow_id"] == wid
    assert cli("start", "cli_order", "--input", json.dumps({"dir": str(tmp_path), "order": other}),
               "--id", other).code == 0
    eventually(lambda: json.loads(cli("query", wid, "progress").out or "null") == "awaiting approval", timeout=60)
    listed = eventually(lambda: {row["workflow_id"]: row["status"] for row in cli("list", "--json").json()
                                 if tag in row["workflow_id"]} == {wid: "running", other: "running"}, timeout=60)
    assert listed
    shown = cli("show", wid, "--json").json()
    assert shown["status"] == "running" and shown["workflow_type"] == "cli_order"
    r = cli("signal", wid, "approve", "--payload", '"approved"')
    assert r.code == 0 and r.out.strip() == f"signalled {wid}: approve", r.err
    eventually(lambda: cli("show", wid, "--json").json()["status"] == "completed", timeout=60)
    assert cli("show", wid, "--json").json()["result"] == f"order {wid} approved"
    assert (tmp_path / f"shipped.{wid}").exists()          # Temporal's worker ran the activity
    r = cli("terminate", other, "--reason", "not needed")
    assert r.code == 0, r.err
    eventually(lambda: cli("show", other, "--json").json()["status"] == "canceled", timeout=60)
    r = cli("export", wid, "-o", str(tmp_path / "t.json"))
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "t.json").read_text())["workflow_id"] == wid


def test_a_temporal_server_that_does_not_answer_is_a_one_line_error() -> None:
    line = beluga("--executor", "temporal", "show", "x",
                  env=clean_env(BELUGA_TEMPORAL_TARGET="127.0.0.1:1")).one_error_line()
    assert "cannot reach Temporal at 127.0.0.1:1" in line, line


def test_schedules_from_the_command_on_temporal(temporal: dict[str, str]) -> None:
    """`beluga schedule ...` on Temporal's own schedules: create, show, pause, trigger, delete."""
    def cli(*args: str) -> Any:
        return beluga("--executor", "temporal", "schedule", *args, env=temporal, timeout=120)

    sid = f"t-sched-{uuid.uuid4().hex[:8]}"
    r = cli("create", sid, "cli_sleeper", "--input", "0", "--cron", "0 3 * * *", "--timezone", "Europe/Paris",
            "--overlap", "buffer_one", "--paused", "--note", "made by the test")
    assert r.code == 0, r.err
    shown = cli("show", sid, "--json").json()
    assert shown["spec"]["cron"] == ["0 3 * * *"] and shown["policy"]["overlap"] == "buffer_one"
    assert shown["paused"] and shown["note"] == "made by the test" and len(shown["next_times"]) == 5
    r = cli("trigger", sid)
    assert r.code == 0, r.err
    started = eventually(lambda: [f[3] for f in cli("show", sid, "--json").json()["recent"]], timeout=60)
    assert started[0].startswith(f"{sid}-")
    assert cli("unpause", sid, "--note", "go").code == 0
    assert "active" in cli("list").out
    assert cli("delete", sid).code == 0
    assert "no schedule with id" in cli("show", sid).one_error_line()


def test_batch_signal_and_reset_on_temporal(temporal: dict[str, str], tmp_path: Path) -> None:
    """`beluga batch` through Temporal's client: its visibility selects, its own reset resets."""
    def cli(*args: str) -> Any:
        return beluga("--executor", "temporal", *args, env=temporal, timeout=120)

    tag = uuid.uuid4().hex[:8]
    ids = [f"tb-{tag}-{i}" for i in range(2)]
    for wid in ids:
        assert cli("start", "cli_inbox", "--input", "{}", "--id", wid).code == 0
    eventually(lambda: cli("batch", "signal", "--prefix", f"tb-{tag}", "--name", "msg", "--dry-run", "--json",
                           "--state-dir", str(tmp_path)).json()["count"] == 2, timeout=60)
    r = cli("batch", "signal", "--prefix", f"tb-{tag}", "--name", "msg", "--payload", "1", "--json",
            "--state-dir", str(tmp_path))
    assert r.code == 0 and r.json()["done"] == 2, r.err
    r = cli("batch", "reset", "--prefix", f"tb-{tag}", "--to", "first", "--json", "--state-dir", str(tmp_path))
    assert r.code == 0 and r.json()["done"] == 2, (r.out, r.err)
    for wid in ids:  # the signal came after the first task: Temporal applied it again in the new run
        assert cli("signal", wid, "stop").code == 0
        eventually(lambda wid=wid: cli("show", wid, "--json").json()["result"] == 1, timeout=60)
