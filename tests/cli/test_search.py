"""`beluga start --attr/--memo`, `beluga list --where` and `beluga show` with search attributes (issue 17
item 4), as a subprocess against a SQLite store."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.helpers import beluga

IMPORTS = "tests.cli.workflows"


def test_start_with_attributes_list_where_and_show(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    for wid, attrs in (("o-1", ["customer=c-42", "amount=12.5", "vip=true"]), ("o-2", ["customer=c-7", "amount=99"]),
                       ("o-3", ["customer=c-42", "amount=150", "due=2026-05-01T09:00:00Z"])):
        arg = json.dumps({"dir": str(tmp_path), "order": wid})
        memo = ("--memo", '{"note": "rush"}') if wid == "o-1" else ()
        r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_order", "--input", arg, "--id", wid,
                   *(x for a in attrs for x in ("--attr", a)), *memo)
        assert r.code == 0, r.err

    def ids(*where: str) -> list[str]:
        r = beluga("--store", db, "list", "--json", *(x for w in where for x in ("--where", w)))
        assert r.code == 0, r.err
        return [row["workflow_id"] for row in r.json()]

    assert ids("customer=c-42") == ["o-3", "o-1"]
    assert ids("amount>=10", "amount<100") == ["o-2", "o-1"]
    assert ids("customer=c-42", "amount>100") == ["o-3"]
    assert ids("vip=true") == ["o-1"] and ids("customer=nobody") == []
    assert ids("due>=2026-05-01") == ["o-3"]  # a date without an offset is read as UTC
    rows = beluga("--store", db, "list", "--json", "--where", "customer=c-7").json()
    assert rows[0]["search_attributes"] == {"customer": "c-7", "amount": 99} and rows[0]["memo"] is None

    table = beluga("--store", db, "list", "--where", "customer=c-42").out
    assert "SEARCH ATTRIBUTES" in table and re.search(r"o-1 .* amount=12\.5, customer=c-42, vip=True", table)
    shown = beluga("--store", db, "show", "o-1").out
    assert re.search(r"^search +amount=12\.5, customer=c-42, vip=True$", shown, re.M)
    assert re.search(r'^memo +\{"note":"rush"\}$', shown, re.M)

    bad = beluga("--store", db, "list", "--where", "customer")
    assert bad.code == 2 and "name=value" in bad.err
    bad = beluga("--store", db, "list", "--where", "name>=abc")
    assert bad.code == 2 and "Range" in bad.err
    bad = beluga("--store", db, "--imports", IMPORTS, "start", "cli_order", "--input", "{}", "--attr", "a>1")
    assert bad.code == 2 and "--attr takes NAME=VALUE" in bad.err


def test_retry_starts_the_new_run_with_the_attributes_and_memo_it_was_started_with(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    (tmp_path / "broken").write_text("")  # tests/cli/workflows.py: its check fails while this file exists
    arg = json.dumps({"dir": str(tmp_path), "order": "f"})
    r = beluga("--store", db, "--imports", IMPORTS, "start", "cli_order", "--input", arg, "--id", "f",
               "--attr", "customer=c-9", "--memo", "[1, 2]")
    assert r.code == 0, r.err
    assert beluga("--store", db, "show", "f", "--json").json()["status"] == "failed"
    (tmp_path / "broken").unlink()
    assert beluga("--store", db, "--imports", IMPORTS, "retry", "f").code == 0
    now = beluga("--store", db, "show", "f", "--json").json()
    assert now["status"] == "running" and now["search_attributes"] == {"customer": "c-9"} and now["memo"] == [1, 2]
    rows = beluga("--store", db, "list", "--json", "--all", "--where", "customer=c-9").json()
    assert [row["workflow_id"] for row in rows] == ["f", "f/runs/1"]  # the kept copy keeps its attributes
