"""`NatsStore`: runs in a NATS JetStream key-value bucket, one bucket per prefix (`nats-py`).

Keys (workflow and run ids are escaped into KV-safe tokens, see `token`):

- `r.<workflow id>`: the run record (`beluga.stores._records.RunRecord`): run id, version, status,
  summary and the newest events. Every change of a run is one revision-checked write of this key
  (`KeyValue.update(key, value, last=revision)`, JetStream's `Nats-Expected-Last-Subject-Sequence`):
  an append is accepted only if the record is still the revision whose run id and version it was
  checked against; `create` uses `KeyValue.create` (refused when the key exists) or an update of the
  revision it found closed; continue-as-new replaces the record of the very run it names in one
  such write.
- `c.<workflow id>.<run id>.<first event id>`: sealed chunks of older events, written once before the
  record that lists them (see `_records`).

Listing reads the last revision of every `r.*` key (a pull consumer of each key's last message, one
pass over the bucket's index of subjects), filters and sorts by the record's own fields, and then
fetches the histories of the runs it returns. Delete purges the record and every chunk of the workflow id.

JetStream acknowledges a write once its leader stored it (file storage, `sync_interval` governs when it
reaches the disk: set `sync_interval: always` in the server's config to fsync each write). Requires the
`nats` extra: `pip install 'beluga-workflows[nats]'`.
"""

from __future__ import annotations

import asyncio
import builtins
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from beluga.core.errors import ConfigurationError

try:
    import nats
    from nats.js import api as js_api
    from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
except ImportError as exc:  # pragma: no cover - exercised by simulating the missing client
    raise ConfigurationError("the 'nats' store needs the nats-py client: pip install 'beluga-workflows[nats]'") from exc

from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState
from beluga.stores._common import DEFAULT_FILTER, accepts, check_create, count_by_status, page
from beluga.stores._loop import LoopThread
from beluga.stores._records import (
    DEFAULT_TAIL,
    RunRecord,
    advance,
    decode_chunk,
    encode_chunk,
    new_record,
    prepare,
)
from beluga.stores.base import WorkflowStore

_SAFE = re.compile(rb"[A-Za-z0-9_-]")
_BUCKET = re.compile(r"^[A-Za-z0-9_-]+$")
_CACHE_SIZE = 10_000
_RETRIES = 50


def token(text: str) -> str:
    """A KV-key token for any string: [A-Za-z0-9_-] kept, every other byte as `=XX` (reversible, and
    never a `.`, `*` or `>`, so ids cannot add subject levels or wildcards)."""
    if not text:
        return "="
    raw = text.encode()
    return "".join(chr(b) if _SAFE.match(bytes((b,))) else f"={b:02X}" for b in raw)


