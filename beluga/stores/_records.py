"""The run record that key-value stores (NATS KV, Dapr state) compare-and-set, one per workflow id.

A key-value store can check the revision of one key, so everything an append must change atomically
lives in that key: the run's identity and version, its summary, and the newest events (the *tail*).
Older events move out in *sealed chunks*, keys of their own that are written once and never change:
when the tail has reached `tail_limit` events, the next append first writes the tail as chunk
`<run id>/<first event id>` and then replaces the record with one whose tail holds only the new events.
A chunk's content is fixed by the committed record it was cut from, so two writers racing from the
same record write identical chunks, and the loser's copy is harmless; a chunk is part of the history
only once a record that lists it is committed. Appends thus cost one conditional write, plus one
unconditional write every `tail_limit` events, and a history is read as record + its chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack

from beluga import codec
from beluga.core.errors import SerializationError
from beluga.core.records import Append, Event, WorkflowState, WorkflowStatus
from beluga.stores._common import check_append, check_events, needs_summary, summarize

RECORD_FORMAT = 1
DEFAULT_TAIL = 64


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    version: int
    status: str
    workflow_type: str
    created_at: float
    updated_at: float
    summary: bytes  # codec.encode_state; its status/updated_at are superseded by the fields above
    sealed: int = 0  # events 1..sealed live in chunks
    chunks: tuple[int, ...] = ()  # first event id of each sealed chunk, in order
    tail: tuple[bytes, ...] = field(default=())  # events sealed+1..version, encoded

    # --- encoding -----------------------------------------------------------------------------------
    def encode(self) -> bytes:
        return msgpack.packb([RECORD_FORMAT, self.run_id, self.version, self.status, self.workflow_type,
                              self.created_at, self.updated_at, self.summary, self.sealed, list(self.chunks),
                              list(self.tail)], use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> RunRecord:
        try:
            fmt, *fields = msgpack.unpackb(data, raw=False)
        except Exception as exc:
            raise SerializationError(f"run record is malformed: {exc!r}") from exc
        if fmt != RECORD_FORMAT:
            raise SerializationError(f"run record has format {fmt!r}; this Beluga reads {RECORD_FORMAT}")
        run_id, version, status, wtype, created, updated, summary, sealed, chunks, tail = fields
        return cls(run_id, version, status, wtype, created, updated, summary, sealed, tuple(chunks), tuple(tail))

    # --- reading ------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return WorkflowStatus(self.status).is_open

    def summary_state(self, history: tuple[Event, ...] = ()) -> WorkflowState:
        state = codec.decode_state(self.summary, history)
        return replace(state, status=WorkflowStatus(self.status), updated_at=self.updated_at)

    def chunk_ranges(self) -> list[tuple[int, int]]:
        """(first, last) event ids of each sealed chunk."""
        if not self.chunks:
            return []
        ends = [*self.chunks[1:], self.sealed + 1]
        return [(first, end - 1) for first, end in zip(self.chunks, ends, strict=True)]

    def state(self, sealed_events: list[bytes]) -> WorkflowState:
        return self.summary_state(tuple(codec.decode_event(e) for e in [*sealed_events, *self.tail]))

    def events_after(self, sealed_events: list[bytes], after: int, first: int = 1) -> list[Event]:
        """Events with id > after, given the sealed events from id `first` on."""
        every = [*sealed_events, *self.tail]
        start = max(after + 1 - first, 0)
        return [codec.decode_event(e) for e in every[start:]]


def encode_events(events: tuple[Event, ...]) -> list[bytes]:
    return [codec.encode_event(e) for e in events]


def new_record(state: WorkflowState, tail_limit: int = DEFAULT_TAIL) -> tuple[RunRecord, list[tuple[int, list[bytes]]]]:
    """The record of a new run and the chunks to write before it (histories longer than the tail)."""
    check_events(state.history, 0, state.workflow_id)
    events = encode_events(state.history)
    chunks: list[tuple[int, list[bytes]]] = []
    sealed = 0
    while len(events) - sealed > tail_limit:
        chunks.append((sealed + 1, events[sealed:sealed + tail_limit]))
        sealed += tail_limit
    record = RunRecord(state.run_id, len(events), WorkflowStatus(state.status).value, state.workflow_type,
                       state.created_at, state.updated_at, codec.encode_state(state), sealed,
                       tuple(first for first, _ in chunks), tuple(events[sealed:]))
    return record, chunks


def prepare(appends: Sequence[Append]) -> list[tuple[Append, list[bytes]]]:
    """Each append with its encoded events, every one validated (`check_append`) and encoded
    (`check_payloads`) before anything is written: a batch with a bad append writes nothing."""
    prepared = []
    for a in appends:
        check_append(a)
        prepared.append((a, check_payloads(a)))
    return prepared


def check_payloads(a: Append) -> list[bytes]:
    """Encode the append's events and check its result and error encode, before anything is written."""
    events = encode_events(a.events)
    if needs_summary(a):
        codec.encode(a.result, label="result")
        codec.encode(a.error, label="error")
    return events


def advance(record: RunRecord, a: Append, events: list[bytes],
            tail_limit: int = DEFAULT_TAIL) -> tuple[RunRecord, tuple[int, list[bytes]] | None]:
    """The record after `a` (already accepted against `record`), and the chunk to write first, if any."""
    seal = None
    sealed, chunks, tail = record.sealed, record.chunks, record.tail
    if len(tail) >= tail_limit:
        seal = (sealed + 1, list(tail))
        sealed, chunks, tail = sealed + len(tail), (*chunks, sealed + 1), ()
    changes: dict[str, Any] = {"version": record.version + len(events), "sealed": sealed, "chunks": chunks,
                               "tail": (*tail, *events)}
    if a.status is not None:
        changes["status"] = WorkflowStatus(a.status).value
    if a.updated_at:
        changes["updated_at"] = a.updated_at
    if needs_summary(a):
        changes["summary"] = codec.encode_state(summarize(record.summary_state(), a))
    return replace(record, **changes), seal


def encode_chunk(events: list[bytes]) -> bytes:
    return msgpack.packb(events, use_bin_type=True)


def decode_chunk(data: bytes) -> list[bytes]:
    return list(msgpack.unpackb(data, raw=False))
