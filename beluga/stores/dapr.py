"""`DaprStore`: runs in a Dapr state store, through the sidecar's state HTTP API (`/v1.0/state/{store}`).

Needs only the standard library. The state store component must support ETags and transactions
(Redis, PostgreSQL, CosmosDB, ... do; see Dapr's table of state stores).

Keys (Dapr forbids `||` in keys; ids are used verbatim otherwise, and read only through the bulk
endpoint, so no id is ever put in a URL):

- `<prefix>/r/<workflow id>`: the run record (`beluga.stores._records.RunRecord`, base64 in a JSON
  string): run id, version, status, summary and the newest events.
- `<prefix>/c/<run id>/<first event id>/<workflow id>`: sealed chunks of older events.
- `<prefix>/index/<n>` (n < `index_shards`): the listing index, a JSON object mapping each workflow id
  whose crc32 falls in shard n to `[status, workflow type, created_at]`.

Every write is one call of the transaction endpoint (`/v1.0/state/{store}/transaction`), with
`concurrency: first-write` on the run records and index shards it changes: an existing key is written
only if its ETag is still the one read, a new key only if it does not exist yet. An append, a create
(refused while the id holds an open run), a continue-as-new (replacing exactly the run it names), a
seal of the tail into a chunk and the index update all commit together or not at all; a batch of
appends is one transaction. Dapr answers an ETag mismatch inside a transaction with a 500
(`ERR_STATE_TRANSACTION`), like any other failure of the store, so after a failed transaction the store
reads the keys again: if one it had conditioned on changed, the write lost a race (re-checked, and
refused or retried); if none did, the error is raised. Dapr's query API is alpha and optional, hence the
index of its own. Delete removes the record, its chunks and its index entry in one transaction.
"""

from __future__ import annotations

import base64
import builtins
import http.client
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from beluga.core.errors import ConfigurationError
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.stores._common import (
    DEFAULT_FILTER,
    accepts,
    check_create,
    count_by_status,
    counting,
    id_matches,
    in_window,
    matches,
)
from beluga.stores._records import DEFAULT_TAIL, RunRecord, advance, new_record, prepare
from beluga.stores.base import WorkflowStore

_FIRST_WRITE = {"concurrency": "first-write", "consistency": "strong"}
_RETRIES = 50
_CACHE_SIZE = 10_000


