"""`KafkaStore`: runs in one compacted Kafka topic (`confluent-kafka`), rebuilt from the topic on start.

Records, keyed so that compaction keeps exactly what the store needs (the latest value per key):

- `r/<workflow id>` → the run: run id, version, status, summary, and the first event id of each of its
  event chunks. A delete writes a tombstone (null value) here.
- `c/<first event id>/<workflow id>` → one chunk of events (those one append or create wrote), with
  the run id that wrote it. Replacing a run tombstones the old run's chunks that the new run does not
  overwrite; a delete tombstones all of them.

State lives where Kafka keeps it, in the topic: a client reads the topic from its beginning when it
starts (read_committed), and before every read it catches up to the partition's last stable offset, so
it sees what other clients committed. Its in-memory view is a cache of the topic, never the only copy.

Concurrency: Kafka has no compare-and-set, so the store makes itself the single writer. Every write is
a Kafka transaction of a producer whose `transactional.id` is derived from the topic: a client that
starts writing calls `init_transactions`, which fences whichever client wrote before (its open
transaction is aborted and its next commit fails), then reads the topic to its end and checks its
writes against that view. A fenced client does the same on its next write: takes the id back, catches
up, and checks again. An append is accepted only if the run id and version it names are those of the
view at commit, and a commit succeeds only while the client still holds the id, i.e. while nobody
else has written since its view was complete: the same guarantee as a compare-and-set, at the cost of a
take-over (a new producer, an `init_transactions`, a catch-up) whenever writers alternate. Refusals
are decided on a view caught up to the topic's end. A batch of appends is one transaction: the group
commit the in-process engine relies on.

Requires the `kafka` extra: `pip install 'beluga-workflows[kafka]'`. Tested against noida-db's Kafka-protocol
broker (not Apache Kafka); any broker with transactions and compaction should do.
"""

from __future__ import annotations

import builtins
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from beluga.core.errors import ConfigurationError

try:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError as exc:  # pragma: no cover - exercised by simulating the missing client
    raise ConfigurationError("the 'kafka' store needs the confluent-kafka client: "
                             "pip install 'beluga-workflows[kafka]'") from exc

from beluga import codec
from beluga.core.errors import SerializationError, WorkflowAlreadyStarted
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.stores._common import DEFAULT_FILTER, accepts, check_create, count_by_status, needs_summary, page
from beluga.stores._records import encode_events, prepare
from beluga.stores.base import WorkflowStore

FORMAT = 1
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_TAKEOVERS = 10


