"""Every error of the `beluga` command is one clear line on stderr and a non-zero exit status, never a
traceback: unknown ids, malformed JSON, files that are not histories, unknown workflow types, stores that
are not there, unreachable Redis, bad options."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.cli.helpers import beluga, clean_env

IMPORTS = "tests.cli.workflows"


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    r = beluga("--store", url, "--imports", IMPORTS, "start", "cli_order", "--id", "o-1", "--input",
               json.dumps({"dir": str(tmp_path), "order": "o-1"}))
    assert r.code == 0, r.err
    return url


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("args", "code", "expected"), [
    (["show", "nope"], 1, "no workflow with id 'nope' in sqlite:///"),
    (["export", "nope"], 1, "no workflow with id 'nope'"),
    (["signal", "nope", "approve"], 1, "no workflow with id 'nope'"),
    (["query", "nope", "status"], 1, "no workflow with id 'nope'"),
    (["cancel", "nope"], 1, "no workflow with id 'nope'"),
    (["terminate", "nope"], 1, "no workflow with id 'nope'"),
    (["retry", "nope"], 1, "no workflow with id 'nope'"),
    (["signal", "o-1", "approve", "--payload", "{not json"], 2, "--payload is not valid JSON"),
    (["start", "cli_order", "--input", "[1,", "--imports", IMPORTS], 2, "--input is not valid JSON"),
    (["query", "o-1", "echo", "--args", "nope", "--imports", IMPORTS], 2, "--args is not valid JSON"),
    (["start", "no_such_type", "--input", "1", "--imports", IMPORTS], 1,
     "start needs the code of workflow type 'no_such_type', which is not registered in this process; imported "
     "tests.cli.workflows, which do not define it"),
    (["signal", "o-1", "approve"], 1, "signal needs the code of workflow type 'cli_order'"),
    (["query", "o-1", "progress"], 1, "query 'progress' needs the code of workflow type 'cli_order'"),
    (["query", "o-1", "nope", "--imports", IMPORTS], 1, "QueryNotFound: workflow 'cli_order' (o-1) has no query "
                                                        "handler 'nope'"),
    (["start", "cli_order", "--imports", "no_such_module_xyz"], 1,
     "cannot import 'no_such_module_xyz': ModuleNotFoundError"),
    (["start", "cli_order", "--imports", "tests.celery.broken_imports"], 1,
     "cannot import 'tests.celery.broken_imports': RuntimeError: the deploy left this module broken"),
    (["console", "--imports", f"{IMPORTS},tests.celery.broken_imports"], 1,
     "cannot import 'tests.celery.broken_imports': RuntimeError"),
    (["retry", "o-1", "--imports", IMPORTS], 1, "cannot retry o-1: it is running"),
    (["list", "--since", "yesterday-ish"], 2, "--since 'yesterday-ish': give an ISO time"),
    (["list", "--status", "sleeping"], 2, "argument --status: invalid choice: 'sleeping'"),
    (["frobnicate"], 2, "argument COMMAND: invalid choice: 'frobnicate'"),
    (["export", "o-1", "-o", "/no/such/dir/x.json"], 1, "cannot write /no/such/dir/x.json"),
])
def test_errors_on_a_store(db: str, args: list[str], code: int, expected: str) -> None:
    r = beluga("--store", db, *args)
    line = r.one_error_line()
    assert r.code == code and expected in line, line


@pytest.mark.parametrize(("args", "expected"), [
    (["list"], "say where the runs are: --store URL"),
    (["--store", "sqlite:///no/such/file.db", "list"], "no SQLite store at no/such/file.db"),
    (["--store", "postgres://x/y", "list"], "unknown store URL 'postgres://x/y'"),
    (["--store", "sqlite:", "list"], "bad SQLite store URL 'sqlite:'"),
    (["--store", "sqlite:///x.db", "--executor", "celery", "list"], "--store names an in-process store"),
    (["--executor", "default", "list"], "the in-process executor needs --store URL"),
    (["--store", "redis://:secret@127.0.0.1:{port}/0", "list"], "cannot reach Redis at redis://:***@127.0.0.1:"),
    (["--store", "redis://127.0.0.1:{port}/0", "show", "x"], "cannot reach Redis at redis://127.0.0.1:"),
    (["--executor", "celery", "show", "x"], "cannot reach Redis at redis://127.0.0.1:"),
])
def test_errors_about_where_the_runs_are(tmp_path: Path, args: list[str], expected: str) -> None:
    port = str(_closed_port())
    args = [a.replace("{port}", port) for a in args]
    env = clean_env(BELUGA_REDIS_URL=f"redis://127.0.0.1:{port}/0", BELUGA_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    r = beluga(*args, env=env, cwd=tmp_path)
    line = r.one_error_line()
    assert expected in line and "secret" not in line, line


def test_replay_of_files_that_are_not_histories(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text('{"hello": "world"}')
    (tmp_path / "broken.json").write_text("{")
    r = beluga("replay", str(tmp_path), "--imports", IMPORTS)
    assert r.code == 2 and "Traceback" not in r.out + r.err
    assert f"ERROR     {tmp_path / 'broken.json'}: not JSON" in r.out
    assert f"ERROR     {tmp_path / 'notes.json'}: not a Beluga history" in r.out
    r = beluga("replay", str(tmp_path / "missing.json"))
    assert r.code == 2 and "cannot read it" in r.out
    (tmp_path / "empty").mkdir()
    assert beluga("replay", str(tmp_path / "empty")).one_error_line() == (
        f"beluga: error: no history files found in {tmp_path / 'empty'}")
    line = beluga("replay", str(tmp_path), "--imports", "no_such_module_xyz").one_error_line()
    assert "cannot import 'no_such_module_xyz'" in line


def test_replay_of_an_unknown_workflow_type(tmp_path: Path) -> None:
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "histories" / "ship_v1.json"
    r = beluga("replay", str(fixture), "--imports", IMPORTS)
    assert r.code == 2
    assert "workflow type 'ship' is not defined by the code replayed against" in r.out


def test_modules_in_beluga_imports_that_fail_matter_only_to_commands_that_need_code(db: str) -> None:
    env = clean_env(BELUGA_IMPORTS="no_such_module_xyz")
    assert beluga("--store", db, "list", env=env).code == 0
    line = beluga("--store", db, "signal", "o-1", "approve", env=env).one_error_line()
    assert "signal needs the code of workflow type 'cli_order'" in line
    assert "cannot import 'no_such_module_xyz': ModuleNotFoundError" in line
    r = beluga("--store", db, "signal", "o-1", "approve", "--payload", '"ok"', env=clean_env(BELUGA_IMPORTS=IMPORTS))
    assert r.code == 0, r.err


def test_engine_logs_are_one_line_each(db: str) -> None:
    """Signalling a run whose code no longer matches: the signal is kept (the run is stuck, as any
    executor would leave it), and what the engine logs about it is one line, not a traceback."""
    r = beluga("--store", db, "--imports", "tests.cli.changed_workflows", "signal", "o-1", "approve")
    assert r.code == 0, r.err
    assert "Traceback" not in r.err
    stuck = [line for line in r.err.splitlines() if "is stuck" in line]
    assert stuck and all(line.startswith("beluga: log: beluga.engine ERROR: workflow o-1 is stuck") for line in stuck)
    data = beluga("--store", db, "show", "o-1", "--json").json()
    assert data["stuck"] and data["history"][-1]["type"] == "signal_received"
    assert data["history"][-1]["attrs"]["deferred"] is True