class DaprError(RuntimeError):
    """The sidecar answered a state call with an error."""

    def __init__(self, status: int, body: bytes, what: str) -> None:
        try:
            detail = json.loads(body)
        except ValueError:
            detail = {"message": body.decode(errors="replace")}
        self.status = status
        self.code = detail.get("errorCode", "") if isinstance(detail, dict) else ""
        message = detail.get("message", "") if isinstance(detail, dict) else str(detail)
        super().__init__(f"Dapr state API: {what} failed with HTTP {status} {self.code}: {message}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


@dataclass
class _Batch:
    """The keys one transaction writes, with the ETags it is conditional on."""

    ops: list[dict[str, Any]] = field(default_factory=list)
    records: dict[str, tuple[str | None, RunRecord | None]] = field(default_factory=dict)  # wid -> (etag, new)
    shards: dict[int, tuple[str | None, dict[str, list[Any]]]] = field(default_factory=dict)

    def upsert(self, key: str, value: Any, etag: str | None, conditional: bool) -> None:
        request: dict[str, Any] = {"key": key, "value": value}
        if conditional:
            request["options"] = dict(_FIRST_WRITE)
            if etag is not None:
                request["etag"] = etag
        self.ops.append({"operation": "upsert", "request": request})

    def delete(self, key: str, etag: str | None = None) -> None:
        request: dict[str, Any] = {"key": key}
        if etag is not None:
            request["etag"] = etag
            request["options"] = dict(_FIRST_WRITE)
        self.ops.append({"operation": "delete", "request": request})


class DaprStore(WorkflowStore):
    """`url`: the sidecar's HTTP endpoint (default `http://127.0.0.1:3500`; `DAPR_HTTP_PORT` is what
    Dapr sets for apps). `store`: the state store component's name. `prefix` starts every key."""

    def __init__(self, url: str = "http://127.0.0.1:3500", *, store: str = "statestore", prefix: str = "beluga",
                 index_shards: int = 16, timeout: float = 10.0, tail: int = DEFAULT_TAIL,
                 api_token: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"Dapr sidecar URL must be http(s)://host:port, not {url!r}")
        if "||" in prefix or not prefix:
            raise ConfigurationError("Dapr store prefix must be non-empty and free of '||'")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._base = f"{parts.path.rstrip('/')}/v1.0/state/{quote(store, safe='')}"
        self.store_name = store
        self.prefix = prefix
        self.index_shards = index_shards
        self.timeout = timeout
        self.tail = tail
        self._headers = {"Content-Type": "application/json"}
        if api_token:
            self._headers["dapr-api-token"] = api_token
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[str, RunRecord]] = OrderedDict()

    # --- HTTP -----------------------------------------------------------------------------------------
    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self.timeout)
        return conn

    def _request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body).encode()
        for attempt in range(2):  # one retry on a keep-alive connection the server had closed
            conn = self._conn()
            try:
                conn.request(method, self._base + path, body=payload, headers=self._headers)
                response = conn.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _bulk(self, keys: list[str]) -> dict[str, tuple[str, Any]]:
        """key -> (etag, value) for the keys that exist."""
        if not keys:
            return {}
        status, body = self._request("POST", "/bulk", {"keys": keys, "parallelism": 16})
        if status != 200:
            raise DaprError(status, body, "bulk get")
        found = {}
        for item in json.loads(body):
            if item.get("data") is not None and not item.get("error"):
                found[item["key"]] = (item.get("etag"), item["data"])
            elif item.get("error"):
                raise DaprError(500, json.dumps({"message": item["error"]}).encode(), f"get of {item['key']}")
        return found

    def _transact(self, ops: list[dict[str, Any]]) -> DaprError | None:
        """None when committed; the error when the store refused it (an ETag mismatch, or another
        failure that the caller tells apart by reading the keys again)."""
        status, body = self._request("POST", "/transaction", {"operations": ops})
        if status in (200, 204):
            return None
        if status in (409, 500):
            return DaprError(status, body, "transaction")
        raise DaprError(status, body, "transaction")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- keys -----------------------------------------------------------------------------------------
    def _rkey(self, workflow_id: str) -> str:
        return f"{self.prefix}/r/{workflow_id}"

    def _ckey(self, workflow_id: str, run_id: str, first: int) -> str:
        return f"{self.prefix}/c/{run_id}/{first}/{workflow_id}"

    def _shard(self, workflow_id: str) -> int:
        return zlib.crc32(workflow_id.encode()) % self.index_shards

    def _skey(self, shard: int) -> str:
        return f"{self.prefix}/index/{shard}"

    # --- reads ----------------------------------------------------------------------------------------
    def _records(self, workflow_ids: list[str]) -> dict[str, tuple[str, RunRecord]]:
        found = self._bulk([self._rkey(w) for w in workflow_ids])
        out = {}
        for wid in workflow_ids:
            hit = found.get(self._rkey(wid))
            if hit is not None:
                out[wid] = (hit[0], RunRecord.decode(_unb64(hit[1])))
        with self._lock:
            for wid in workflow_ids:
                if wid in out:
                    self._cache[wid] = out[wid]
                    self._cache.move_to_end(wid)
                else:
                    self._cache.pop(wid, None)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return out

    def _shards(self, shards: builtins.list[int]) -> dict[int, tuple[str | None, dict[str, list[Any]]]]:
        found = self._bulk([self._skey(n) for n in shards])
        return {n: found.get(self._skey(n), (None, {})) for n in shards}

    def _sealed(self, wid: str, record: RunRecord, after: int = 0) -> tuple[int, builtins.list[bytes]]:
        wanted = [(first, last) for first, last in record.chunk_ranges() if last > after]
        if not wanted:
            return record.sealed + 1, []
        keys = [self._ckey(wid, record.run_id, first) for first, _ in wanted]
        found = self._bulk(keys)
        events: list[bytes] = []
        for key in keys:
            events.extend(_unb64(e) for e in found[key][1])
        return wanted[0][0], events

    def load(self, workflow_id: str) -> WorkflowState | None:
        hit = self._records([workflow_id]).get(workflow_id)
        if hit is None:
            return None
        _, sealed = self._sealed(workflow_id, hit[1])
        return hit[1].state(sealed)

    def load_summary(self, workflow_id: str) -> WorkflowState | None:
        hit = self._records([workflow_id]).get(workflow_id)
        return None if hit is None else hit[1].summary_state()

    def history(self, workflow_id: str, after: int = 0) -> builtins.list[Event]:
        hit = self._records([workflow_id]).get(workflow_id)
        if hit is None:
            return []
        first, sealed = self._sealed(workflow_id, hit[1], after)
        return hit[1].events_after(sealed, after, first)

    def list(self, filter: WorkflowFilter | None = None) -> builtins.list[WorkflowState]:
        f = filter or DEFAULT_FILTER
        backward = f.before is not None and f.after is None
        entries = sorted(self._candidates(f), reverse=not backward)
        out: list[WorkflowState] = []
        page = max(f.limit, 0)
        while entries and len(out) < f.limit:
            chosen, entries = entries[:page], entries[page:]
            records = self._records([wid for _, wid in chosen])
            for _, wid in chosen:  # the record is the truth; the index only finds candidates
                hit = records.get(wid)
                if hit is not None and matches(f, hit[1].summary_state()) and len(out) < f.limit:
                    _, sealed = self._sealed(wid, hit[1])
                    out.append(hit[1].state(sealed))
        return out[::-1] if backward else out

    def counts(self, filter: WorkflowFilter | str | None = None) -> dict[str, int]:
        """From the index, but for `stuck` (an error in the summary) and `where` (search attributes, kept in
        the summary: not indexed here, filtered by reading the records)."""
        f = counting(filter)
        if f.stuck is None and not f.where:
            out = {status.value: 0 for status in WorkflowStatus}
            for _, _, status in self._candidates(f, with_status=True):
                out[status] += 1
            return out
        records = self._records([wid for _, wid in self._candidates(f)])
        return count_by_status(f, (record.summary_state() for _, record in records.values()))

    def _candidates(self, f: WorkflowFilter, *, with_status: bool = False) -> builtins.list[Any]:
        """(created, workflow id) of the runs the index lists under the filter (and its cursors), with
        their status when asked; `stuck` needs them open."""
        status = WorkflowStatus.RUNNING.value if f.stuck and f.status is None else f.status
        out: builtins.list[Any] = []
        for _, index in self._shards(list(range(self.index_shards))).values():
            for wid, (listed, wtype, created) in index.items():
                if ((status is None or listed == status) and (f.workflow_type is None or wtype == f.workflow_type)
                        and id_matches(f, wid) and in_window(f, (created, wid))):
                    out.append((created, wid, listed) if with_status else (created, wid))
        return out

    # --- writes ---------------------------------------------------------------------------------------
    def _index_ops(self, batch: _Batch, shards: dict[int, tuple[str | None, dict[str, list[Any]]]]) -> None:
        for n, (etag, index) in shards.items():
            batch.upsert(self._skey(n), index, etag, conditional=True)

    def _run_ops(self, batch: _Batch, wid: str, etag: str | None, record: RunRecord,
                 chunks: builtins.list[tuple[int, builtins.list[bytes]]]) -> None:
        for first, events in chunks:
            batch.upsert(self._ckey(wid, record.run_id, first), [_b64(e) for e in events], None, conditional=False)
        batch.upsert(self._rkey(wid), _b64(record.encode()), etag, conditional=True)

    def _drop_chunks(self, batch: _Batch, wid: str, record: RunRecord) -> None:
        for first in record.chunks:
            batch.delete(self._ckey(wid, record.run_id, first))

    def create(self, state: WorkflowState, *, replace_run_id: str | None = None) -> None:
        record, chunks = new_record(state, self.tail)
        self._replace(state.workflow_id, record, chunks, replace_run_id, check=True)

    def save(self, state: WorkflowState) -> None:
        record, chunks = new_record(state, self.tail)
        self._replace(state.workflow_id, record, chunks, None, check=False)

    def _replace(self, wid: str, record: RunRecord, chunks: builtins.list[tuple[int, builtins.list[bytes]]],
                 replace_run_id: str | None, *, check: bool) -> None:
        n = self._shard(wid)
        for _ in range(_RETRIES):
            current = self._records([wid]).get(wid)
            if check and current is not None:
                check_create(wid, current[1].run_id, current[1].status, replace_run_id)
            shard_etag, index = self._shards([n])[n]
            index = {**index, wid: [record.status, record.workflow_type, record.created_at]}
            batch = _Batch()
            if current is not None:
                self._drop_chunks(batch, wid, current[1])
            self._run_ops(batch, wid, None if current is None else current[0], record, chunks)
            self._index_ops(batch, {n: (shard_etag, index)})
            error = self._transact(batch.ops)
            if error is None:
                with self._lock:
                    self._cache.pop(wid, None)
                return
            self._raise_unless_changed(error, {wid: None if current is None else current[0]}, {n: shard_etag})
        raise RuntimeError(f"could not write workflow {wid!r}: other writers kept changing it")

    def delete(self, workflow_id: str) -> None:
        n = self._shard(workflow_id)
        for _ in range(_RETRIES):
            current = self._records([workflow_id]).get(workflow_id)
            shard_etag, index = self._shards([n])[n]
            if current is None and workflow_id not in index:
                return
            batch = _Batch()
            if current is not None:
                self._drop_chunks(batch, workflow_id, current[1])
                batch.delete(self._rkey(workflow_id), current[0])
            self._index_ops(batch, {n: (shard_etag, {k: v for k, v in index.items() if k != workflow_id})})
            error = self._transact(batch.ops)
            if error is None:
                with self._lock:
                    self._cache.pop(workflow_id, None)
                return
            self._raise_unless_changed(error, {workflow_id: None if current is None else current[0]},
                                       {n: shard_etag})
        raise RuntimeError(f"could not delete workflow {workflow_id!r}: other writers kept changing it")

    def _raise_unless_changed(self, error: DaprError, records: dict[str, str | None],
                              shards: dict[int, str | None]) -> None:
        """After a failed transaction: if none of the keys it was conditional on changed, it failed for
        another reason, which is raised."""
        now = self._records(list(records))
        if any((now[w][0] if w in now else None) != etag for w, etag in records.items()):
            return
        found = self._shards(list(shards))
        if any(found[n][0] != etag for n, etag in shards.items()):
            return
        raise error

    def append(self, appends: Sequence[Append]) -> builtins.list[str]:
        if not appends:
            return []
        prepared = prepare(appends)
        wids = list(dict.fromkeys(a.workflow_id for a in appends))
        with self._lock:
            known = {w: self._cache[w] for w in wids if w in self._cache}
        fresh = False
        for _ in range(_RETRIES):
            if len(known) < len(wids) and not fresh:
                known.update(self._records([w for w in wids if w not in known]))
            batch, refused, shards_needed = self._decide(prepared, known)
            if refused and not fresh:
                known, fresh = self._records(wids), True  # refuse only on what the store holds now
                continue
            if not batch.records:
                return refused
            shards = self._shards(sorted(shards_needed)) if shards_needed else {}
            for n, (etag, index) in shards.items():
                for wid, (_, new) in batch.records.items():
                    if self._shard(wid) == n and new is not None:
                        index = {**index, wid: [new.status, new.workflow_type, new.created_at]}
                shards[n] = (etag, index)
            self._index_ops(batch, shards)
            error = self._transact(batch.ops)
            if error is None:
                with self._lock:
                    for wid in batch.records:
                        self._cache.pop(wid, None)  # the new ETags are unknown until read
                return refused
            self._raise_unless_changed(error, {w: known[w][0] for w in batch.records},
                                       {n: e for n, (e, _) in shards.items()})
            known, fresh = self._records(wids), True
        raise RuntimeError("could not append: other writers kept changing the same runs")

    def _decide(self, prepared: builtins.list[tuple[Append, builtins.list[bytes]]],
                known: dict[str, tuple[str, RunRecord]]) -> tuple[_Batch, builtins.list[str], set[int]]:
        batch = _Batch()
        refused: list[str] = []
        shards: set[int] = set()
        current: dict[str, tuple[str, RunRecord]] = dict(known)
        for a, events in prepared:
            hit = current.get(a.workflow_id)
            if hit is None or not accepts(hit[1].run_id, hit[1].version, a):
                refused.append(a.workflow_id)
                continue
            etag, record = hit
            new, seal = advance(record, a, events, self.tail)
            if seal is not None:
                first, sealed = seal
                batch.upsert(self._ckey(a.workflow_id, record.run_id, first), [_b64(e) for e in sealed], None,
                             conditional=False)
            if new.status != record.status:
                shards.add(self._shard(a.workflow_id))
            current[a.workflow_id] = (etag, new)
            batch.records[a.workflow_id] = (known[a.workflow_id][0], new)
        for wid, (etag, new) in batch.records.items():
            assert new is not None
            batch.upsert(self._rkey(wid), _b64(new.encode()), etag, conditional=True)
        return batch, refused, shards
