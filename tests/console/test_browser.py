"""The web console in a real headless browser (Debian's chromium and chromium-driver, driven by
selenium) against the session's real fleet: start an order, see it wait for its approval, log in with
the console's token, approve it from the page, see it complete. Screenshots go to the test's temporary
directory, and to docs/console/ with BELUGA_UPDATE_SCREENSHOTS=1 (those the README shows)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from beluga import workflow
from beluga.core.records import WorkflowFilter, WorkflowState, WorkflowStatus
from tests.fleet import ROOT, fleet_env, free_port, wait_progress

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TOKEN = "console-test-token"
DOCS = ROOT / "docs" / "console"


class ConsoleProcess:
    """`python -m beluga --executor celery console`, as an operator starts it."""

    def __init__(self, fleet: Any, log: Path, *extra: str, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beluga", "--executor", "celery", "console", "--port", str(self.port), *extra],
            env=fleet_env(fleet.url, **env), cwd=str(ROOT), stdout=open(log, "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError(f"the console did not start: {log.read_text()}") from None
                time.sleep(0.1)

    def post(self, path: str, fields: dict[str, str], headers: dict[str, str] | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.base + path, data=urllib.parse.urlencode(fields).encode(), method="POST",
                                     headers={"Accept": "text/plain", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def console(fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleProcess]:
    c = ConsoleProcess(fleet, tmp_path_factory.mktemp("console") / "console.log", BELUGA_CONSOLE_TOKEN=TOKEN)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and DRIVER.exists()):
        if os.environ.get("CI"):
            raise RuntimeError("chromium and chromium-driver are required in CI (scripts/test.sh installs them)")
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def _screenshot(driver: Any, tmp: Path, name: str) -> None:
    """The whole page (through the DevTools protocol: a headless window's viewport does not grow)."""
    import base64

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": 1280, "height": min(max(int(size["height"]), 600), 2400), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                             "clip": clip})
    path = tmp / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    if os.environ.get("BELUGA_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)


def _until(what: str, check: Any, timeout: float = 20.0, every: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - the page is being replaced under us: look again
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if every is not None:
            every()
        time.sleep(0.2)


def test_approve_an_order_from_the_console(fleet, console: ConsoleProcess, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    ex = fleet.executor()
    order = f"ORD-{uuid.uuid4().hex[:6].upper()}"
    wid = f"order-{order}"
    handle = ex.execute("order_workflow", workflow.WorkflowOptions(id=wid, input=order))
    wait_progress(ex, wid)

    # the runs: this one is running, newest first, counted
    browser.get(console.base + "/")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-workflow-id="{wid}"]')
    assert row.find_element(By.CSS_SELECTOR, ".badge").text == "running"
    assert int(browser.find_element(By.ID, "count-running").text) >= 1
    first = browser.find_element(By.CSS_SELECTOR, "#runs tbody tr").get_attribute("data-workflow-id")
    assert first == wid                                                   # newest first
    browser.get(console.base + "/?status=running&type=order_workflow")
    assert browser.find_element(By.CSS_SELECTOR, f'tr[data-workflow-id="{wid}"]')
    assert all(b.text == "running" for b in browser.find_elements(By.CSS_SELECTOR, "#runs .badge"))

    # its page: running, waiting for the approve signal, its history so far
    browser.find_element(By.LINK_TEXT, wid).click()  # a page load: wait for it (no implicit waits)
    _until("the run's page", lambda: browser.find_element(By.CSS_SELECTOR, "#status .badge").text == "running")
    assert "signal 'approve'" in browser.find_element(By.ID, "waiting").text
    events = [r.get_attribute("data-type") for r in browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")]
    assert events[:2] == ["workflow_started", "activity_scheduled"] and "activity_completed" in events
    assert not browser.find_elements(By.ID, "signal-send")                 # not logged in: no buttons

    # log in with the token, and approve
    browser.find_element(By.PARTIAL_LINK_TEXT, "Log in").click()
    _until("the login page", lambda: browser.find_element(By.ID, "token")).send_keys(TOKEN)
    browser.find_element(By.ID, "login").click()
    _until("the run's page again", lambda: browser.find_element(By.ID, "workflow-id").text == wid)
    assert browser.find_element(By.ID, "signal-name").get_attribute("value") == "approve"   # what it waits for
    browser.find_element(By.ID, "signal-payload").send_keys('"approved"')
    _screenshot(browser, tmp_path, "run-waiting")
    browser.find_element(By.ID, "signal-send").click()
    _until("the signal's confirmation", lambda: "signal 'approve' sent" in browser.find_element(By.ID, "flash").text)

    # it completes
    _until("the run to complete", lambda: browser.find_element(By.CSS_SELECTOR, "#status .badge").text == "completed",
           every=browser.refresh)
    assert order in browser.find_element(By.ID, "result").text
    events = [r.get_attribute("data-type") for r in browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")]
    assert "signal_received" in events and events[-1] == "workflow_completed"
    _screenshot(browser, tmp_path, "run-completed")
    assert handle.result(timeout=5) == f"order {order} processed"


def test_a_failed_run_shows_its_error_and_traceback(fleet, console: ConsoleProcess, browser: Any,
                                                    tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    ex = fleet.executor()
    wid = f"order-rejected-{uuid.uuid4().hex[:6]}"
    handle = ex.execute("order_workflow", workflow.WorkflowOptions(id=wid, input=wid))
    wait_progress(ex, wid)
    ex.signal(wid, workflow.Signal("approve", "no"))
    with pytest.raises(workflow.WorkflowFailed):
        handle.result(timeout=20)
    browser.get(console.base + "/run?" + urllib.parse.urlencode({"id": wid}))
    assert browser.find_element(By.CSS_SELECTOR, "#status .badge").text == "failed"
    error = browser.find_element(By.ID, "error")
    assert "ApplicationError: order rejected" in error.text
    error.find_element(By.TAG_NAME, "summary").click()                   # the traceback, unfolded
    assert "order_workflow" in error.find_element(By.TAG_NAME, "pre").text
    assert browser.find_element(By.ID, "retry")                          # logged in: a failed run can be retried
    _screenshot(browser, tmp_path, "run-failed")


def test_writes_without_the_token_are_refused_and_change_nothing(fleet, console: ConsoleProcess,
                                                                  tmp_path: Path) -> None:
    ex = fleet.executor()
    wid = f"order-guarded-{uuid.uuid4().hex[:6]}"
    ex.execute("order_workflow", workflow.WorkflowOptions(id=wid, input=wid))
    wait_progress(ex, wid)
    before = ex.describe(wid)
    for path, fields in [("/run/signal", {"id": wid, "name": "approve", "payload": '"approved"'}),
                         ("/run/cancel", {"id": wid}), ("/run/terminate", {"id": wid, "reason": "x"})]:
        status, body = console.post(path, fields)
        assert status == 403 and "needs the console's token" in body and "Nothing was changed" in body, body
        status, body = console.post(path, fields, {"Authorization": "Bearer not-the-token"})
        assert status == 403 and "wrong token" in body, body
        status, body = console.post(path, {**fields, "csrf": "0" * 64})   # a forged form, no session
        assert status == 403, body
    time.sleep(0.5)
    after = ex.describe(wid)
    assert after.status is workflow.WorkflowStatus.RUNNING and after.history == before.history

    # the same request with the token goes through (a script's bearer token)
    status, body = console.post("/run/terminate", {"id": wid, "reason": "test over"},
                                {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and f"terminated {wid}" in body
    assert ex.wait_closed(wid, 10).status is workflow.WorkflowStatus.CANCELED

    # a console without a token is read-only: every write is refused, whatever is sent
    read_only = ConsoleProcess(fleet, tmp_path / "read-only.log")
    try:
        wid2 = f"order-ro-{uuid.uuid4().hex[:6]}"
        ex.execute("order_workflow", workflow.WorkflowOptions(id=wid2, input=wid2))
        wait_progress(ex, wid2)
        status, body = read_only.post("/run/cancel", {"id": wid2}, {"Authorization": f"Bearer {TOKEN}"})
        assert status == 403 and "read-only" in body
        page = urllib.request.urlopen(f"{read_only.base}/run?id={wid2}", timeout=10).read().decode()
        assert 'id="read-only"' in page and 'id="signal-send"' not in page
        assert ex.summary(wid2).status is workflow.WorkflowStatus.RUNNING
        ex.terminate(wid2, "test over")
    finally:
        read_only.stop()


def test_runs_are_listed_with_counts_by_status(fleet, console: ConsoleProcess, browser: Any, tmp_path: Path) -> None:
    """After the runs above (completed, failed, canceled) and one waiting: the tabs count what the store
    holds, and filter."""
    from selenium.webdriver.common.by import By

    ex = fleet.executor()
    wid = f"order-ORD-{uuid.uuid4().hex[:6].upper()}"
    ex.execute("order_workflow", workflow.WorkflowOptions(id=wid, input=wid[6:]))
    wait_progress(ex, wid)
    browser.get(console.base + "/?type=order_workflow")
    counts = fleet.executor().store.counts(WorkflowFilter(workflow_type="order_workflow", kept_copies=False))
    for status, n in counts.items():
        assert int(browser.find_element(By.ID, f"count-{status}").text) == n
    assert counts["completed"] >= 1 and counts["failed"] >= 1
    _screenshot(browser, tmp_path, "runs")
    browser.find_element(By.ID, "tab-failed").click()
    _until("the failed runs' tab", lambda: browser.find_element(By.ID, "tab-failed").get_attribute("class") == "on")
    badges = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#runs .badge")]
    assert badges and set(badges) == {"failed"} and len(badges) == counts["failed"]
    ex.terminate(wid, "test over")


def test_search_a_run_by_its_id_and_page_through_the_runs(fleet, console: ConsoleProcess, browser: Any,
                                                          tmp_path: Path) -> None:
    """Type a workflow id's prefix in the search box; page older and back newer, two runs a page; then
    one run by its exact id."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    prefix = f"find-{uuid.uuid4().hex[:6]}-"
    store = fleet.executor().store
    ids = [f"{prefix}{i}" for i in range(5)]
    for i, wid in enumerate(ids):  # closed runs, written as a tool would: nothing drives them
        store.save(WorkflowState(wid, f"r{i}", "order_workflow", status=WorkflowStatus.COMPLETED, result=i,
                                 created_at=time.time() + i, updated_at=time.time() + i))
    newest_first = ids[::-1]

    def rows() -> list[str]:
        return [r.get_attribute("data-workflow-id") for r in browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr")
                if r.get_attribute("data-workflow-id")]

    browser.get(console.base + "/")
    browser.find_element(By.ID, "search").send_keys(prefix)
    browser.find_element(By.ID, "filter").click()
    _until("the search's rows", lambda: rows() == newest_first)
    assert int(browser.find_element(By.ID, "count-all").text) == 5
    assert int(browser.find_element(By.ID, "count-completed").text) == 5
    _screenshot(browser, tmp_path, "search")

    browser.get(console.base + f"/?q={prefix}&limit=2")
    pages = [rows()]
    while browser.find_elements(By.ID, "older"):
        browser.find_element(By.ID, "older").click()
        _until("the next page", lambda: rows() and rows() != pages[-1])
        pages.append(rows())
    assert pages == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    browser.find_element(By.ID, "newer").click()
    _until("the page before", lambda: rows() == newest_first[2:4])
    browser.find_element(By.ID, "newer").click()
    _until("the first page", lambda: rows() == newest_first[:2])
    assert not browser.find_elements(By.ID, "newer")

    search = browser.find_element(By.ID, "search")
    search.clear()
    search.send_keys(ids[3])
    Select(browser.find_element(By.ID, "match")).select_by_value("exact")
    browser.find_element(By.ID, "filter").click()
    _until("the one run", lambda: rows() == [ids[3]])
    assert int(browser.find_element(By.ID, "count-all").text) == 1
    for wid in ids:
        store.delete(wid)


def test_a_schedule_and_its_ticks_paused_from_the_console(fleet, console: ConsoleProcess, browser: Any,
                                                          tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from beluga.core.schedules import Interval, Overlap, SchedulePolicy, ScheduleSpec

    ex = fleet.executor()
    sid = f"console-sched-{uuid.uuid4().hex[:6]}"
    first = int(time.time()) + 2
    ex.create_schedule(sid, "wf_echo", "tick", ScheduleSpec(intervals=(Interval(1),), start_at=first, end_at=first + 2),
                       policy=SchedulePolicy(Overlap.ALLOW_ALL), note="three ticks")
    browser.get(console.base + "/")
    browser.find_element(By.ID, "nav-schedules").click()
    _until("the schedules page", lambda: browser.find_element(By.CSS_SELECTOR, f'tr[data-schedule-id="{sid}"]'))
    browser.find_element(By.LINK_TEXT, sid).click()
    _until("the three ticks", lambda: len([r for r in browser.find_elements(By.CSS_SELECTOR, "#recent tbody tr")
                                           if "started" in r.text]) == 3, every=browser.refresh)
    links = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#recent tbody a")]
    assert sorted(links) == [f"{sid}-{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(first + k))}" for k in range(3)]
    if not browser.find_elements(By.ID, "pause"):  # not logged in yet (tests run in any order)
        browser.get(console.base + "/login?" + urllib.parse.urlencode({"next": f"/schedule?id={sid}"}))
        _until("the login page", lambda: browser.find_element(By.ID, "token")).send_keys(TOKEN)
        browser.find_element(By.ID, "login").click()
        _until("the schedule's page again", lambda: browser.find_element(By.ID, "pause"))
    browser.find_element(By.ID, "note-pause").send_keys("end of quarter")
    browser.find_element(By.ID, "pause").click()
    _until("the pause's confirmation", lambda: f"paused schedule {sid}" in browser.find_element(By.ID, "flash").text)
    assert browser.find_element(By.ID, "schedule-state").text == "paused (end of quarter)"
    assert ex.describe_schedule(sid).schedule.paused
    _screenshot(browser, tmp_path, "schedule")
    ex.delete_schedule(sid)
