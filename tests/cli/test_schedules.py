"""`beluga schedule ...` as an operator runs it (a subprocess): on a SQLite store, where the command itself
starts what trigger and backfill fire, and on the fleet, whose workers fire the ticks."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from beluga.core.cron import utc_text
from tests.cli.helpers import Result, beluga
from tests.fleet import fleet_env

IMPORTS = "tests.executors.workflows"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def on_store(db: str, *args: str) -> Result:
    return beluga("--store", db, "--imports", IMPORTS, *args)


def test_create_show_list_pause_trigger_backfill_delete(db: str) -> None:
    r = on_store(db, "schedule", "create", "nightly", "wf_echo", "--input", '"hi"', "--cron", "0 3 * * *",
                 "--timezone", "Europe/Paris", "--jitter", "1m", "--overlap", "allow_all", "--note", "the report")
    assert r.code == 0, r.err
    assert r.out.startswith("created schedule nightly\n") and "cron '0 3 * * *' in Europe/Paris" in r.out
    data = on_store(db, "schedule", "show", "nightly", "--json").json()
    assert data["spec"]["cron"] == ["0 3 * * *"] and data["policy"]["overlap"] == "allow_all"
    assert len(data["next_times"]) == 5 and data["note"] == "the report"
    listed = on_store(db, "schedule", "list").out.splitlines()
    assert listed[0].split()[:3] == ["ID", "WORKFLOW", "STATE"] and listed[1].split()[:3] == ["nightly", "wf_echo",
                                                                                                "active"]
    r = on_store(db, "schedule", "pause", "nightly", "--note", "maintenance")
    assert r.code == 0 and "paused (maintenance)" in r.out
    r = on_store(db, "schedule", "trigger", "nightly", "--json")  # paused: trigger fires all the same
    assert r.code == 0, r.err
    (started,) = [f for f in r.json()["recent"] if f[2] == "started"]
    shown = on_store(db, "show", started[3], "--json").json()
    assert shown["status"] == "completed" and shown["result"] == "hi"   # the command carried the run through
    r = on_store(db, "schedule", "backfill", "nightly", "--start", "2024-01-01T00:00", "--end", "2024-01-03T12:00")
    assert r.code == 0 and "backfill of 3 tick(s)" in r.out, r.err
    runs = on_store(db, "list", "--prefix", "nightly-2024", "--json").json()
    assert sorted(run["workflow_id"] for run in runs) == [
        "nightly-2024-01-01T02:00:00Z", "nightly-2024-01-02T02:00:00Z", "nightly-2024-01-03T02:00:00Z"]
    r = on_store(db, "schedule", "unpause", "nightly")
    assert r.code == 0 and ", active" in r.out
    r = on_store(db, "schedule", "delete", "nightly")
    assert r.code == 0 and r.out.strip() == "deleted schedule nightly"
    assert "no schedule with id 'nightly'" in on_store(db, "schedule", "show", "nightly").one_error_line()


@pytest.mark.parametrize("args,says", [
    (["--cron", "61 * * * *"], "outside 0-59"),
    ([], "needs --cron or --every"),
    (["--every", "soon"], "give seconds or a duration"),
    (["--cron", "* * * * *", "--timezone", "Mars/Base"], "unknown time zone"),
])
def test_a_bad_schedule_is_one_error_line(db: str, args: list[str], says: str) -> None:
    line = on_store(db, "schedule", "create", "bad", "wf_echo", *args).one_error_line()
    assert says in line


def test_the_fleet_fires_a_schedule_made_from_the_command_line(fleet: Any) -> None:
    sid = f"cli-sched-{uuid.uuid4().hex[:8]}"

    def cli(*args: str) -> Result:
        return beluga("--executor", "celery", "schedule", *args, env=fleet_env(fleet.url))

    first = int(time.time()) + 3
    r = cli("create", sid, "wf_echo", "--input", '"tick"', "--every", "1s", "--overlap", "allow_all",
            "--start", utc_text(first), "--end", utc_text(first + 2))
    assert r.code == 0, r.err
    deadline = time.monotonic() + 30
    while True:
        data = cli("show", sid, "--json").json()
        if data["started"] == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert [f[3] for f in data["recent"] if f[2] == "started"] == [f"{sid}-{utc_text(first + k)}" for k in range(3)]
    assert data["next_times"] == [] and data["pending"] == []
    assert cli("delete", sid).code == 0
