"""The web console (a WSGI app, `beluga.console`) served through a Django view.

Reading the console's pages needs a logged-in staff user (Django's auth), unless the setting
`BELUGA_CONSOLE_PUBLIC = True`; writes need the console's own token (`BELUGA_CONSOLE_TOKEN`) as
everywhere, and are exempt from Django's CSRF middleware because the console checks its own CSRF field."""

from __future__ import annotations

import io
import threading
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt

_lock = threading.Lock()
_app: list[Any] = []


def get_console() -> Any:
    """The console on the fleet of the project's settings, made on first use."""
    with _lock:
        if not _app:
            from beluga.console import create_app

            _app.append(create_app())
        return _app[0]


@csrf_exempt
def console(request: HttpRequest, path: str = "") -> HttpResponse:
    if not getattr(settings, "BELUGA_CONSOLE_PUBLIC", False):
        user = getattr(request, "user", None)
        if user is None or not (user.is_authenticated and user.is_staff):
            return HttpResponseForbidden("the Beluga console needs a logged-in staff user "
                                         "(or BELUGA_CONSOLE_PUBLIC = True)", content_type="text/plain")
    body = request.body
    environ = dict(request.environ)
    prefix = request.path[: len(request.path) - len(path)] if path else request.path
    environ.update({"SCRIPT_NAME": prefix.rstrip("/"), "PATH_INFO": "/" + path, "wsgi.input": io.BytesIO(body),
                    "CONTENT_LENGTH": str(len(body))})
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:  # who the console records as doing its writes
        environ["REMOTE_USER"] = user.get_username()
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started["status"], started["headers"] = status, headers

    chunks = get_console()(environ, start_response)
    response = HttpResponse(b"".join(chunks), status=int(started["status"].split()[0]))
    for name, value in started["headers"]:
        if name.lower() != "content-length":
            response[name] = value
    return response
