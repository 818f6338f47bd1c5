"""The console's WSGI app, driven in-process (werkzeug's test client) on an in-process executor: routing,
the token (log in, CSRF, bearer), bad input, escaping, retry, and mounting under a prefix. The browser
test against the fleet is tests/console/test_browser.py."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client
from werkzeug.wrappers import Response

from beluga import console, workflow
from tests.executors import workflows as W

TOKEN = "t0ken"


def _parked(ex: Any, wid: str = "c-1") -> Any:
    handle = ex.execute(W.wf_progress, workflow.WorkflowOptions(id=wid, input=0))
    deadline = time.monotonic() + 5
    while ex.query(wid, "progress")["step"] != "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return handle


def _login(client: Client, root: str = "") -> str:
    resp = client.post(f"{root}/login", data={"token": TOKEN, "next": f"{root}/run?id=c-1"})
    assert resp.status_code == 303
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


def test_pages_and_the_run_it_waits_for(ex) -> None:
    _parked(ex)
    client = Client(console.create_app(ex, token=TOKEN))
    runs = client.get("/").get_data(as_text=True)
    assert 'data-workflow-id="c-1"' in runs and 'id="count-running">1<' in runs
    page = client.get("/run?id=c-1").get_data(as_text=True)
    assert "signal &#x27;go&#x27;" in page                 # what it waits on, from a read-only replay
    assert 'data-type="activity_completed"' in page and 'id="signal-send"' not in page
    assert client.get("/healthz").get_data() == b"ok\n"
    export = client.get("/run/export?id=c-1")
    assert export.headers["Content-Type"] == "application/json" and b'"workflow_id": "c-1"' in export.get_data()
    assert client.head("/run?id=c-1").status_code == 200


def test_a_logged_in_operator_signals_and_the_run_completes(ex) -> None:
    handle = _parked(ex)
    client = Client(console.create_app(ex, token=TOKEN))
    csrf = _login(client)
    resp = client.post("/run/signal", data={"id": "c-1", "name": "go", "payload": '{"ok": true}', "csrf": csrf})
    assert resp.status_code == 303 and "done=signal" in resp.headers["Location"]
    assert handle.result(timeout=5) == {"ok": True}
    assert "completed" in client.get(resp.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize("fields, headers, expect", [
    ({}, {}, "needs the console's token"),                                       # no token at all
    ({"csrf": "0" * 64}, {}, "needs the console's token"),                        # a forged form field
    ({}, {"Authorization": "Bearer nope"}, "wrong token"),
    ({}, {"Authorization": f"Basic {TOKEN}"}, "wrong token"),
])
def test_writes_without_the_token_are_403_and_change_nothing(ex, fields: dict, headers: dict, expect: str) -> None:
    _parked(ex)
    before = ex.describe("c-1").history
    client = Client(console.create_app(ex, token=TOKEN))
    for path in ("/run/signal", "/run/cancel", "/run/terminate", "/run/retry"):
        resp = client.post(path, data={"id": "c-1", "name": "go", **fields},
                           headers={"Accept": "text/plain", **headers})
        assert resp.status_code == 403 and expect in resp.get_data(as_text=True), (path, resp.get_data())
    assert ex.describe("c-1").history == before


def test_a_session_needs_its_csrf_field(ex) -> None:
    """A logged-in browser tricked into posting from another page sends the cookie but not the field."""
    _parked(ex)
    client = Client(console.create_app(ex, token=TOKEN))
    _login(client)
    assert client.post("/run/cancel", data={"id": "c-1"}).status_code == 403
    assert ex.summary("c-1").status is workflow.WorkflowStatus.RUNNING


def test_read_only_console_refuses_every_write(ex) -> None:
    _parked(ex)
    client = Client(console.create_app(ex, read_only=True))
    resp = client.post("/run/cancel", data={"id": "c-1"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 403 and "read-only" in resp.get_data(as_text=True)
    assert client.post("/login", data={"token": TOKEN}).status_code == 403
    assert 'id="read-only"' in client.get("/run?id=c-1").get_data(as_text=True)


def test_login(ex) -> None:
    client = Client(console.create_app(ex, token=TOKEN))
    wrong = client.post("/login", data={"token": "guess"})
    assert wrong.status_code == 403 and "not the console" in wrong.get_data(as_text=True)
    # the redirect after logging in stays on this site
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        resp = client.post("/login", data={"token": TOKEN, "next": evil})
        assert resp.headers["Location"] == "/", evil
    cookie = client.post("/login", data={"token": TOKEN}).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie


def test_expired_or_forged_sessions_are_not_logged_in(ex) -> None:
    app = console.create_app(ex, token=TOKEN)
    expired = int(time.time()) - 1
    for value in (app._session(expired), f"{int(time.time()) + 99}.{'0' * 64}", "garbage"):
        client = Client(app)
        client.set_cookie(console.COOKIE, value)
        assert 'id="login-link"' in client.get("/").get_data(as_text=True)


@pytest.mark.parametrize("path, status", [
    ("/run?id=nope", 404), ("/run", 400), ("/?status=bogus", 400), ("/?limit=x", 400), ("/nowhere", 404),
    ("/run/signal", 405),
])
def test_bad_requests(ex, path: str, status: int) -> None:
    resp = Client(console.create_app(ex, token=TOKEN)).get(path)
    assert resp.status_code == status and 'id="error"' in resp.get_data(as_text=True)


def test_bad_input_to_a_write_is_a_clear_error_and_changes_nothing(ex) -> None:
    _parked(ex)
    before = ex.describe("c-1").history
    client = Client(console.create_app(ex, token=TOKEN))
    bearer = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/plain"}
    cases = [({"id": "c-1", "name": "go", "payload": "{not json"}, 400, "not valid JSON"),
             ({"id": "c-1", "name": ""}, 400, "needs a name"),
             ({"name": "go"}, 400, "no workflow id"),
             ({"id": "missing", "name": "go"}, 404, "no workflow with id 'missing'")]
    for fields, status, text in cases:
        resp = client.post("/run/signal", data=fields, headers=bearer)
        assert resp.status_code == status and text in resp.get_data(as_text=True), resp.get_data()
    assert ex.describe("c-1").history == before
    resp = client.post("/run/retry", data={"id": "c-1"}, headers=bearer)   # an open run is not retried
    assert resp.status_code == 409 and "cannot retry c-1: it is running" in resp.get_data(as_text=True)


def test_retry_keeps_the_failed_run(ex) -> None:
    with pytest.raises(workflow.WorkflowFailed):
        ex.execute(W.wf_fail, workflow.WorkflowOptions(id="c-2", input="boom")).result(timeout=5)
    client = Client(console.create_app(ex, token=TOKEN))
    resp = client.post("/run/retry", data={"id": "c-2"},
                       headers={"Authorization": f"Bearer {TOKEN}", "Accept": "text/plain"})
    assert resp.status_code == 200 and "kept as c-2/runs/1" in resp.get_data(as_text=True)
    assert ex.summary("c-2/runs/1").status is workflow.WorkflowStatus.FAILED
    page = client.get("/run?id=c-2").get_data(as_text=True)
    assert "c-2/runs/1" in page                                   # its earlier runs, linked


def test_values_are_escaped(ex) -> None:
    wid = '<script>alert("x")</script>'
    ex.execute(W.wf_echo, workflow.WorkflowOptions(id=wid, input="<b>bold</b>")).result(timeout=5)
    client = Client(console.create_app(ex))
    for page in (client.get("/").get_data(as_text=True),
                 client.get("/run", query_string={"id": wid}).get_data(as_text=True)):
        assert "<script>" not in page and "<b>bold" not in page and "&lt;script&gt;" in page
    resp = client.get("/")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"] and resp.headers["X-Frame-Options"] == "DENY"


def test_mounted_under_a_prefix(ex) -> None:
    """Mounted in another WSGI app (here werkzeug's dispatcher, as in Flask): links and the cookie follow."""
    _parked(ex)
    app = DispatcherMiddleware(Response("the app itself"), {"/ops/beluga": console.create_app(ex, token=TOKEN)})
    client = Client(app)
    runs = client.get("/ops/beluga/").get_data(as_text=True)
    assert 'href="/ops/beluga/run?id=c-1"' in runs and 'href="/ops/beluga/login"' in runs
    resp = client.post("/ops/beluga/login", data={"token": TOKEN, "next": "/ops/beluga/run?id=c-1"})
    assert "Path=/ops/beluga" in resp.headers["Set-Cookie"]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/ops/beluga/run?id=c-1").get_data(as_text=True))
    resp = client.post("/ops/beluga/run/cancel", data={"id": "c-1", "csrf": csrf.group(1)})
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/ops/beluga/run?id=c-1")
    assert ex.wait_closed("c-1", 5).status is workflow.WorkflowStatus.CANCELED
    assert client.get("/").get_data() == b"the app itself"


def test_console_command_errors_are_one_line(tmp_path, capsys) -> None:
    from beluga.cli import main
    from beluga.stores import SQLiteStore

    SQLiteStore(str(tmp_path / "c.db")).close()
    store = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["--store", store, "console", "--token-file", str(tmp_path / "missing")]) == 2
    assert "cannot read the token file" in capsys.readouterr().err
    (tmp_path / "empty").write_text("\n")
    assert main(["--store", store, "console", "--token-file", str(tmp_path / "empty")]) == 2
    assert "is empty" in capsys.readouterr().err
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["--store", store, "console", "--port", str(taken.getsockname()[1])]) == 1
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


