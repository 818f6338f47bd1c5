"""The web console: a small WSGI app over the same runs the `beluga` command works on.

    beluga --executor celery console --port 8080          # or: --store sqlite:///beluga.db --imports app

Pages: the runs, newest first, a page at a time (older and newer by an opaque keyset cursor), searched by
workflow id (prefix or exact) and by search attributes (`customer=c-42 amount>=10`), filtered by status,
stuck and type, with tabs whose counts match the rows
they list; one run: its status,
input, result or error (with traceback), what it waits on, its earlier (retried) runs and its history as
a timeline. Buttons signal, cancel, terminate, retry and reset a run, and apply one of those to the
runs ticked on the runs page (beluga/console/actions.py).

Writes need the console's token (`token=`, or the setting `BELUGA_CONSOLE_TOKEN`); without one the
console is read-only. A browser logs in once with the token (a signed, HttpOnly, SameSite=Strict cookie,
valid 12 hours, and a per-token form field against cross-site requests); a script sends
`Authorization: Bearer <token>` with its POST. A write without the token is refused with 403, and
nothing changes. Reading needs no token: serve the console on a private address or behind your own
authentication.

Mounted in an app (the path is the mount point; links follow it):

    from werkzeug.middleware.dispatcher import DispatcherMiddleware      # Flask
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/console": beluga.console.create_app(executor)})

    path("beluga/", include("beluga.contrib.django.urls"))              # Django (INSTALLED_APPS too)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
import time
from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

from beluga import history_json
from beluga.cli.errors import EXIT_USAGE, CLIError
from beluga.cli.target import Target
from beluga.console import pages
from beluga.console.actions import SelectionActions
from beluga.console.schedules import SchedulePages
from beluga.logs import get_logger

__all__ = ["Console", "create_app"]

log = get_logger("beluga.console")
COOKIE = "beluga_console"
SESSION_SECONDS = 12 * 3600
MAX_BODY = 1 << 20
Response = tuple[str, list[tuple[str, str]], bytes]
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store")]
_REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Request:
    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "") or "/"
        self.root = environ.get("SCRIPT_NAME", "").rstrip("/")
        self.query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        self._form: dict[str, str] | None = None

    def header(self, name: str) -> str:
        return str(self.environ.get("HTTP_" + name.upper().replace("-", "_"), ""))

    @property
    def secure(self) -> bool:
        return self.environ.get("wsgi.url_scheme") == "https"

    def cookie(self, name: str) -> str:
        try:
            jar = SimpleCookie(self.environ.get("HTTP_COOKIE", ""))
        except CookieError:
            return ""
        morsel = jar.get(name)
        return morsel.value if morsel is not None else ""

    def wants_html(self) -> bool:
        accept = self.header("Accept")
        return not accept or "text/html" in accept or "*/*" in accept and not self.header("Authorization")

    @property
    def form(self) -> dict[str, str]:
        """The POST body: a form (urlencoded) or a JSON object."""
        if self._form is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > MAX_BODY:
                raise HTTPError(413, f"the request body is larger than {MAX_BODY} bytes")
            raw = self.environ["wsgi.input"].read(length) if length > 0 else b""
            kind = self.environ.get("CONTENT_TYPE", "")
            if kind.startswith("application/json"):
                try:
                    data = json.loads(raw or b"{}")
                except ValueError as exc:
                    raise HTTPError(400, f"the request body is not valid JSON: {exc}") from None
                if not isinstance(data, dict):
                    raise HTTPError(400, "the request body must be a JSON object")
                self._form = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
            else:
                self._form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace"),
                                                           keep_blank_values=True).items()}
        return self._form


class Console(SchedulePages, SelectionActions):
    """The WSGI app. `target` is where the runs are (`beluga.cli.target.Target`)."""

    def __init__(self, target: Target, *, token: str | None = None, title: str = "Beluga") -> None:
        self.target = target
        self.token = token or None
        self.title = title

    # --- WSGI ---------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        req = Request(environ)
        try:
            status, headers, body = self.handle(req)
        except HTTPError as exc:
            status, headers, body = self._error(req, exc.status, str(exc))
        except Exception as exc:  # one line for the operator, the traceback in the log
            code, message = self._describe(exc)
            if code == 500:
                log.exception("console request %s %s failed", req.method, req.path)
            status, headers, body = self._error(req, code, message)
        start_response(f"{status}", [*headers, *SECURITY_HEADERS, ("Content-Length", str(len(body)))])
        return [body] if req.method != "HEAD" else [b""]

    def handle(self, req: Request) -> Response:
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("GET", "/"): self.runs, ("GET", "/run"): self.run, ("GET", "/run/export"): self.export,
            ("GET", "/login"): self.login_form, ("POST", "/login"): self.login, ("POST", "/logout"): self.logout,
            ("POST", "/run/signal"): self.signal, ("POST", "/run/cancel"): self.cancel,
            ("POST", "/run/terminate"): self.terminate, ("POST", "/run/retry"): self.retry,
            ("POST", "/run/reset"): self.reset, ("POST", "/runs/batch"): self.batch,
            ("GET", "/healthz"): self.healthz, ("GET", "/schedules"): self.schedules,
            ("GET", "/schedule"): self.schedule, ("POST", "/schedule/pause"): self.schedule_pause,
            ("POST", "/schedule/unpause"): self.schedule_unpause, ("POST", "/schedule/trigger"): self.schedule_trigger}
        method = "GET" if req.method == "HEAD" else req.method
        handler = routes.get((method, req.path))
        if handler is None:
            if any(path == req.path for _, path in routes):
                raise HTTPError(405, f"{req.method} is not allowed on {req.path}")
            raise HTTPError(404, f"no page {req.path}")
        return handler(req)

    # --- authentication ------------------------------------------------------------------------------
    def _sign(self, purpose: str) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), f"beluga-console:{purpose}".encode(), hashlib.sha256).hexdigest()

    def _session(self, expires: int) -> str:
        return f"{expires}.{self._sign(f'session:{expires}')}"

    def logged_in(self, req: Request) -> bool:
        if not self.token:
            return False
        value = req.cookie(COOKIE)
        expires, _, _ = value.partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(value, self._session(int(expires)))

    def _page(self, req: Request) -> pages.Page:
        writes = "read-only" if not self.token else "unlocked" if self.logged_in(req) else "locked"
        return pages.Page(req.root, where=f"{self.target.kind}: {self.target.url}", writes=writes,
                          csrf=self._sign("csrf") if writes == "unlocked" else None, title=self.title)

    def authorize(self, req: Request) -> None:
        """A write goes ahead only with the token: as a bearer token, or a logged-in browser's session
        with the form's CSRF field. Otherwise 403, before anything is read from or done to the run."""
        if not self.token:
            raise HTTPError(403, "this console is read-only (started without a token): nothing was changed. "
                                 "Start it with BELUGA_CONSOLE_TOKEN set to signal, cancel, terminate and retry runs")
        bearer = req.header("Authorization")
        if bearer:
            scheme, _, given = bearer.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
                return
            raise HTTPError(403, "wrong token in the Authorization header: nothing was changed")
        if self.logged_in(req) and hmac.compare_digest(str(req.form.get("csrf", "")).encode(),
                                                       self._sign("csrf").encode()):
            return
        raise HTTPError(403, "this action needs the console's token: log in, or send 'Authorization: Bearer "
                             "<token>'. Nothing was changed")

    def login_form(self, req: Request) -> Response:
        page = self._page(req)
        return _html(200, pages.login_page(page, next_url=_local(req.query.get("next"), page.url("/"))))

    def login(self, req: Request) -> Response:
        page = self._page(req)
        next_url = _local(req.form.get("next"), page.url("/"))
        if not self.token:
            return _html(403, pages.login_page(page, next_url=next_url))
        if not hmac.compare_digest(str(req.form.get("token", "")).encode(), self.token.encode()):
            return _html(403, pages.login_page(page, next_url=next_url, problem="That is not the console's token."))
        expires = int(time.time()) + SESSION_SECONDS
        cookie = (f"{COOKIE}={self._session(expires)}; Path={req.root or '/'}; Max-Age={SESSION_SECONDS}; HttpOnly; "
                  f"SameSite=Strict" + ("; Secure" if req.secure else ""))
        return "303 See Other", [("Location", next_url), ("Set-Cookie", cookie)], b""

    def logout(self, req: Request) -> Response:
        page = self._page(req)
        if self.token and self.logged_in(req):
            self.authorize(req)  # the CSRF field: another site cannot log an operator out either
        cookie = f"{COOKIE}=; Path={req.root or '/'}; Max-Age=0; HttpOnly; SameSite=Strict"
        return "303 See Other", [("Location", page.url("/")), ("Set-Cookie", cookie)], b""

    def healthz(self, req: Request) -> Response:
        """`ok` only while the runs can be read: one cheap read of the store (a run that does not exist),
        so a probe sees a Redis (or any store) that is down, frozen past its socket timeout, or refusing."""
        try:
            self.target.store.load_summary("beluga-healthz")
        except Exception as exc:  # noqa: BLE001 - any failure to read is "not healthy", said in one line
            return _text(503, f"cannot read the runs in {self.target.url}: {type(exc).__name__}: {exc}\n")
        return _text(200, "ok\n")

    # --- reading -------------------------------------------------------------------------------------
    def runs(self, req: Request) -> Response:
        """The runs: searched by workflow id (`q`, its prefix, or `match=exact`) and by search attributes
        (`where`: `beluga list --where` conditions, space-separated), filtered by status, type, `stuck`; a
        page of `limit` from `cursor` (opaque, keyset: any page costs about the first's)."""
        from beluga.cli.errors import CLIError
        from beluga.cli.runs import RunQuery, count_runs, list_page, where_of
        from beluga.core.records import WorkflowStatus

        status = req.query.get("status") or None
        if status is not None and status not in {s.value for s in WorkflowStatus}:
            raise HTTPError(400, f"unknown status {status!r}; one of {', '.join(s.value for s in WorkflowStatus)}")
        try:
            limit = max(1, min(int(req.query.get("limit") or 50), 500))
        except ValueError:
            raise HTTPError(400, "limit must be a number") from None
        search = (req.query.get("q") or "").strip()
        exact = req.query.get("match") == "exact"
        where_text = (req.query.get("where") or "").strip()
        try:
            where = where_of(shlex.split(where_text, posix=False))
        except (CLIError, ValueError) as exc:
            raise HTTPError(400, f"search attributes: {exc}") from None
        query = RunQuery(status=WorkflowStatus(status) if status else None, workflow_type=req.query.get("type") or None,
                         id_prefix=None if exact else search or None, workflow_id=search if exact and search else None,
                         stuck=bool(req.query.get("stuck")), archives=bool(req.query.get("all")), where=where)
        store = self.target.store
        runs = list_page(store, query, limit=limit, cursor=req.query.get("cursor") or None)
        body = pages.runs_page(self._page(req), runs, count_runs(store, query), query=query, search=search,
                               exact=exact, types=self._types(), limit=limit, flash=req.query.get("done"),
                               where=where_text)
        return _html(200, body)

    def _types(self) -> set[str]:
        from beluga.core.definitions import registry

        types = set(registry.workflows)
        if self.target.kind == "celery":
            try:
                types |= self.target.executor().fleet.known_workflows()  # type: ignore[attr-defined]
            except Exception:  # only the filter's choices: never fail the page for them
                pass
        return types

    def run(self, req: Request) -> Response:
        from beluga.cli.runs import RETRYABLE, earlier_runs, is_archive, waiting

        state = self._load(req.query.get("id"))
        wait = waiting(state, untaken=self.target.untaken) if state.status.is_open else None
        try:
            refresh = max(1, min(int(req.query.get("refresh") or 0), 60)) if req.query.get("refresh") else None
        except ValueError:
            refresh = None
        body = pages.run_page(self._page(req), state, wait, earlier_runs(self.target.store, state.workflow_id),
                              flash=req.query.get("done"), refresh=refresh,
                              retryable=state.status in RETRYABLE and not is_archive(state.workflow_id))
        return _html(200, body)

    def export(self, req: Request) -> Response:
        state = self._load(req.query.get("id"))
        body = history_json.dumps(history_json.export(state)).encode()
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in state.workflow_id) + ".json"
        return "200 OK", [("Content-Type", "application/json"),
                          ("Content-Disposition", f'attachment; filename="{name}"')], body

    def _load(self, workflow_id: str | None) -> Any:
        if not workflow_id:
            raise HTTPError(400, "which run? give its workflow id (?id=...)")
        state = self.target.store.load(workflow_id)
        if state is None:
            raise HTTPError(404, f"no workflow with id {workflow_id!r} in {self.target.url}")
        return state

    # --- writes --------------------------------------------------------------------------------------
    def _act(self, req: Request, what: str, act: Callable[[str], str]) -> Response:
        self.authorize(req)
        workflow_id = str(req.form.get("id") or "")
        if not workflow_id:
            raise HTTPError(400, f"which run to {what}? the form has no workflow id")
        done = act(workflow_id)  # the executor logs the write, naming `identity(req)`
        if req.wants_html():
            page = self._page(req)
            return "303 See Other", [("Location", page.url("/run", id=workflow_id, done=done))], b""
        return _text(200, done + "\n")

    def signal(self, req: Request) -> Response:
        from beluga.cli.commands import parse_json
        from beluga.cli.runs import open_run
        from beluga.core.records import Signal

        def act(workflow_id: str) -> str:
            name = str(req.form.get("name") or "").strip()
            if not name:
                raise HTTPError(400, "a signal needs a name")
            text = str(req.form.get("payload") or "").strip()
            payload = parse_json(text, "the payload") if text else None
            state = open_run(self.target, workflow_id, "signal")
            self.target.need_code(state.workflow_type, "signal")
            self.target.executor().signal(workflow_id, Signal(name, payload, sender_id="beluga-console"),
                                          identity=identity(req))
            return f"signal {name!r} sent to {workflow_id}"

        return self._act(req, "signal", act)

    def cancel(self, req: Request) -> Response:
        from beluga.cli.runs import open_run

        def act(workflow_id: str) -> str:
            state = open_run(self.target, workflow_id, "cancel")
            self.target.need_code(state.workflow_type, "cancel (the workflow's cleanup runs here)")
            self.target.executor().cancel(workflow_id, identity=identity(req))
            return f"cancellation requested for {workflow_id}"

        return self._act(req, "cancel", act)

    def terminate(self, req: Request) -> Response:
        from beluga.cli.runs import open_run

        def act(workflow_id: str) -> str:
            reason = str(req.form.get("reason") or "").strip() or "terminated from the console"
            open_run(self.target, workflow_id, "terminate")
            self.target.executor().terminate(workflow_id, reason, identity=identity(req))
            return f"terminated {workflow_id}: {reason}"

        return self._act(req, "terminate", act)

    def retry(self, req: Request) -> Response:
        from beluga.cli.runs import retry_run

        def act(workflow_id: str) -> str:
            retried = retry_run(self.target, workflow_id, identity(req))
            return (f"retried {workflow_id}: new run {retried.handle.run_id}; the old run is kept as "
                    f"{retried.kept}")

        return self._act(req, "retry", act)

    # --- errors --------------------------------------------------------------------------------------
    def _describe(self, exc: Exception) -> tuple[int, str]:
        from beluga.cli import describe
        from beluga.core import errors

        message, _ = describe(exc, self.target)
        if isinstance(exc, CLIError):
            if exc.code == EXIT_USAGE:
                return 400, message
            return (404 if message.startswith("no workflow with id") else 409), message
        if isinstance(exc, errors.WorkflowNotFound):
            return 404, message
        if isinstance(exc, (errors.WorkflowNotRunning, errors.WorkflowAlreadyStarted)):
            return 409, message
        if isinstance(exc, (errors.SerializationError, errors.ConfigurationError)):
            return 400, message
        if isinstance(exc, errors.ServiceUnavailable) or message.startswith("cannot reach"):
            return 503, message
        return 500, message

    def _error(self, req: Request, status: int, message: str) -> Response:
        if req.wants_html():
            return _html(status, pages.error_page(self._page(req), status, message))
        return _text(status, f"{status} {_REASONS.get(status, 'Error')}: {message}\n")