@dataclass(frozen=True)
class _Run:
    run_id: str
    version: int
    status: str
    workflow_type: str
    created_at: float
    updated_at: float
    summary: bytes
    firsts: tuple[int, ...]  # first event id of each chunk, in order

    def encode(self) -> bytes:
        return msgpack.packb([FORMAT, self.run_id, self.version, self.status, self.workflow_type,
                              self.created_at, self.updated_at, self.summary, list(self.firsts)], use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> _Run:
        fmt, *fields = _unpack(data, "run")
        run_id, version, status, wtype, created, updated, summary, firsts = fields
        return cls(run_id, version, status, wtype, created, updated, summary, tuple(firsts))

    def summary_state(self, history: tuple[Event, ...] = ()) -> WorkflowState:
        state = codec.decode_state(self.summary, history)
        return replace(state, status=WorkflowStatus(self.status), updated_at=self.updated_at)


def _unpack(data: bytes, what: str) -> list[Any]:
    try:
        fields = msgpack.unpackb(data, raw=False)
    except Exception as exc:
        raise SerializationError(f"{what} record is malformed: {exc!r}") from exc
    if not fields or fields[0] != FORMAT:
        raise SerializationError(f"{what} record has format {fields[0] if fields else None!r}; "
                                 f"this Beluga reads {FORMAT}")
    return fields


def _run_key(workflow_id: str) -> bytes:
    return b"r/" + workflow_id.encode()


def _chunk_key(workflow_id: str, first: int) -> bytes:
    return b"c/%d/" % first + workflow_id.encode()


class _View:
    """The topic materialised: the latest value of every key, applied in offset order."""

    def __init__(self) -> None:
        self.runs: dict[str, _Run] = {}
        self.chunks: dict[str, dict[int, tuple[str, list[bytes]]]] = {}  # workflow id -> first -> (run id, events)

    def apply(self, key: bytes, value: bytes | None) -> None:
        kind, _, rest = key.partition(b"/")
        if kind == b"r":
            wid = rest.decode()
            if value is None:
                self.runs.pop(wid, None)
            else:
                self.runs[wid] = _Run.decode(value)
        elif kind == b"c":
            first, _, raw_wid = rest.partition(b"/")
            wid = raw_wid.decode()
            chunks = self.chunks.setdefault(wid, {})
            if value is None:
                chunks.pop(int(first), None)
                if not chunks:
                    del self.chunks[wid]
            else:
                _, run_id, events = _unpack(value, "chunk")
                chunks[int(first)] = (run_id, events)

    def events(self, workflow_id: str, run: _Run) -> list[bytes]:
        chunks = self.chunks.get(workflow_id, {})
        out: list[bytes] = []
        for first in run.firsts:
            run_id, events = chunks[first]
            if run_id != run.run_id or first != len(out) + 1:
                raise RuntimeError(f"the history of workflow {workflow_id!r} in the topic is inconsistent at "
                                   f"event {first}")
            out.extend(events)
        return out

    def state(self, workflow_id: str) -> WorkflowState | None:
        run = self.runs.get(workflow_id)
        if run is None:
            return None
        return run.summary_state(tuple(codec.decode_event(e) for e in self.events(workflow_id, run)))


class _Batch:
    """What one transaction writes, applied over the view while it is decided: later appends of the
    same batch see the earlier ones."""

    def __init__(self, view: _View) -> None:
        self.view = view
        self.runs: dict[str, _Run | None] = {}
        self.records: list[tuple[bytes, bytes | None]] = []

    def run(self, workflow_id: str) -> _Run | None:
        return self.runs[workflow_id] if workflow_id in self.runs else self.view.runs.get(workflow_id)

    def put_run(self, workflow_id: str, run: _Run | None) -> None:
        self.runs[workflow_id] = run
        self.records.append((_run_key(workflow_id), None if run is None else run.encode()))

    def put_chunk(self, workflow_id: str, run_id: str, first: int, events: list[bytes]) -> None:
        self.records.append((_chunk_key(workflow_id, first),
                             msgpack.packb([FORMAT, run_id, events], use_bin_type=True)))

    def drop_chunks(self, workflow_id: str, keep: set[int]) -> None:
        """Tombstone the chunks of `workflow_id` in the view that the new run does not overwrite."""
        for first in self.view.chunks.get(workflow_id, {}):
            if first not in keep:
                self.records.append((_chunk_key(workflow_id, first), None))


class KafkaStore(WorkflowStore):
    """`bootstrap_servers`: the brokers (`host:port,...`). The topic is `topic`, else `<prefix>.runs`;
    it is created (one partition, `cleanup.policy=compact`) when missing. Other keyword arguments are
    librdkafka settings for every client (e.g. `security.protocol`, with dots written as `_`)."""

    def __init__(self, bootstrap_servers: str = "127.0.0.1:9092", *, prefix: str = "beluga",
                 topic: str | None = None, replication_factor: int = 1, timeout: float = 30.0,
                 **config: Any) -> None:
        self.topic = topic or f"{prefix}.runs"
        if not _TOPIC.match(self.topic):
            raise ConfigurationError(f"Kafka topic {self.topic!r} must be 1-249 letters, digits, '.', '_' or '-'")
        self.timeout = timeout
        self._common = {"bootstrap.servers": bootstrap_servers,
                        **{k.replace("_", "."): v for k, v in config.items()}}
        self._tp = TopicPartition(self.topic, 0)
        self._lock = threading.RLock()
        self._view = _View()
        self._position = 0  # the next offset of the topic not yet applied to the view
        self._producer: Producer | None = None
        self._ensure_topic(replication_factor)
        self._consumer = Consumer({**self._common, "group.id": f"beluga-store-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                   "isolation.level": "read_committed", "enable.partition.eof": True,
                                   "fetch.wait.max.ms": 10})
        self._consumer.assign([TopicPartition(self.topic, 0, 0)])
        with self._lock:
            self._catch_up()  # the whole topic, from its first offset

    # --- topic, producer, consumer ------------------------------------------------------------------
    def _ensure_topic(self, replication_factor: int) -> None:
        admin = AdminClient(self._common)
        if self.topic in admin.list_topics(timeout=self.timeout).topics:
            return
        futures = admin.create_topics([NewTopic(self.topic, num_partitions=1, replication_factor=replication_factor,
                                                config={"cleanup.policy": "compact"})])
        try:
            futures[self.topic].result(self.timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    def _take_over(self) -> None:
        """Become the topic's writer: a producer with the topic's transactional id (fencing any other),
        then the view caught up to everything the previous writers committed."""
        if self._producer is not None:
            self._producer = None
        producer = Producer({**self._common, "transactional.id": f"beluga-store.{self.topic}",
                             "linger.ms": 0, "transaction.timeout.ms": 60000})
        producer.init_transactions(self.timeout)
        self._producer = producer
        self._catch_up()

    def _catch_up(self) -> None:
        """Apply every committed record up to the partition's last stable offset (read_committed)."""
        _, end = self._consumer.get_watermark_offsets(self._tp, timeout=self.timeout, cached=False)
        if end < self._position:
            raise RuntimeError(f"topic {self.topic} ends at offset {end}, before what this client read "
                               f"({self._position}): was it deleted and recreated?")
        deadline = time.monotonic() + self.timeout
        while self._position < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read topic {self.topic} up to offset {end} within {self.timeout}s")
            for msg in self._consumer.consume(num_messages=1000, timeout=0.002):  # what has arrived
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        self._position = max(self._position, msg.offset())  # past trailing txn markers
                        continue
                    raise KafkaException(err)
                if msg.offset() < self._position:
                    continue  # our own committed records, already applied
                self._view.apply(msg.key(), msg.value())
                self._position = msg.offset() + 1

    def _commit(self, records: list[tuple[bytes, bytes | None]]) -> bool:
        """Write `records` in one transaction; False when another client fenced this one."""
        producer = self._producer
        if producer is None:
            return False
        offsets: list[int] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                offsets.append(msg.offset())

        try:
            producer.begin_transaction()
            for key, value in records:
                producer.produce(self.topic, key=key, value=value, partition=0, on_delivery=delivered)
            self._commit_transaction(producer)
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal() or err.code() in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED,
                                             KafkaError.INVALID_PRODUCER_EPOCH):
                self._producer = None  # fenced: take the id back and look again
                return False
            if err.txn_requires_abort():
                producer.abort_transaction(self.timeout)
                return False
            raise
        producer.poll(0)
        if offsets and min(offsets) == self._position:
            # Nobody else wrote between our view and this transaction (else it would have been fenced),
            # so the transaction directly follows what the view holds, and its marker its last record.
            self._position = max(offsets) + 2
            self._seek(self._position)
        return True

    def _commit_transaction(self, producer: Producer) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                producer.commit_transaction(self.timeout)
                return
            except KafkaException as exc:
                if exc.args[0].retriable() and time.monotonic() < deadline:
                    continue
                raise

    def _seek(self, offset: int) -> None:
        try:
            self._consumer.seek(TopicPartition(self.topic, 0, offset))
        except KafkaException:
            pass  # the catch-up skips what the view already has

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self.timeout)
                self._producer = None
            self._consumer.close()

    # --- the write loop -----------------------------------------------------------------------------
    def _write(self, decide: Callable[[_Batch], Any], refused: Callable[[Any], bool]) -> Any:
        """Decide a transaction on the view and commit it, as the topic's writer. A decision that refuses
        something is made again on a view caught up to the topic's end; a commit that finds this client
        fenced takes the writer's id back (which catches up) and decides again."""
        with self._lock:
            caught_up = False
            for _ in range(_TAKEOVERS):
                if self._producer is None:
                    self._take_over()
                    caught_up = True
                batch = _Batch(self._view)
                outcome = decide(batch)
                if refused(outcome) and not caught_up:
                    self._catch_up()
                    caught_up = True
                    batch = _Batch(self._view)
                    outcome = decide(batch)
                if not batch.records:
                    return outcome
                if self._commit(batch.records):
                    for key, value in batch.records:
                        self._view.apply(key, value)
                    return outcome
                caught_up = False
            raise RuntimeError(f"could not write to topic {self.topic}: another client took it over "
                               f"{_TAKEOVERS} times in a row")

    # --- reads --------------------------------------------------------------------------------------
    def load(self, workflow_id: str) -> WorkflowState | None:
        with self._lock:
            self._catch_up()
            return self._view.state(workflow_id)

    def load_summary(self, workflow_id: str) -> WorkflowState | None:
        with self._lock:
            self._catch_up()
            run = self._view.runs.get(workflow_id)
            return None if run is None else run.summary_state()

    def history(self, workflow_id: str, after: int = 0) -> builtins.list[Event]:
        with self._lock:
            self._catch_up()
            run = self._view.runs.get(workflow_id)
            if run is None:
                return []
            return [codec.decode_event(e) for e in self._view.events(workflow_id, run)[max(after, 0):]]

    def list(self, filter: WorkflowFilter | None = None) -> builtins.list[WorkflowState]:
        f = filter or DEFAULT_FILTER
        with self._lock:
            self._catch_up()
            found = [run.summary_state() for run in self._view.runs.values()]
            return [self._view.state(s.workflow_id) for s in page(f, found)]  # type: ignore[misc]

    def counts(self, filter: WorkflowFilter | str | None = None) -> dict[str, int]:
        with self._lock:
            self._catch_up()
            return count_by_status(filter, [run.summary_state() for run in self._view.runs.values()])

    # --- writes -------------------------------------------------------------------------------------
    @staticmethod
    def _new_run(state: WorkflowState) -> tuple[_Run, list[bytes]]:
        from beluga.stores._common import check_events

        check_events(state.history, 0, state.workflow_id)
        events = encode_events(state.history)
        run = _Run(state.run_id, len(events), WorkflowStatus(state.status).value, state.workflow_type,
                   state.created_at, state.updated_at, codec.encode_state(state), (1,) if events else ())
        return run, events

    def create(self, state: WorkflowState, *, replace_run_id: str | None = None) -> None:
        run, events = self._new_run(state)
        wid = state.workflow_id

        def decide(batch: _Batch) -> WorkflowAlreadyStarted | None:
            current = batch.run(wid)
            if current is not None:
                try:
                    check_create(wid, current.run_id, current.status, replace_run_id)
                except WorkflowAlreadyStarted as exc:
                    return exc
            self._put_new(batch, wid, run, events)
            return None

        error = self._write(decide, lambda outcome: outcome is not None)
        if error is not None:
            raise error

    def _put_new(self, batch: _Batch, wid: str, run: _Run, events: list[bytes]) -> None:
        batch.drop_chunks(wid, keep=set(run.firsts))
        if events:
            batch.put_chunk(wid, run.run_id, 1, events)
        batch.put_run(wid, run)

    def save(self, state: WorkflowState) -> None:
        run, events = self._new_run(state)
        self._write(lambda batch: self._put_new(batch, state.workflow_id, run, events), lambda outcome: False)

    def delete(self, workflow_id: str) -> None:
        def decide(batch: _Batch) -> bool:
            if batch.run(workflow_id) is None and workflow_id not in self._view.chunks:
                return True  # nothing to delete, as far as this view knows
            batch.drop_chunks(workflow_id, keep=set())
            batch.put_run(workflow_id, None)
            return False

        self._write(decide, lambda nothing: nothing)

    def append(self, appends: Sequence[Append]) -> builtins.list[str]:
        if not appends:
            return []
        prepared = prepare(appends)

        def decide(batch: _Batch) -> list[str]:
            refused = []
            for a, events in prepared:
                run = batch.run(a.workflow_id)
                if run is None or not accepts(run.run_id, run.version, a):
                    refused.append(a.workflow_id)
                    continue
                first = a.expected_version + 1
                changes: dict[str, Any] = {"version": run.version + len(events)}
                if events:
                    changes["firsts"] = (*run.firsts, first)
                    batch.put_chunk(a.workflow_id, run.run_id, first, events)
                if a.status is not None:
                    changes["status"] = WorkflowStatus(a.status).value
                if a.updated_at:
                    changes["updated_at"] = a.updated_at
                if needs_summary(a):  # a result, an error, or search attributes (upserted)
                    from beluga.stores._common import summarize

                    changes["summary"] = codec.encode_state(summarize(run.summary_state(), a))
                batch.put_run(a.workflow_id, replace(run, **changes))
            return refused

        return self._write(decide, bool)
