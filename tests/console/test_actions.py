"""The console's reset and its actions on the runs ticked on the runs page (issue 17 items 5 and 6),
through the same authorization as every write (tests/console/test_app.py covers the token itself)."""

from __future__ import annotations

import json
import re

import pytest
from werkzeug.test import Client

from beluga import console, workflow
from tests.console.test_app import TOKEN, _login, _parked
from tests.executors import workflows as W

BEARER = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/plain"}


def test_ticked_runs_are_terminated_and_the_others_left_alone(ex) -> None:
    for wid in ("c-1", "c-2", "c-3"):
        _parked(ex, wid)
    client = Client(console.create_app(ex, token=TOKEN))
    assert 'name="sel:c-1"' not in client.get("/").get_data(as_text=True)  # locked: no checkboxes
    csrf = _login(client)
    page = client.get("/").get_data(as_text=True)
    assert 'name="sel:c-1"' in page and 'id="batch-action"' in page and 'action="/runs/batch"' in page
    request = re.search(r'name="request" value="([0-9a-f]+)"', page).group(1)
    resp = client.post("/runs/batch", data={"csrf": csrf, "request": request, "action": "terminate",
                                            "reason": "bad deploy", "sel:c-1": "1", "sel:c-2": "1"})
    assert resp.status_code == 303
    assert "terminate on 2 selected run(s): done 2, skipped 0, failed 0" in client.get(
        resp.headers["Location"]).get_data(as_text=True)
    assert [ex.summary(w).status.value for w in ("c-1", "c-2", "c-3")] == ["canceled", "canceled", "running"]
    terminated = [ev for ev in ex.describe("c-1").history if ev.type == "workflow_terminated"]
    assert terminated[0].attrs["reason"] == "bad deploy"
    again = client.post("/runs/batch", data={"csrf": csrf, "action": "terminate", "sel:c-1": "1"},
                        headers={"Accept": "text/plain"})
    assert "done 0, skipped 1, failed 0" in again.get_data(as_text=True)  # closed already: skipped


def test_a_resubmitted_signal_reaches_each_run_once(ex) -> None:
    for wid in ("s-1", "s-2"):
        ex.execute(W.wf_collect, workflow.WorkflowOptions(id=wid, input=2))
    client = Client(console.create_app(ex, token=TOKEN))
    body = {"action": "signal", "ids": ["s-1", "s-2"], "name": "msg", "payload": {"n": 1}, "request": "form-1"}
    for expect in ("done 2, skipped 0", "done 0, skipped 2"):
        resp = client.post("/runs/batch", data=json.dumps(body), content_type="application/json", headers=BEARER)
        assert resp.status_code == 200 and expect in resp.get_data(as_text=True)
    for wid in ("s-1", "s-2"):
        sent = [ev.attrs for ev in ex.describe(wid).history if ev.type == "signal_received"]
        assert [s["payload"] for s in sent] == [{"n": 1}] and sent[0]["sender_id"] == "batch:console-form-1"


def test_writes_need_the_token_and_bad_forms_are_400(ex) -> None:
    _parked(ex)
    before = ex.describe("c-1").history
    client = Client(console.create_app(ex, token=TOKEN))
    for path in ("/runs/batch", "/run/reset"):
        resp = client.post(path, data={"action": "terminate", "sel:c-1": "1", "id": "c-1"},
                           headers={"Accept": "text/plain"})
        assert resp.status_code == 403 and "needs the console's token" in resp.get_data(as_text=True)
    assert ex.describe("c-1").history == before
    for form, problem in (({"action": "explode", "sel:c-1": "1"}, "unknown action 'explode'"),
                          ({"action": "terminate"}, "no runs selected"),
                          ({"action": "signal", "sel:c-1": "1"}, "a signal needs a name")):
        resp = client.post("/runs/batch", data=form, headers=BEARER)
        assert resp.status_code == 400 and problem in resp.get_data(as_text=True)
    resp = client.post("/run/reset", data={"id": "c-1", "to": "2"}, headers=BEARER)
    assert resp.status_code == 400 and "is not a workflow-task boundary" in resp.get_data(as_text=True)
    assert ex.describe("c-1").history == before


def test_reset_from_a_runs_page_and_from_a_selection(ex) -> None:
    W.set_broken("r-1", [2])
    with pytest.raises(workflow.WorkflowFailed):
        ex.execute(W.wf_steps, workflow.WorkflowOptions(id="r-1", input={"key": "r-1", "steps": 2})).result(timeout=5)
    W.set_broken("r-1", [])
    client = Client(console.create_app(ex, token=TOKEN))
    _login(client)
    assert 'id="reset-form"' in client.get("/run?id=r-1").get_data(as_text=True)
    resp = client.post("/run/reset", data={"id": "r-1", "to": "last-good"}, headers=BEARER)
    assert resp.status_code == 200 and "kept as r-1/runs/1" in resp.get_data(as_text=True), resp.get_data()
    assert ex.get_handle("r-1").result(timeout=5) == [1, 2]
    resp = client.post("/runs/batch", data={"action": "reset", "to": "first", "sel:r-1": "1"}, headers=BEARER)
    assert "done 1, skipped 0, failed 0" in resp.get_data(as_text=True)
    assert ex.get_handle("r-1").result(timeout=5) == [1, 2]
    assert ex.summary("r-1/runs/2").status is workflow.WorkflowStatus.COMPLETED
