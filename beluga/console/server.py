"""`beluga console`: the console on a small threaded WSGI server of the standard library."""

from __future__ import annotations

import signal
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request that went wrong, naming its method and path only: a query string (or a
        form) may carry a token, and no token is ever written to a log."""
        if str(code)[:1] in ("4", "5"):
            path = str(getattr(self, "path", "") or "").split("?", 1)[0]
            self.log_message("%s %s %s", getattr(self, "command", None) or "-", path or "-", code)

    def log_error(self, format: str, *args: Any) -> None:
        """A request that could not be parsed: its raw line (which may hold a token) stays out of the log;
        `log_request` then names its status."""

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"beluga console: {self.address_string()} {format % args}\n")


def serve(app: Any, host: str, port: int, *, banner: str = "") -> None:
    """Serve `app` until Ctrl-C or SIGTERM."""
    server = make_server(host, port, app, server_class=_Server, handler_class=_Handler)
    stopping = threading.Event()

    def stop(*_: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, stop)
    if banner:
        print(banner.format(port=server.server_port), flush=True)
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