def identity(req: Request) -> str:
    """Who a console write is recorded as: the user the web server or the app authenticated (WSGI's
    `REMOTE_USER`: set by the Django view from its logged-in user, or by a proxy's authentication in front
    of `beluga console`; a client cannot set it with a header), else `console@<client address>`."""
    user = str(req.environ.get("REMOTE_USER") or "").strip()
    return user if user else f"console@{req.environ.get('REMOTE_ADDR') or 'unknown'}"


def _html(status: int, body: str) -> Response:
    return f"{status} {_REASONS.get(status, 'OK')}", [("Content-Type", "text/html; charset=utf-8")], body.encode()


def _text(status: int, body: str) -> Response:
    return f"{status} {_REASONS.get(status, 'OK')}", [("Content-Type", "text/plain; charset=utf-8")], body.encode()


def _local(url: str | None, default: str) -> str:
    """A redirect target on this site only: a path (no scheme, no host, no `//`) of printable ASCII, so
    that nothing in it can end the `Location` header and start another (`%0D%0A` arrives decoded)."""
    if not url or not all("!" <= c <= "~" for c in url):
        return default
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//") or "\\" in url:
        return default
    return url


def create_app(source: Any = None, *, token: str | None = None, read_only: bool = False, imports: str | None = None,
               title: str = "Beluga") -> Console:
    """The console as a WSGI app. `source`: a `DurableExecutor` you made (the fleet's client, or an
    in-process executor), a store URL (`sqlite:///beluga.db`, `redis://...`; pass `imports` for signal,
    cancel and retry, which run the workflow's code in this process), or None for the Celery fleet of
    the settings. `token`: the token for writes (default: the setting `BELUGA_CONSOLE_TOKEN`); with none,
    or `read_only=True`, the console is read-only."""
    from beluga.settings import Settings

    if source is None or source == "celery":
        target = Target(store_url=None, executor="celery", imports=imports)
    elif isinstance(source, str):
        target = Target(store_url=source, executor=None, imports=imports)
    else:
        target = Target.for_executor(source)
    if token is None and not read_only:
        token = target.settings.console_token if target.kind == "celery" else Settings.load().console_token
    return Console(target, token=None if read_only else token, title=title)
