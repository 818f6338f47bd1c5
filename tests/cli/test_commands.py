"""The `beluga` command against a SQLite store, run as a subprocess: start, show, signal, query, list,
cancel, terminate, retry, export and replay, with the workflows of `tests/cli/workflows.py`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from beluga.core.records import WorkflowStatus
from beluga.stores.sqlite import SQLiteStore
from tests.cli.helpers import beluga

IMPORTS = "tests.cli.workflows"


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.db'}"      # sqlite:////abs/path: four slashes for an absolute path


def start(db: str, tmp_path: Path, wid: str, *extra: str, workflow: str = "cli_order") -> dict:
    arg = json.dumps({"dir": str(tmp_path), "order": wid})
    r = beluga("--store", db, "--imports", IMPORTS, "start", workflow, "--input", arg, "--id", wid, "--json",
               *extra)
    assert r.code == 0, r.err
    return r.json()


def test_the_command_answers_as_a_console_script_and_as_python_m() -> None:
    for script in (True, False):
        r = beluga("--help", script=script)
        assert r.code == 0 and "replay" in r.out and "--store" in r.out
    r = beluga("list", "--help")
    assert r.code == 0 and "--since" in r.out


def test_a_run_from_start_to_completion(db: str, tmp_path: Path) -> None:
    started = start(db, tmp_path, "order-1")
    assert started["workflow_id"] == "order-1" and started["run_id"]

    shown = beluga("--store", db, "show", "order-1", "--imports", IMPORTS)
    assert shown.code == 0, shown.err
    text = shown.out
    assert re.search(r"^status +running$", text, re.M)
    assert "waiting on\n  signal 'approve'\n" in text
    assert re.search(r"#2 +\+\S+ +activity_scheduled +cli_check \(seq 1\)", text)
    assert re.search(r"#4 +\+\S+ +activity_completed +seq 1 attempt 1 result=\"checked\"", text)

    data = beluga("--store", db, "show", "order-1", "--json", "--imports", IMPORTS).json()
    assert data["status"] == "running" and data["waiting"]["signals"] == ["approve"]
    assert data["waiting"]["activities"] == [] and data["waiting"]["timers"] == []
    assert [e["type"] for e in data["history"]] == ["workflow_started", "activity_scheduled", "activity_started",
                                                     "activity_completed"]
    assert [e["id"] for e in data["history"]] == [1, 2, 3, 4]

    r = beluga("--store", db, "--imports", IMPORTS, "query", "order-1", "progress")
    assert r.code == 0 and json.loads(r.out) == "awaiting approval"
    r = beluga("--store", db, "--imports", IMPORTS, "query", "order-1", "echo", "--args", '[1, {"a": 2}]')
    assert json.loads(r.out) == [1, {"a": 2}]
    assert json.loads(beluga("--store", db, "query", "order-1", "status").out) == "running"

    r = beluga("--store", db, "--imports", IMPORTS, "signal", "order-1", "approve", "--payload", '"approved"')
    assert r.code == 0 and r.out.strip() == "signalled order-1: approve", r.err
    assert (tmp_path / "shipped.order-1").exists()      # the command carried the run to its end

    data = beluga("--store", db, "show", "order-1", "--json").json()
    assert data["status"] == "completed" and data["result"] == "order order-1 approved"
    assert data["history"][-1]["type"] == "workflow_completed"
    signal = next(e for e in data["history"] if e["type"] == "signal_received")
    assert signal["attrs"]["name"] == "approve" and signal["attrs"]["payload"] == "approved"
    assert json.loads(beluga("--store", db, "query", "order-1", "result").out) == "order order-1 approved"
    text = beluga("--store", db, "show", "order-1").out
    assert re.search(r"^result +\"order order-1 approved\"$", text, re.M) and "waiting on" not in text


def test_show_names_timers_retry_backoffs_and_the_deadline(db: str, tmp_path: Path) -> None:
    r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_sleeper", "--input", "2", "--id", "nap",
               "--timeout", "86400")
    assert r.code == 0, r.err
    assert "waits until" in r.err     # the run parks on its timer; this process does not stay to fire it
    text = beluga("--store", db, "show", "nap").out
    assert re.search(r"timer \(seq 1\): fires \S+ \S+Z \(in 1h59m\)", text), text
    assert re.search(r"deadline \S+ \S+Z \(in 23h59m\)", text), text
    data = beluga("--store", db, "show", "nap", "--json").json()
    [timer] = data["waiting"]["timers"]
    fire_at = time.mktime(time.strptime(timer["fire_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(fire_at - (time.time() + 7200)) < 60

    (tmp_path / "broken").write_text("")
    arg = json.dumps({"dir": str(tmp_path), "fatal": False})
    r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_backoff", "--input", arg, "--id", "backoff")
    assert r.code == 0, r.err
    text = beluga("--store", db, "show", "backoff").out
    assert re.search(r"activity cli_check \(seq 1\): attempt 2 backing off, due \S+ \S+Z \(in \d+[hm]\d+[ms]\)", text)
    assert re.search(r"activity_failed +seq 1 attempt 1 ApplicationError: the check is broken; retry in \d+[hm]", text)


def test_start_wait_reports_the_result_and_fails_with_the_run(db: str, tmp_path: Path) -> None:
    r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_quick", "--input", '{"x": 1}', "--wait", "20",
               "--json")
    assert r.code == 0, r.err
    assert r.json()["status"] == "completed"
    assert r.json()["result"] == {"echo": {"x": 1}, "tuple": {"$tuple": [1, 2]}}
    r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_quick", "--input", '{"fail": true}', "--wait")
    assert r.code == 1 and "failed: ApplicationError: asked to fail" in r.out


def test_short_timers_are_carried_through_before_the_command_exits(db: str, tmp_path: Path) -> None:
    r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_quick", "--input", "{}", "--id", "q")
    assert r.code == 0 and r.err == ""
    assert beluga("--store", db, "show", "q", "--json").json()["status"] == "completed"


def test_list_filters_by_status_type_time_and_limit(db: str, tmp_path: Path) -> None:
    start(db, tmp_path, "a-open")
    (tmp_path / "broken").write_text("")
    start(db, tmp_path, "b-failed")
    (tmp_path / "broken").unlink()
    r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_quick", "--input", "{}", "--id", "c-done")
    assert r.code == 0, r.err
    store = SQLiteStore(db[len("sqlite:///"):])
    try:   # an old run, started two days ago
        old = store.load("c-done")
        from dataclasses import replace

        store.save(replace(old, workflow_id="d-old", created_at=old.created_at - 2 * 86400))
    finally:
        store.close()

    rows = beluga("--store", db, "list", "--json").json()
    assert [r["workflow_id"] for r in rows] == ["c-done", "b-failed", "a-open", "d-old"]
    assert {r["workflow_id"]: r["status"] for r in rows} == {"a-open": "running", "b-failed": "failed",
                                                             "c-done": "completed", "d-old": "completed"}
    failed = next(r for r in rows if r["workflow_id"] == "b-failed")
    assert failed["error"].startswith("ActivityError: activity 'cli_check' failed after 1 attempt(s)")

    def ids(*args: str) -> list[str]:
        r = beluga("--store", db, "list", "--json", *args)
        assert r.code == 0, r.err
        return [row["workflow_id"] for row in r.json()]

    assert ids("--status", "failed") == ["b-failed"]
    assert ids("--type", "cli_quick") == ["c-done", "d-old"]
    assert ids("--since", "1d") == ["c-done", "b-failed", "a-open"]
    assert ids("--since", time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 86400))) == [
        "c-done", "b-failed", "a-open"]
    assert ids("--limit", "2") == ["c-done", "b-failed"]
    assert ids("--status", "running", "--type", "cli_quick") == []

    table = beluga("--store", db, "list").out.splitlines()
    assert table[0].split() == ["WORKFLOW", "ID", "TYPE", "STATUS", "STARTED", "UPDATED", "EVENTS", "ERROR"]
    assert table[1].split()[:3] == ["c-done", "cli_quick", "completed"]
    assert "ActivityError: activity 'cli_check' failed" in table[2]


def test_cancel_lets_the_workflow_clean_up_and_terminate_runs_no_code(db: str, tmp_path: Path) -> None:
    start(db, tmp_path, "to-cancel")
    start(db, tmp_path, "to-terminate")
    r = beluga("--store", db, "--imports", IMPORTS, "cancel", "to-cancel")
    assert r.code == 0 and r.out.strip() == "cancel requested for to-cancel", r.err
    assert (tmp_path / "cleanup.to-cancel").exists()
    data = beluga("--store", db, "show", "to-cancel", "--json").json()
    assert data["status"] == "canceled"
    assert [e["type"] for e in data["history"]][-5:] == ["workflow_cancel_requested", "activity_scheduled",
                                                          "activity_started", "activity_completed",
                                                          "workflow_canceled"]

    r = beluga("--store", db, "terminate", "to-terminate", "--reason", "customer gone")    # no --imports needed
    assert r.code == 0 and r.out.strip() == "terminated to-terminate: customer gone", r.err
    data = beluga("--store", db, "show", "to-terminate", "--json").json()
    assert data["status"] == "canceled" and data["history"][-1]["type"] == "workflow_terminated"
    assert data["error"]["type"] == "Terminated" and "customer gone" in data["error"]["message"]
    assert "reason: customer gone" in beluga("--store", db, "show", "to-terminate").out
    assert not (tmp_path / "cleanup.to-terminate").exists()

    line = beluga("--store", db, "terminate", "to-terminate").one_error_line()
    assert line == "beluga: error: cannot terminate to-terminate: it is canceled"


def test_retry_starts_over_under_the_same_id_and_keeps_the_old_run(db: str, tmp_path: Path) -> None:
    (tmp_path / "broken").write_text("")
    first = start(db, tmp_path, "flaky")
    before = beluga("--store", db, "show", "flaky", "--json").json()
    assert before["status"] == "failed"

    r = beluga("--store", db, "--imports", IMPORTS, "retry", "flaky", "--json")
    assert r.code == 0, r.err
    retried = r.json()
    assert retried["previous_run_id"] == first["run_id"] and retried["previous_run_kept_as"] == "flaky/runs/1"
    assert retried["run_id"] != first["run_id"]

    kept = beluga("--store", db, "show", "flaky/runs/1", "--json").json()
    assert kept["status"] == "failed" and kept["run_id"] == first["run_id"]
    assert kept["history"] == before["history"]          # the old history, whole
    now = beluga("--store", db, "show", "flaky", "--json").json()
    assert now["run_id"] == retried["run_id"] and now["status"] == "failed"   # still broken: fails again
    assert now["earlier_runs"] == [{"workflow_id": "flaky/runs/1", "run_id": first["run_id"], "status": "failed"}]
    assert now["history"][0]["attrs"]["input"] == before["history"][0]["attrs"]["input"]

    (tmp_path / "broken").unlink()
    r = beluga("--store", db, "--imports", IMPORTS, "retry", "flaky")
    assert r.code == 0 and r.out.strip().endswith("is kept as flaky/runs/2"), r.err
    assert beluga("--store", db, "show", "flaky", "--json").json()["status"] == "running"   # past the check
    text = beluga("--store", db, "show", "flaky").out
    assert "earlier runs (retried)\n  flaky/runs/1  failed" in text and "\n  flaky/runs/2  failed" in text

    assert [r["workflow_id"] for r in beluga("--store", db, "list", "--json").json()] == ["flaky"]
    assert {r["workflow_id"] for r in beluga("--store", db, "list", "--all", "--json").json()} == {
        "flaky", "flaky/runs/1", "flaky/runs/2"}

    line = beluga("--store", db, "--imports", IMPORTS, "retry", "flaky").one_error_line()
    assert "cannot retry flaky: it is running" in line
    line = beluga("--store", db, "--imports", IMPORTS, "retry", "flaky/runs/1").one_error_line()
    assert "is a kept copy of an earlier run; retry flaky instead" in line
    line = beluga("--store", db, "signal", "flaky/runs/1", "approve").one_error_line()
    assert line == "beluga: error: cannot signal flaky/runs/1: it is failed"


def test_export_then_replay_against_the_same_and_against_changed_code(db: str, tmp_path: Path) -> None:
    start(db, tmp_path, "exp")
    beluga("--store", db, "--imports", IMPORTS, "signal", "exp", "approve", "--payload", '"ok"')
    out = tmp_path / "histories"
    out.mkdir()
    r = beluga("--store", db, "export", "exp", "-o", str(out / "exp.json"))
    assert r.code == 0 and "exported exp (" in r.err
    doc = json.loads((out / "exp.json").read_text())
    assert {k: doc[k] for k in ("workflow_type", "workflow_id", "status")} == {
        "workflow_type": "cli_order", "workflow_id": "exp", "status": "completed"}
    assert [set(e) for e in doc["events"]] == [{"id", "type", "timestamp", "attrs"}] * len(doc["events"])
    stdout = beluga("--store", db, "export", "exp")
    assert json.loads(stdout.out) == doc

    r = beluga("replay", str(out / "exp.json"), "--imports", IMPORTS)
    assert r.code == 0, r.out + r.err
    assert r.out.splitlines()[-1] == "1 of 1 histories match the code"

    (out / "same.json").write_text((out / "exp.json").read_text())
    r = beluga("replay", str(out), "--imports", "tests.cli.changed_workflows")
    assert r.code == 1, r.out + r.err
    lines = r.out.splitlines()
    for name in ("exp.json", "same.json"):
        line = next(x for x in lines if x.startswith("MISMATCH") and name in x)
        assert line == (f"MISMATCH  {out / name} (cli_order exp): at event #2 the history records activity "
                        "'cli_check' (seq 1), but the code asked for timer of 1s (seq 1)")
    assert "NonDeterminism" not in r.err and lines[-1] == "0 of 2 histories match the code; 2 do not"
    assert "event #2 records activity 'cli_check' (seq 1), but the code asked for timer of 1s" in r.out

    data = beluga("replay", str(out / "exp.json"), "--imports", "tests.cli.changed_workflows", "--json")
    assert data.code == 1
    [row] = data.json()
    assert row["mismatch"] and row["position"] == 2 and row["recorded"] == "activity 'cli_check' (seq 1)"
    assert row["asked"] == "timer of 1s (seq 1)"


def test_a_stuck_run_says_so(db: str, tmp_path: Path) -> None:
    """Code that no longer matches an open run: show names the mismatch (from its read-only replay)."""
    start(db, tmp_path, "stuck")
    r = beluga("--store", db, "show", "stuck", "--imports", "tests.cli.changed_workflows")
    assert r.code == 0
    assert "(its code cannot replay it: NonDeterminismError: workflow 'cli_order' (stuck, run" in r.out
    assert beluga("--store", db, "list", "--json").json()[0]["status"] == WorkflowStatus.RUNNING.value


def test_an_in_process_redis_store(tmp_path: Path) -> None:
    """`--store redis://...`: the in-process executor on a RedisStore (here under a key prefix of its own)."""
    from tests.fleet import redis_server

    with redis_server() as url:
        store = f"{url}?prefix=cli"
        started = start(store, tmp_path, "r-1")
        rows = beluga("--store", store, "list", "--json").json()
        assert [(r["workflow_id"], r["run_id"], r["status"]) for r in rows] == [("r-1", started["run_id"], "running")]
        assert beluga("--store", url, "list", "--json").json() == []       # the default prefix holds nothing
        r = beluga("--store", store, "--imports", IMPORTS, "signal", "r-1", "approve", "--payload", '"yes"')
        assert r.code == 0, r.err
        data = beluga("--store", store, "show", "r-1", "--json").json()
        assert data["status"] == "completed" and data["result"] == "order r-1 yes"


# --- a fleet of runs: id prefix, stuck, pages by cursor; colour; show --follow -----------------------------
def _save_runs(db: str, n: int) -> list[str]:
    """`n` runs saved straight into the store (every 4th stuck), and a kept copy; the ids listed, newest first."""
    from beluga.core.records import WorkflowState

    store = SQLiteStore(db[len("sqlite:///"):])
    try:
        stuck = {"type": "NonDeterminismError", "message": "changed"}
        for i in range(n):
            store.save(WorkflowState(f"ord-{i:02d}", f"r{i}", "cli_order", created_at=1000.0 + i // 2,
                                     error=stuck if i % 4 == 1 else None))
        store.save(WorkflowState("ord-00/runs/1", "old", "cli_order", status=WorkflowStatus.FAILED, created_at=1.0))
    finally:
        store.close()
    return [f"ord-{i:02d}" for i in reversed(range(n))]


def test_list_pages_by_cursor_both_ways_and_filters_by_prefix_and_stuck(db: str) -> None:
    every = _save_runs(db, 11)

    def page(*args: str) -> tuple[list[str], dict[str, str]]:
        r = beluga("--store", db, "list", "--json", "--limit", "4", *args)
        assert r.code == 0, r.err
        cursors = dict(re.findall(r"^(older|newer): --cursor (\S+)$", r.err, re.M))
        return [row["workflow_id"] for row in r.json()], cursors

    pages, cursors = [], {"older": None}
    while "older" in cursors:
        got, cursors = page(*(("--cursor", cursors["older"]) if cursors["older"] else ()))
        pages.append(got)
    assert [wid for p in pages for wid in p] == every and [len(p) for p in pages] == [4, 4, 3]
    got, cursors = page("--cursor", cursors["newer"])
    assert got == pages[1] and set(cursors) == {"older", "newer"}
    assert page("--prefix", "ord-0")[0] == [f"ord-0{i}" for i in (9, 8, 7, 6)]
    assert page("--stuck", "--limit", "50")[0] == ["ord-09", "ord-05", "ord-01"]
    assert page("--prefix", "ord-00", "--all")[0] == ["ord-00", "ord-00/runs/1"]
    bad = beluga("--store", db, "list", "--cursor", "nonsense")
    assert bad.code == 2 and "cursor" in bad.one_error_line()


def _on_a_terminal(*args: str, env: dict[str, str]) -> str:
    """The command's stdout when it is a terminal (a pty)."""
    import os
    import pty
    import subprocess
    import sys

    from tests.cli.helpers import ROOT

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "beluga", *args], cwd=ROOT, env=env, stdout=follower,
                            stderr=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pty's other end closed: the command exited
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def test_status_in_colour_on_a_terminal_only(db: str) -> None:
    from tests.cli.helpers import clean_env

    _save_runs(db, 2)
    coloured = _on_a_terminal("--store", db, "list", env=clean_env(TERM="xterm"))
    assert "\x1b[33;1mrunning (stuck)\x1b[0m" in coloured and "\x1b[34mrunning\x1b[0m" in coloured
    plain = _on_a_terminal("--store", db, "list", env=clean_env(TERM="xterm", NO_COLOR="1"))
    assert "\x1b[" not in plain
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain  # the colour takes no room: the columns line up
    assert "\x1b[" not in beluga("--store", db, "list").out  # not a terminal
    shown = _on_a_terminal("--store", db, "show", "ord-01", env=clean_env(TERM="xterm"))
    assert "status    \x1b[33;1mrunning  (stuck: its code cannot continue it)\x1b[0m" in shown


