"""A stand-in for a Dapr sidecar's state API, for tests: no `daprd` can be installed here, so this small
server implements the documented HTTP contract (docs.dapr.io, "State management API reference") over
a transactional in-memory store, as daprd does over a state store component with ETag and transaction
support:

- `POST /v1.0/state/{store}`: save an array of `{key, value, etag?, options?}` → 204. With an ETag that
  is not the key's current one (or a key that is gone), or with `concurrency: first-write` and no ETag
  on a key that exists (the component conformance suite's "first-write without etag"), nothing is saved
  and the answer is 409 `ERR_STATE_SAVE` ("possible etag mismatch"), as daprd maps an ETag mismatch.
  Without an ETag and not first-write, the last write wins.
- `GET /v1.0/state/{store}/{key}` → 200 with the JSON value and an `ETag` header, 204 when missing.
- `POST|PUT /v1.0/state/{store}/bulk` `{keys, parallelism}` → 200 `[{key, data, etag}]` (`{key}` alone
  for a missing key).
- `DELETE /v1.0/state/{store}/{key}` (`If-Match: etag` optional) → 204; mismatch → 409 `ERR_STATE_DELETE`.
- `POST|PUT /v1.0/state/{store}/transaction` `{operations: [{operation: upsert|delete, request}]}` →
  204, all operations or none; any failed condition → 500 `ERR_STATE_TRANSACTION`, which is what daprd
  answers for every failure of a transaction, an ETag mismatch included.
- An unknown store name → 400 `ERR_STATE_STORE_NOT_FOUND`. ETags are opaque strings (here a counter).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


class Conflict(Exception):
    pass


class StateStore:
    def __init__(self) -> None:
        self.data: dict[str, tuple[str, bytes]] = {}  # key -> (etag, JSON value)
        self.lock = threading.Lock()
        self._etags = itertools.count(1)
        self.transactions = 0
        self.conflicts = 0

    def _check_set(self, request: dict[str, Any]) -> None:
        key, etag = request["key"], request.get("etag")
        current = self.data.get(key)
        first_write = (request.get("options") or {}).get("concurrency") == "first-write"
        if etag not in (None, ""):
            if current is None or current[0] != etag:
                raise Conflict(f"possible etag mismatch on key {key}")
        elif first_write and current is not None:
            raise Conflict(f"possible etag mismatch: first-write without etag on existing key {key}")

    def _check_delete(self, request: dict[str, Any]) -> None:
        key, etag = request["key"], request.get("etag")
        if etag not in (None, ""):
            current = self.data.get(key)
            if current is None or current[0] != etag:
                raise Conflict(f"possible etag mismatch on key {key}")

    def _set(self, request: dict[str, Any]) -> None:
        self.data[request["key"]] = (str(next(self._etags)), json.dumps(request.get("value")).encode())

    def save(self, items: list[dict[str, Any]]) -> None:
        with self.lock:
            for item in items:  # daprd saves each item on its own (bulk save is not a transaction)
                self._check_set(item)
                self._set(item)

    def delete(self, key: str, etag: str | None) -> None:
        with self.lock:
            self._check_delete({"key": key, "etag": etag})
            self.data.pop(key, None)

    def transaction(self, operations: list[dict[str, Any]]) -> None:
        with self.lock:
            self.transactions += 1
            for op in operations:  # check every condition first: all or nothing
                if op["operation"] == "upsert":
                    self._check_set(op["request"])
                elif op["operation"] == "delete":
                    self._check_delete(op["request"])
                else:
                    raise ValueError(f"operation type {op['operation']} not supported")
            for op in operations:
                if op["operation"] == "upsert":
                    self._set(op["request"])
                else:
                    self.data.pop(op["request"]["key"], None)

    def get(self, key: str) -> tuple[str, bytes] | None:
        with self.lock:
            return self.data.get(key)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        self._reply(status, json.dumps({"errorCode": code, "message": message}).encode())

    def _route(self) -> tuple[StateStore, str] | None:
        path = urlsplit(self.path).path
        prefix = "/v1.0/state/"
        if not path.startswith(prefix):
            self._error(404, "ERR_NOT_FOUND", f"no route {path}")
            return None
        name, _, rest = path[len(prefix):].partition("/")
        store = self.server.stores.get(unquote(name))
        if store is None:
            self._error(400, "ERR_STATE_STORE_NOT_FOUND", f"state store {unquote(name)} is not found")
            return None
        return store, unquote(rest)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def do_GET(self) -> None:
        route = self._route()
        if route is None:
            return
        store, key = route
        hit = store.get(key)
        if hit is None:
            self._reply(204)
        else:
            self._reply(200, hit[1], {"ETag": hit[0]})

    def do_DELETE(self) -> None:
        route = self._route()
        if route is None:
            return
        store, key = route
        try:
            store.delete(key, self.headers.get("If-Match"))
        except Conflict as exc:
            store.conflicts += 1
            self._error(409, "ERR_STATE_DELETE", f"failed deleting state with key {key}: {exc}")
            return
        self._reply(204)

    def do_POST(self) -> None:
        route = self._route()
        if route is None:
            return
        store, rest = route
        try:
            body = self._body()
        except ValueError as exc:
            self._error(400, "ERR_MALFORMED_REQUEST", str(exc))
            return
        if rest == "":
            try:
                store.save(body)
            except Conflict as exc:
                store.conflicts += 1
                self._error(409, "ERR_STATE_SAVE", f"failed saving state in state store: {exc}")
                return
            self._reply(204)
        elif rest == "bulk":
            out = []
            for key in body["keys"]:
                hit = store.get(key)
                out.append({"key": key} if hit is None else {"key": key, "data": json.loads(hit[1]), "etag": hit[0]})
            self._reply(200, json.dumps(out).encode())
        elif rest == "transaction":
            try:
                store.transaction(body["operations"])
            except (Conflict, ValueError, KeyError) as exc:
                store.conflicts += isinstance(exc, Conflict)
                self._error(500, "ERR_STATE_TRANSACTION", f"error while executing state transaction: {exc}")
                return
            self._reply(204)
        else:
            self._error(404, "ERR_NOT_FOUND", f"no route {self.path}")

    do_PUT = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stores: dict[str, StateStore]


@contextmanager
def dapr_state_server(*names: str) -> Iterator[tuple[str, dict[str, StateStore]]]:
    """A sidecar stand-in on a free loopback port, serving the named state stores; yields (url, stores)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.stores = {name: StateStore() for name in names}
    thread = threading.Thread(target=server.serve_forever, name="dapr-state-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.stores
    finally:
        server.shutdown()
        server.server_close()