@pytest.mark.parametrize("evil", ["/ok\r\nX-Injected: 1", "/ok\nSet-Cookie: x=1", "/ok\x00", "/ok\t", "/\u00e9t\u00e9",
                                  "/ok\x7f", " /ok"])
def test_next_is_a_plain_local_path(ex, evil: str) -> None:
    client = Client(console.create_app(ex, token=TOKEN))
    resp = client.post("/login", data={"token": TOKEN, "next": evil})
    assert resp.status_code == 303 and resp.headers["Location"] == "/"
    assert "X-Injected" not in resp.headers and "x=1" not in resp.headers.get("Set-Cookie", "")
    assert client.post("/login", data={"token": TOKEN, "next": "/run?id=c-1"}).headers["Location"] == "/run?id=c-1"


@pytest.mark.parametrize("body, kind", [
    ({"id": "c-1", "csrf": "\u00e9\u00e9"}, None),                         # a non-ASCII CSRF field
    ({"id": "c-1", "csrf": "x" * 5000}, None),
    (b"id=c-1&csrf=%ff%fe", "application/x-www-form-urlencoded"),         # not UTF-8
    (b'{"id": ["c-1"], "csrf": {"a": 1}}', "application/json"),           # JSON of the wrong shapes
    (b"[1, 2", "application/json"),
    (b"\xff\xfe", "application/json"),
])
def test_malformed_forms_are_4xx_never_500(ex, body: Any, kind: str | None) -> None:
    _parked(ex)
    app = console.create_app(ex, token=TOKEN)
    client = Client(app)
    _login(client)
    for path in ("/run/cancel", "/run/signal", "/run/terminate", "/logout"):
        resp = client.post(path, data=body, content_type=kind) if kind else client.post(path, data=body)
        assert 400 <= resp.status_code < 500, (path, resp.status_code, resp.get_data(as_text=True))
    assert ex.describe("c-1").status == workflow.WorkflowStatus.RUNNING      # nothing was changed by any of them
    assert ex.query("c-1", "progress")["step"] == "waiting"