class NatsStore(WorkflowStore):
    """`url`: the NATS server(s), e.g. `nats://127.0.0.1:4222` (several: comma-separated). `prefix` names
    the KV bucket. `replicas` applies when the bucket is created. `tail` bounds the events kept in a run's
    record before they are sealed into a chunk. Other keyword arguments go to `nats.connect`."""

    def __init__(self, url: str = "nats://127.0.0.1:4222", *, prefix: str = "beluga", replicas: int = 1,
                 timeout: float = 10.0, tail: int = DEFAULT_TAIL, **connect_options: Any) -> None:
        if not _BUCKET.match(prefix):
            raise ConfigurationError(f"NATS store prefix {prefix!r} must be letters, digits, '-' or '_' "
                                     "(it names the KV bucket)")
        self.url = url
        self.prefix = prefix
        self.timeout = timeout
        self.tail = tail
        self._revisions: OrderedDict[str, tuple[int, RunRecord]] = OrderedDict()  # loop thread only
        self._loop = LoopThread(f"beluga-nats-{prefix}")
        try:
            self._run(self._open(url, replicas, connect_options))
        except BaseException:
            self._loop.stop()
            raise

    # --- plumbing -----------------------------------------------------------------------------------
    def _run(self, coro: Any) -> Any:
        return self._loop.run(coro)

    async def _open(self, url: str, replicas: int, options: dict[str, Any]) -> None:
        options.setdefault("connect_timeout", self.timeout)
        options.setdefault("max_reconnect_attempts", -1)
        self._nc = await nats.connect(url.split(","), **options)
        self._js = self._nc.jetstream(timeout=self.timeout)
        try:
            self._kv = await self._js.key_value(self.prefix)
        except BucketNotFoundError:
            # history=1: the bucket keeps only the newest revision of each key; direct=False: reads go to
            # the stream's leader, so a read never returns a revision older than an acknowledged write.
            self._kv = await self._js.create_key_value(js_api.KeyValueConfig(
                bucket=self.prefix, history=1, storage=js_api.StorageType.FILE, replicas=replicas,
                direct=False))
        self._stream = f"KV_{self.prefix}"

    def close(self) -> None:
        if self._loop.loop.is_closed():
            return
        try:
            self._run(self._nc.close())
        finally:
            self._loop.stop()

    @staticmethod
    def _rkey(workflow_id: str) -> str:
        return "r." + token(workflow_id)

    @staticmethod
    def _ckey(workflow_id: str, run_id: str, first: int) -> str:
        return f"c.{token(workflow_id)}.{token(run_id)}.{first}"

    def _remember(self, workflow_id: str, revision: int, record: RunRecord | None) -> None:
        if record is None:
            self._revisions.pop(workflow_id, None)
            return
        self._revisions[workflow_id] = (revision, record)
        self._revisions.move_to_end(workflow_id)
        while len(self._revisions) > _CACHE_SIZE:
            self._revisions.popitem(last=False)

    # --- reads --------------------------------------------------------------------------------------
    async def _read(self, workflow_id: str) -> tuple[int, RunRecord | None]:
        """(revision, record) read from the bucket's leader; (revision of the delete marker or 0, None)
        when there is no run."""
        try:
            entry = await self._kv.get(self._rkey(workflow_id))
        except KeyNotFoundError as exc:
            self._remember(workflow_id, 0, None)
            entry = getattr(exc, "entry", None)
            return (entry.revision if entry is not None else 0), None
        record = RunRecord.decode(entry.value)
        self._remember(workflow_id, entry.revision, record)
        return entry.revision, record

    async def _chunks(self, workflow_id: str, record: RunRecord, after: int = 0) -> tuple[int, list[bytes]]:
        """The sealed events from the first chunk that holds an id > after: (its first id, events)."""
        wanted = [(first, last) for first, last in record.chunk_ranges() if last > after]
        if not wanted:
            return record.sealed + 1, []
        entries = await asyncio.gather(*(self._kv.get(self._ckey(workflow_id, record.run_id, first))
                                         for first, _ in wanted))
        events: list[bytes] = []
        for (first, last), entry in zip(wanted, entries, strict=True):
            chunk = decode_chunk(entry.value)
            if len(chunk) != last - first + 1:
                raise RuntimeError(f"chunk {first} of workflow {workflow_id!r} holds {len(chunk)} events, "
                                   f"not {last - first + 1}")
            events.extend(chunk)
        return wanted[0][0], events

    async def _load(self, workflow_id: str) -> WorkflowState | None:
        _, record = await self._read(workflow_id)
        if record is None:
            return None
        _, sealed = await self._chunks(workflow_id, record)
        return record.state(sealed)

    def load(self, workflow_id: str) -> WorkflowState | None:
        return self._run(self._load(workflow_id))

    def load_summary(self, workflow_id: str) -> WorkflowState | None:
        _, record = self._run(self._read(workflow_id))
        return None if record is None else record.summary_state()

    def history(self, workflow_id: str, after: int = 0) -> builtins.list[Event]:
        async def read() -> list[Event]:
            _, record = await self._read(workflow_id)
            if record is None:
                return []
            first, sealed = await self._chunks(workflow_id, record, after)
            return record.events_after(sealed, after, first)

        return self._run(read())

    def list(self, filter: WorkflowFilter | None = None) -> builtins.list[WorkflowState]:
        f = filter or DEFAULT_FILTER

        async def listed() -> list[WorkflowState]:
            records = await self._records()
            chosen = [(s.workflow_id, records[s.workflow_id]) for s in page(f, (r.summary_state()
                                                                                for r in records.values()))]
            chunks = await asyncio.gather(*(self._chunks(wid, record) for wid, record in chosen))
            return [record.state(sealed) for (_, record), (_, sealed) in zip(chosen, chunks, strict=True)]

        return self._run(listed())

    def counts(self, filter: WorkflowFilter | str | None = None) -> dict[str, int]:
        async def counted() -> dict[str, int]:
            return count_by_status(filter, [r.summary_state() for r in (await self._records()).values()])

        return self._run(counted())

    async def _records(self) -> dict[str, RunRecord]:
        """Every run's record, by workflow id: a scan of the bucket (NATS KV has no secondary index).

        A pull consumer of each `r.*` key's last message, read until the server says nothing is pending.
        Not `KeyValue.watch`: its end-of-snapshot marker is decided from the consumer's pending count
        while pushed messages may still wait in the client, so it can come before records it then
        delivers (nats-py 2.16), and a listing cut at the marker missed runs."""
        records: dict[str, RunRecord] = {}
        sub = await self._js.pull_subscribe(
            f"$KV.{self.prefix}.r.>", stream=self._stream,
            config=js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT,
                                         ack_policy=js_api.AckPolicy.NONE, inactive_threshold=60.0))
        try:
            pending = (await sub.consumer_info()).num_pending
            while pending:
                for msg in await sub.fetch(min(pending, 1000), timeout=self.timeout):
                    pending = msg.metadata.num_pending
                    headers = msg.headers or {}
                    if headers.get("KV-Operation") in ("DEL", "PURGE") or "Nats-Marker-Reason" in headers:
                        continue  # a deleted key (or a server's expiry marker) holds no record
                    record = RunRecord.decode(msg.data)
                    records[record.summary_state().workflow_id] = record
        finally:
            await sub.unsubscribe()
        return records

    # --- writes -------------------------------------------------------------------------------------
    async def _write_chunks(self, workflow_id: str, run_id: str, chunks: list[tuple[int, list[bytes]]]) -> None:
        await asyncio.gather(*(self._kv.put(self._ckey(workflow_id, run_id, first), encode_chunk(events))
                               for first, events in chunks))

    async def _purge_chunks(self, workflow_id: str, run_id: str | None = None) -> None:
        """Drop the chunks of one run (or every run) of a workflow id: garbage once no record names them."""
        subject = f"$KV.{self.prefix}.c.{token(workflow_id)}." + ("" if run_id is None else token(run_id) + ".") + ">"
        await self._js.purge_stream(self._stream, subject=subject)

    def create(self, state: WorkflowState, *, replace_run_id: str | None = None) -> None:
        record, chunks = new_record(state, self.tail)
        wid = state.workflow_id

        async def write() -> None:
            if chunks:  # keyed by the new run id: nobody else writes them, and they are unreachable until
                await self._write_chunks(wid, record.run_id, chunks)  # the record names them
            for _ in range(_RETRIES):
                revision, current = await self._read(wid)
                if current is not None:
                    check_create(wid, current.run_id, current.status, replace_run_id)
                try:
                    if current is None and revision == 0:
                        new_revision = await self._kv.create(self._rkey(wid), record.encode())
                    else:
                        new_revision = await self._kv.update(self._rkey(wid), record.encode(), last=revision)
                except KeyWrongLastSequenceError:
                    continue  # someone wrote the id meanwhile: look again
                self._remember(wid, new_revision, record)
                if current is not None and current.run_id != record.run_id:
                    await self._purge_chunks(wid, current.run_id)
                return
            raise RuntimeError(f"could not create workflow {wid!r}: the key kept changing")

        self._run(write())

    def save(self, state: WorkflowState) -> None:
        record, chunks = new_record(state, self.tail)
        wid = state.workflow_id

        async def write() -> None:
            _, current = await self._read(wid)
            if chunks:
                await self._write_chunks(wid, record.run_id, chunks)
            revision = await self._kv.put(self._rkey(wid), record.encode())
            self._remember(wid, revision, record)
            if current is not None and current.run_id != record.run_id:
                await self._purge_chunks(wid, current.run_id)

        self._run(write())

    def delete(self, workflow_id: str) -> None:
        async def purge() -> None:
            await self._kv.purge(self._rkey(workflow_id))
            self._remember(workflow_id, 0, None)
            await self._purge_chunks(workflow_id)

        self._run(purge())

    def append(self, appends: Sequence[Append]) -> builtins.list[str]:
        if not appends:
            return []
        prepared = prepare(appends)
        by_run: dict[str, list[tuple[int, Append, list[bytes]]]] = {}
        for i, (a, events) in enumerate(prepared):
            by_run.setdefault(a.workflow_id, []).append((i, a, events))

        async def run_appends(items: list[tuple[int, Append, list[bytes]]]) -> list[tuple[int, bool]]:
            return [(i, await self._append_one(a, events)) for i, a, events in items]  # in order, per run

        async def all_runs() -> list[tuple[int, bool]]:
            done = await asyncio.gather(*(run_appends(items) for items in by_run.values()))
            return [outcome for outcomes in done for outcome in outcomes]

        outcomes = dict(self._run(all_runs()))
        return [a.workflow_id for i, (a, _) in enumerate(prepared) if not outcomes[i]]

    async def _append_one(self, a: Append, events: list[bytes]) -> bool:
        wid = a.workflow_id
        cached = self._revisions.get(wid)
        fresh = False
        for _ in range(_RETRIES):
            if cached is None or not accepts(cached[1].run_id, cached[1].version, a):
                if fresh:
                    return False  # the run as it is now is not the one the writer read
                revision, record = await self._read(wid)
                fresh = True
                if record is None or not accepts(record.run_id, record.version, a):
                    return False
                cached = (revision, record)
            revision, record = cached
            new, seal = advance(record, a, events, self.tail)
            if seal is not None:
                await self._write_chunks(wid, record.run_id, [seal])
            try:
                new_revision = await self._kv.update(self._rkey(wid), new.encode(), last=revision)
            except KeyWrongLastSequenceError:
                cached, fresh = None, False  # another writer changed the record: check against it
                continue
            self._remember(wid, new_revision, new)
            return True
        return False
