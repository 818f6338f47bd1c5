"""`beluga reset` and `beluga batch` against a SQLite store, run as subprocesses as an operator would:
a reset to a boundary and the refusal of one that is not; a batch's dry run, filters, progress and rate
limit; and a batch killed with `kill -9` mid-way and run again, which does each run once."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beluga.cli.batch_jobs import Journal, Pacer, run_batch
from beluga.cli.target import Target
from beluga.core.records import WorkflowFilter, WorkflowStatus
from beluga.executors.base import WorkflowOptions
from beluga.inprocess.executor import InProcessExecutor
from beluga.stores.sqlite import SQLiteStore
from tests.cli import workflows  # noqa: F401 - registers the workflows started here
from tests.cli.helpers import ROOT, beluga, clean_env

IMPORTS = "tests.cli.workflows"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"


def _inboxes(tmp_path: Path, n: int, prefix: str = "inbox-") -> list[str]:
    """`n` open runs of cli_inbox, started in this process (as fast as a script would)."""
    store = SQLiteStore(tmp_path / "runs.db")
    with InProcessExecutor(store, recover=False, schedule_interval=None) as ex:
        ids = [ex.execute("cli_inbox", WorkflowOptions(id=f"{prefix}{i:03}", input={})).id for i in range(n)]
        for wid in ids:
            ex.describe(wid)
    store.close()
    return ids


def _signals(tmp_path: Path, wid: str) -> list[dict]:
    store = SQLiteStore(tmp_path / "runs.db")
    try:
        state = store.load(wid)
        assert state is not None
        return [ev.attrs for ev in state.history if ev.type == "signal_received"]
    finally:
        store.close()


def test_reset_to_last_good_and_a_point_that_is_no_boundary(db: str, tmp_path: Path) -> None:
    (tmp_path / "broken").write_text("")
    arg = json.dumps({"dir": str(tmp_path), "order": "o-1"})
    assert beluga("--store", db, "--imports", IMPORTS, "start", "cli_order", "--input", arg, "--id", "o-1").code == 0
    assert beluga("--store", db, "show", "o-1", "--json").json()["status"] == "failed"
    line = beluga("--store", db, "--imports", IMPORTS, "reset", "o-1", "--to", "3").one_error_line()
    assert "cannot reset o-1: event #3 (activity_started) is not a workflow-task boundary" in line
    assert "nearest are #1" in line
    (tmp_path / "broken").unlink()  # the fix
    r = beluga("--store", db, "--imports", IMPORTS, "reset", "o-1")
    assert r.code == 0, r.err
    assert r.out.startswith("reset o-1 to event #1: new run ") and "is kept as o-1/runs/1" in r.out
    assert "activity results thrown away: cli_check (seq 1)" in r.out
    shown = beluga("--store", db, "--imports", IMPORTS, "show", "o-1", "--json").json()
    assert shown["status"] == "running" and shown["waiting"]["signals"] == ["approve"]
    assert beluga("--store", db, "show", "o-1/runs/1", "--json").json()["status"] == "failed"


def test_dry_run_counts_and_changes_nothing(db: str, tmp_path: Path) -> None:
    _inboxes(tmp_path, 5, "a-")
    _inboxes(tmp_path, 3, "b-")
    state = tmp_path / "batches"
    r = beluga("--store", db, "batch", "terminate", "--prefix", "a-", "--dry-run", "--json", "--state-dir", str(state))
    assert r.code == 0, r.err
    assert r.json()["count"] == 5 and sorted(r.json()["runs"]) == [f"a-{i:03}" for i in range(5)]
    r = beluga("--store", db, "batch", "terminate", "--status", "running", "--dry-run", "--state-dir", str(state))
    assert r.out.startswith("dry run: batch terminate would act on 8 run(s)")
    assert not state.exists()
    line = beluga("--store", db, "batch", "terminate", "--state-dir", str(state)).one_error_line()
    assert "say which runs: give a filter" in line
    if "where" not in {f.name for f in dataclasses.fields(WorkflowFilter)}:
        line = beluga("--store", db, "batch", "terminate", "--where", "customer=c-1").one_error_line()
        assert "WorkflowFilter has no where" in line
    line = beluga("--store", db, "batch", "signal", "--prefix", "a-").one_error_line()
    assert "batch signal needs --name" in line


def test_terminate_with_progress_lines_and_a_finished_batch_run_again(db: str, tmp_path: Path) -> None:
    _inboxes(tmp_path, 12)
    state = str(tmp_path / "batches")
    r = beluga("--store", db, "batch", "terminate", "--prefix", "inbox-", "--reason", "bad deploy", "--rps", "0",
               "--state-dir", state)
    assert r.code == 0, r.err
    assert "batch terminate: 12/12  done 12  skipped 0  failed 0" in r.err  # not a tty: plain lines
    assert "done 12, skipped 0, failed 0" in r.out
    again = beluga("--store", db, "batch", "terminate", "--prefix", "inbox-", "--reason", "bad deploy",
                   "--state-dir", state)
    assert again.code == 0 and "(12 finished earlier)" in again.out and "resuming" in again.err
    fresh = beluga("--store", db, "batch", "terminate", "--prefix", "inbox-", "--reason", "bad deploy", "--new",
                   "--state-dir", state, "--json")
    assert fresh.json()["skipped"] == 12 == fresh.json()["total"]  # a new batch: every run closed already


def test_a_batch_killed_mid_way_and_run_again_signals_each_run_once(db: str, tmp_path: Path) -> None:
    ids = _inboxes(tmp_path, 24)
    state = tmp_path / "batches"
    cmd = [sys.executable, "-m", "beluga", "--store", db, "--imports", IMPORTS, "batch", "signal", "--prefix",
           "inbox-", "--name", "msg", "--payload", '"hello"', "--rps", "4", "--state-dir", str(state)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            logs = list(state.glob("*.log"))
            if logs and logs[0].read_text().count('"s": "done"') >= 6:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    journal = Journal(state, next(state.glob("*.json")).stem)
    first = journal.states()
    assert 6 <= sum(e["s"] == "done" for e in first.values()) < 24  # killed mid-way
    r = subprocess.run(cmd + ["--json"], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["failed"] == 0 and report["done"] + report["skipped"] == 24
    for wid in ids:
        sent = [s for s in _signals(tmp_path, wid) if s["name"] == "msg"]
        assert len(sent) == 1, (wid, sent)
        assert sent[0]["sender_id"] == f"batch:{journal.id}" and sent[0]["payload"] == "hello"


def test_a_run_left_begun_is_checked_before_acting_again(db: str, tmp_path: Path) -> None:
    """The kill fell between the signal and the journal's `done`: the run already holds the signal."""
    ids = _inboxes(tmp_path, 2)
    target = Target(store_url=db, executor=None, imports=IMPORTS)
    try:
        from beluga.cli.batch import make_act
        from beluga.cli.batch_jobs import batch_signal

        journal = Journal(tmp_path / "batches", "signal-test")
        journal.create(_spec(), [(w, target.store.load_summary(w).run_id) for w in ids])
        journal.record(ids[0], "begun")
        target.executor().signal(ids[0], batch_signal(journal.id, ids[0], "msg", 1))
        act = make_act(target, "signal", {"name": "msg", "payload": 1}, journal.id, "ops@test")
        tally = run_batch(journal, act, Pacer(None), lambda t: None)
        assert (tally.done, tally.skipped) == (1, 1)
        entry = journal.states()[ids[0]]
        assert (entry["s"], entry["d"]) == ("skipped", "signalled by an earlier try of this batch")
        assert [len(_signals(tmp_path, w)) for w in ids] == [1, 1]
        target.executor().signal(ids[1], batch_signal("x", ids[1], "stop", None))
        assert target.executor().get_handle(ids[1]).result(timeout=10) == 1
        assert target.store.load_summary(ids[1]).status is WorkflowStatus.COMPLETED
    finally:
        target.close()


def _spec():  # type: ignore[no-untyped-def]
    from beluga.cli.batch_jobs import BatchSpec, Selection

    return BatchSpec("signal", {"name": "msg"}, Selection({"id_prefix": "inbox-"}), "test")


def test_the_progress_bar_on_a_terminal_and_the_pacer() -> None:
    import io

    from beluga.cli.batch import Progress
    from beluga.cli.batch_jobs import Tally

    screen = io.StringIO()
    bar = Progress("batch reset", screen, tty=True)
    bar(Tally(4, done=1))
    bar(Tally(4, done=3, skipped=1))  # the last: drawn however soon after the one before
    bar.end()
    assert screen.getvalue() == ("\rbatch reset [#######.......................] 1/4  done 1  skipped 0  failed 0"
                                 "\rbatch reset [##############################] 4/4  done 3  skipped 1  failed 0\n")
    now, slept = [100.0], []

    def sleep(s: float) -> None:
        slept.append(round(s, 6))
        now[0] += s

    pacer = Pacer(4, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        pacer.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]  # 4 a second, evenly spaced
    unlimited = Pacer(0, clock=lambda: now[0], sleep=sleep)
    unlimited.wait()
    unlimited.wait()
    assert len(slept) == 4
