"""The console's schedules pages (beluga/console/schedules.py), driven in-process on an in-process executor:
the list, one schedule with its next and recent ticks, and pause, unpause and trigger behind the token."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from werkzeug.test import Client

from beluga import console, workflow
from tests.executors import workflows  # noqa: F401 - registers wf_echo

TOKEN = "t0ken"


def test_the_list_and_a_schedule(ex: Any) -> None:
    ex.create_schedule("nightly", "wf_echo", "<b>", workflow.ScheduleSpec("0 3 * * *", timezone="Europe/Paris"),
                       note="the <report>")
    client = Client(console.create_app(ex, token=TOKEN))
    listed = client.get("/schedules").get_data(as_text=True)
    assert 'data-schedule-id="nightly"' in listed and "cron &#x27;0 3 * * *&#x27; in Europe/Paris" in listed
    assert 'id="nav-schedules"' in client.get("/").get_data(as_text=True)
    page = client.get("/schedule?id=nightly").get_data(as_text=True)
    assert page.count("<li>") == 5 and "the &lt;report&gt;" in page and "&lt;b&gt;" in page and "<b>" not in page
    assert "need the console's token" in page and 'id="pause"' not in page
    assert client.get("/schedule?id=nope").status_code == 404
    assert client.get("/schedule").status_code == 400


def test_pause_unpause_and_trigger_need_the_token(ex: Any) -> None:
    ex.create_schedule("hourly", "wf_echo", "x", workflow.ScheduleSpec("@hourly"))
    client = Client(console.create_app(ex, token=TOKEN))
    assert client.post("/schedule/pause", data={"id": "hourly"}).status_code == 403
    assert not ex.describe_schedule("hourly").schedule.paused
    bearer = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/plain"}
    r = client.post("/schedule/pause", data={"id": "hourly", "note": "maintenance"}, headers=bearer)
    assert r.status_code == 200 and r.get_data(as_text=True) == "paused schedule hourly\n"
    assert ex.describe_schedule("hourly").schedule.note == "maintenance"
    resp = client.post("/login", data={"token": TOKEN, "next": "/schedule?id=hourly"})
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "paused (maintenance)" in page and 'id="unpause"' in page
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    r = client.post("/schedule/trigger", data={"id": "hourly", "csrf": csrf}, headers={"Accept": "text/html"})
    assert r.status_code == 303 and "triggered" in r.headers["Location"]
    started = [f.workflow_id for f in ex.describe_schedule("hourly").schedule.recent if f.outcome == "started"]
    assert len(started) == 1 and workflow.WorkflowHandle(ex, started[0], "").result(timeout=10) == "x"
    page = client.get("/schedule?id=hourly").get_data(as_text=True)
    assert f'href="/run?{urlencode({"id": started[0]})}"' in page  # a link to the run it started
    r = client.post("/schedule/unpause", data={"id": "hourly", "csrf": csrf}, headers={"Accept": "text/html"})
    assert r.status_code == 303 and not ex.describe_schedule("hourly").schedule.paused
    assert client.post("/schedule/trigger", data={"id": "nope"}, headers=bearer).status_code == 404