def test_malformed_queries_are_4xx_never_500(ex) -> None:
    _parked(ex)
    client = Client(console.create_app(ex, token=TOKEN))
    for query in ("id=%00", "id=c-1%00", "id=\u00e9", "limit=-1e999", "limit=%ff", "status=%00", "refresh=x",
                  "type=%ff%fe", "id=" + "x" * 20000):
        for path in ("/", "/run", "/run/export"):
            resp = client.get(f"{path}?{query}")
            assert resp.status_code < 500, (path, query, resp.status_code)


def test_the_console_server_never_logs_a_token(ex, capfd) -> None:
    """`beluga console`'s own server logs one line per 4xx/5xx: the method and path, never the query
    string, nor the raw line of a request it could not parse."""
    import socket
    import threading
    import urllib.error
    import urllib.request
    from wsgiref.simple_server import make_server

    from beluga.console import server

    httpd = make_server("127.0.0.1", 0, console.create_app(ex, token=TOKEN), server_class=server._Server,
                        handler_class=server._Handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = httpd.server_port
    try:
        for url in (f"/nowhere?token={TOKEN}", f"/run?id=nope&token={TOKEN}", f"/login?next=/&token={TOKEN}x"):
            with pytest.raises(urllib.error.HTTPError) if "login" not in url else _nothing():
                urllib.request.urlopen(f"http://127.0.0.1:{port}{url}", timeout=10).read()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:   # a line it cannot parse
            s.sendall(f"GET /?token={TOKEN} HTTP/9 x\r\n\r\n".encode())
            assert b"400" in s.recv(4000)
    finally:
        httpd.shutdown()
        httpd.server_close()
    err = capfd.readouterr().err
    assert "GET /nowhere 404" in err and "GET /run 404" in err      # the failures are logged ...
    assert TOKEN not in err                                          # ... without the token


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def test_healthz_reflects_the_store(tmp_path) -> None:
    """A console on a Redis store answers 503 once that Redis is gone (a probe then takes it out of
    service), not `ok` as it did whatever the store's state."""
    from tests.fleet import ServerProcess

    server = ServerProcess(tmp_path)
    try:
        client = Client(console.create_app(f"{server.url}?prefix=hz", read_only=True))
        assert client.get("/healthz").get_data() == b"ok\n"
        server.kill9()
        resp = client.get("/healthz")
        assert resp.status_code == 503 and b"cannot read the runs" in resp.get_data(), resp.get_data()
    finally:
        server.stop()


def test_a_parents_page_lists_its_children_and_a_child_links_its_parent(ex) -> None:
    ex.execute(W.wf_parent, workflow.WorkflowOptions(id="fam", input={"value": "hi"})).result(timeout=10)
    client = Client(console.create_app(ex, token=TOKEN))
    page = client.get("/run?id=fam").get_data(as_text=True)
    assert re.search(r'<ul id="children"><li><a href="/run\?id=fam%2Fchild-1">fam/child-1</a> wf_echo', page), page
    child = client.get("/run?id=fam%2Fchild-1").get_data(as_text=True)
    assert '<div class="card" id="parent"><a href="/run?id=fam">fam</a>' in child


def test_a_long_error_is_cut_in_the_list_and_whole_on_hover_and_on_its_page(ex) -> None:
    reason = "order rejected because " + "the warehouse said no " * 10
    with pytest.raises(workflow.WorkflowFailed):
        ex.execute(W.wf_fail, workflow.WorkflowOptions(id="long-err", input=reason)).result(timeout=5)
    client = Client(console.create_app(ex, token=TOKEN))
    listing = client.get("/").get_data(as_text=True)
    row = re.search(r'<tr data-workflow-id="long-err">.*?</tr>', listing).group(0)
    assert f'title="ApplicationError: {reason.strip()}' in row and "\u2026</td>" in row
    assert reason.strip() in client.get("/run?id=long-err").get_data(as_text=True)


# --- finding runs in a fleet: search by id, stuck, pages both ways, counts that match the rows ---------------
def _fleet_of_runs(ex: Any, n: int = 70) -> list[str]:
    """`n` runs saved straight into the store (every 7th stuck, every 5th failed), and a kept copy of a
    retried run: the ids the console lists, newest first."""
    from beluga.core.records import WorkflowState, WorkflowStatus

    for i in range(n):
        stuck, failed = i % 7 == 3, i % 5 == 0
        ex.store.save(WorkflowState(
            f"order-{i:03d}", f"r{i}", "wf_order" if i % 2 else "wf_ship",
            status=WorkflowStatus.FAILED if failed else WorkflowStatus.RUNNING,
            error={"type": "NondeterminismError", "message": "the code changed"} if stuck or failed else None,
            created_at=1000.0 + i // 2, updated_at=1000.0 + i))  # pairs created at one instant
    ex.store.save(WorkflowState("order-000/runs/1", "old", "wf_ship", status=WorkflowStatus.FAILED, created_at=999.0))
    return [f"order-{i:03d}" for i in reversed(range(n))]


def _rows(html: str) -> list[str]:
    return re.findall(r'<tr data-workflow-id="([^"]+)"', html)


def _count(html: str, tab: str) -> int:
    return int(re.search(rf'id="count-{tab}">(\d+)<', html).group(1))


def _link(html: str, which: str) -> str | None:
    found = re.search(rf'<a id="{which}" href="([^"]+)"', html)
    return found.group(1).replace("&amp;", "&") if found else None


@pytest.mark.parametrize("query, tab, keep", [
    ("", "all", lambda i: True), ("status=failed", "failed", lambda i: i % 5 == 0),
    ("stuck=1", "stuck", lambda i: i % 7 == 3 and i % 5 != 0), ("type=wf_order", "all", lambda i: i % 2 == 1),
    ("q=order-01", "all", lambda i: 10 <= i < 20)], ids=["all", "failed", "stuck", "type", "prefix"])
def test_pages_older_and_newer_hold_every_run_once_and_the_tab_counts_them(ex, query: str, tab: str, keep: Any) -> None:
    every = [wid for wid in _fleet_of_runs(ex) if keep(int(wid[-3:]))]
    client = Client(console.create_app(ex, token=TOKEN))
    url: str | None = f"/?{query}&limit=8"
    pages: list[list[str]] = []
    while url:
        html = client.get(url).get_data(as_text=True)
        assert _count(html, tab) == len(every)
        pages.append(_rows(html))
        url = _link(html, "older")
    assert [wid for page in pages for wid in page] == every and "order-000/runs/1" not in every
    assert all(len(page) == 8 for page in pages[:-1])
    back = [pages[-1]]
    while url := _link(html, "newer"):
        html = client.get(url).get_data(as_text=True)
        back.append(_rows(html))
    assert back[::-1] == pages  # newer, page by page, back to the first


def test_search_by_id_prefix_and_exact_and_kept_copies(ex) -> None:
    _fleet_of_runs(ex)
    client = Client(console.create_app(ex, token=TOKEN))
    exact = client.get("/?q=order-000&match=exact").get_data(as_text=True)
    assert _rows(exact) == ["order-000"] and _count(exact, "all") == 1 and _count(exact, "failed") == 1
    assert _rows(client.get("/?q=order-000/runs/1&match=exact").get_data(as_text=True)) == ["order-000/runs/1"]
    prefix = client.get("/?q=order-00").get_data(as_text=True)
    assert _rows(prefix) == [f"order-00{i}" for i in reversed(range(10))] and _count(prefix, "all") == 10
    copies = client.get("/?q=order-000&all=1").get_data(as_text=True)
    assert _rows(copies) == ["order-000", "order-000/runs/1"] and _count(copies, "failed") == 2
    nothing = client.get("/?q=zzz").get_data(as_text=True)
    assert _rows(nothing) == [] and _count(nothing, "all") == 0 and "no runs match" in nothing


def test_a_stuck_runs_error_is_on_its_row(ex) -> None:
    _fleet_of_runs(ex, 10)
    html = Client(console.create_app(ex, token=TOKEN)).get("/?stuck=1").get_data(as_text=True)
    assert _rows(html) == ["order-003"] and 'data-status="running (stuck)"' in html
    assert "NondeterminismError: the code changed" in html


@pytest.mark.parametrize("cursor", ["x", "%00", "eyJ4IjoxfQ", "WyJvbGRlciIsIngiLCJhIl0"])
def test_a_cursor_not_given_by_the_console_is_400(ex, cursor: str) -> None:
    resp = Client(console.create_app(ex, token=TOKEN)).get(f"/?cursor={cursor}")
    assert resp.status_code == 400 and b"cursor" in resp.get_data()


def test_search_by_attributes_keeps_the_tabs_and_pages_in_step(ex) -> None:
    from beluga.core.records import WorkflowState, WorkflowStatus

    for i in range(30):
        ex.store.save(WorkflowState(
            f"o-{i:02d}", f"r{i}", "wf_order", WorkflowStatus.FAILED if i % 3 == 0 else WorkflowStatus.RUNNING,
            created_at=1000.0 + i, updated_at=1000.0 + i, search_attributes={"customer": f"c-{i % 2}", "amount": i},
            memo={"note": f"n{i}"} if i == 5 else None))
    client = Client(console.create_app(ex, token=TOKEN))
    html = client.get("/?where=customer%3Dc-1+amount%3E%3D20&limit=3").get_data(as_text=True)
    assert _rows(html) == ["o-29", "o-27", "o-25"] and _count(html, "all") == 5 and _count(html, "failed") == 2
    assert 'id="where" value="customer=c-1 amount&gt;=20"' in html and "amount=29, customer=c-1" in html
    older = client.get(_link(html, "older")).get_data(as_text=True)
    assert _rows(older) == ["o-23", "o-21"]
    tab = re.search(r'id="tab-failed" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert "where=" in tab
    failed = client.get(tab)
    assert _rows(failed.get_data(as_text=True)) == ["o-27", "o-21"]
    run = client.get("/run?id=o-05").get_data(as_text=True)
    assert 'id="search-attributes">amount=5, customer=c-1<' in run and "n5" in run
    bad = client.get("/?where=customer")
    assert bad.status_code == 400 and b"name=value" in bad.get_data()