def test_show_follow_prints_the_events_as_they_come_until_the_run_closes(db: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.cli.helpers import ROOT, clean_env

    start(db, tmp_path, "followed")  # parked on its signal 'approve'
    proc = subprocess.Popen([sys.executable, "-m", "beluga", "--store", db, "show", "followed", "--follow",
                             "--interval", "0.1"], cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        shown = []
        while not (line := proc.stdout.readline()).startswith("  #4 "):  # the history so far, then it waits
            assert line, proc.stderr.read()
            shown.append(line)
        r = beluga("--store", db, "--imports", IMPORTS, "signal", "followed", "approve", "--payload", '"ok"')
        assert r.code == 0, r.err
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    followed = rest.splitlines()
    recorded = beluga("--store", db, "show", "followed", "--json").json()["history"]
    assert [int(re.match(r"  #(\d+) ", line).group(1)) for line in followed[:-1]] == [
        e["id"] for e in recorded[4:]]                          # every new event once, in order
    assert re.match(r"  #5 +\+\S+ +signal_received +approve payload=\"ok\"", followed[0])
    assert re.search(r"workflow_completed +result=\"order followed ok\"", followed[-2])
    assert followed[-1] == "status    completed"


def test_update_prints_the_handlers_result_and_a_rejection_fails(db: str) -> None:
    r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_counter", "--input", "10", "--id", "c-1")
    assert r.code == 0, r.err
    r = beluga("--store", db, "--imports", IMPORTS, "update", "c-1", "add", "--args", "5", "--id", "u-1")
    assert r.code == 0 and json.loads(r.out) == 15, r.err
    r = beluga("--store", db, "--imports", IMPORTS, "update", "c-1", "add", "--args", "5", "--id", "u-1")
    assert r.code == 0 and json.loads(r.out) == 15, r.err  # the same update id: its first outcome
    line = beluga("--store", db, "--imports", IMPORTS, "update", "c-1", "add", "--args", "[-2]").one_error_line()
    assert line == "beluga: error: ApplicationError: amount must be positive, got -2"
    r = beluga("--store", db, "--imports", IMPORTS, "update", "c-1", "finish")
    assert r.code == 0 and json.loads(r.out) == 15, r.err
    data = beluga("--store", db, "show", "c-1", "--json").json()
    assert data["status"] == "completed" and data["result"] == 15
    accepted = [e["attrs"] for e in data["history"] if e["type"] == "update_accepted"]
    assert [(a["update_id"], a["name"], a["args"]) for a in accepted][0] == ("u-1", "add", [5])
    assert len(accepted) == 2 and "@" in accepted[0]["identity"]
    text = beluga("--store", db, "show", "c-1").out
    assert re.search(r"update_accepted +add id=u-1 args=\[5\]", text) and "id=u-1 result=15" in text


def test_start_with_a_priority_records_it_and_refuses_one_out_of_range(db: str, tmp_path: Path) -> None:
    start(db, tmp_path, "prio-1", "--priority", "1")
    exported = json.loads(beluga("--store", db, "export", "prio-1").out)
    assert exported["events"][0]["attrs"]["priority"] == 1
    arg = json.dumps({"dir": str(tmp_path), "order": "prio-2"})
    r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_order", "--input", arg, "--priority", "7")
    assert r.code == 2 and "--priority" in r.err and "invalid choice" in r.err, r.err
