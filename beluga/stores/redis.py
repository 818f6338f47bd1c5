"""`RedisStore`: runs in Redis or a Redis Cluster, appended by a compare-and-append Lua script.

Every workflow id belongs to one of `SHARDS` shards (crc32 of the id, modulo), and all keys of a run carry
its shard's hash tag: `<t>:<id>:run` (hash: run_id, type, status, version, summary, ...), `<t>:<id>:inbox`
(list of messages waiting for the coordinator) and, once the run has more than `INLINE_EVENTS` events,
`<t>:<id>:events` (a stream of one entry per append: id `0-<id of its last event>`, one field per event,
named by the event's id, in order; streams written by earlier versions hold entries `0-<i>` of one field
`e`, read alike. Before that the events are fields `e:<i>` of the run hash, so a short or parked run
costs one key), where `<t>` is `<p>:{s<shard>}`. The fleet keeps its
per-shard records (timers, attempts, wake-ups) under the same tag, so each of its scripts touches one
slot of a Redis Cluster. The listing indexes (`<p>:index:*`, sorted sets by creation time) are derived
data, updated after each write. The scripts are beluga/lua/append.lua and create.lua, called through the
builders in `redis_scripts`.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import redis

from beluga import codec
from beluga.core.errors import HistoryLost, ReplicationError, SerializationError, WorkflowAlreadyStarted
from beluga.core.failure import failure
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.logs import get_logger
from beluga.lua import Scripts
from beluga.stores._common import DEFAULT_FILTER, check_append, check_create, check_events, summarize
from beluga.stores.base import WorkflowStore
from beluga.stores.redis_scripts import AppendCall, CreateCall

# the summary blob, the fields appends keep apart from it, the mark of a history found not whole, and
# what names the run should its summary not decode
_SUMMARY_FIELDS = ("summary", "status", "updated", "lost", "run_id", "type", "created")
SHARDS = 16          # part of the key layout: every process must agree, and runs stay where they were put
INLINE_EVENTS = 8    # a run's first events live in its run hash (beluga/lua/lib/events.lua says the same)
_INLINE_FIELDS = tuple(f"e:{i}" for i in range(1, INLINE_EVENTS + 1))
log = get_logger("beluga.stores.redis")
T = TypeVar("T")


def _state(workflow_id: str, fields: list[bytes | None], history: tuple[Event, ...],
           problem: dict[str, Any] | None = None) -> WorkflowState | None:
    """The summary blob, with the status and update time that appends keep in fields of their own. A run
    whose history is not whole (`problem`, or the `lost` mark a coordinator left) or whose summary does not
    decode is still a state, its reason in `error` (see `failure.unreadable`): one unreadable run never
    stops a listing, a batch or a console page."""
    summary, status, updated, lost, run_id, workflow_type, created = fields
    if summary is None:
        return None
    try:
        state = codec.decode_state(summary, history)
    except SerializationError as exc:
        return WorkflowState(
            workflow_id, _text(run_id), _text(workflow_type), _status(status), None, None,
            failure("UnreadableRun", f"the stored summary of workflow {workflow_id} cannot be read by this "
                    f"Beluga ({exc}); it is held stuck: upgrade the workers if a newer Beluga wrote it",
                    non_retryable=True),
            float(created or 0.0), float(updated or 0.0), ())
    if problem is None and lost is not None:
        problem = _lost_mark(lost, state.run_id)
    state = replace(state, status=WorkflowStatus(status.decode()) if status else state.status,
                    updated_at=float(updated) if updated else state.updated_at)
    return replace(state, error=problem) if problem is not None and state.status.is_open else state


def _text(raw: bytes | None) -> str:
    return raw.decode(errors="replace") if raw else ""


def _status(raw: bytes | None) -> WorkflowStatus:
    try:
        return WorkflowStatus(raw.decode()) if raw else WorkflowStatus.RUNNING
    except ValueError:
        return WorkflowStatus.RUNNING


def _lost_mark(raw: bytes, run_id: str) -> dict[str, Any] | None:
    """The failure a coordinator recorded when it found the run's history not whole (`mark_lost`), if it
    is this run's."""
    try:
        mark = codec.decode(raw)
    except SerializationError:
        return None
    if not isinstance(mark, dict) or mark.get("run") != run_id:
        return None
    return failure("HistoryLost", str(mark.get("message", "")), non_retryable=True)


def _gap(workflow_id: str, version: int, after: int, ids: list[int]) -> str | None:
    """Why the events read (their `ids`) are not exactly the history past `after` up to `version`, or
    None when they are: every load checks that the history is whole, and never replays a partial one."""
    if ids == list(range(after + 1, version + 1)):
        return None
    found = f"{len(ids)} ({ids[0]}-{ids[-1]})" if ids else "none"
    return (f"events of workflow {workflow_id}'s history are missing in Redis: it is at event {version}, but of "
            f"events {after + 1}-{version} {found} were found. Was a key evicted (maxmemory-policy must be "
            "noeviction) or deleted? The run cannot be replayed or extended: it is held stuck and never completes")


def on_primary(write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """What `write(*args, **kwargs)` left on the primary, whether or not enough replicas confirmed it
    in time (a shortfall is logged where it is found). For the fleet's own steps, which carry on from
    what the primary holds so that no run stalls while a replica lags: should the primary be lost
    before a replica has the write, what depended on it is redone from the replica's state (its
    attempts are found lost and dispatched again, the inbox messages it consumed are still there)."""
    try:
        return write(*args, **kwargs)
    except ReplicationError as exc:
        return exc.result


def shard_of(workflow_id: str) -> int:
    """The shard of a workflow id: where its run's keys and the fleet's records about it live."""
    return zlib.crc32(workflow_id.encode()) % SHARDS


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def connect(url: str) -> Any:
    """A client for `url`: `redis://`, `rediss://` (TLS), `unix://` give a `redis.Redis`;
    `redis+cluster://host:port` (`rediss+cluster://` for TLS) a `redis.cluster.RedisCluster` that finds
    the other nodes from that one."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme in CLUSTER_SCHEMES:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}")
    return redis.Redis.from_url(url)


def is_cluster(client: Any) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _events_of(entries: Any, after: int) -> list[tuple[int, bytes]]:
    """The (id, encoded event) pairs past `after` in the stream entries that XRANGE from `0-<after + 1>`
    read (the first entry may also hold events up to `after`). An entry's fields are its events, each
    named by its id; an entry of an earlier version is one field `e`, the event whose id is the entry's.
    redis-py parses an entry's fields into a dict, but a cluster pipeline hands back the raw
    [field, value, ...] list."""
    out: list[tuple[int, bytes]] = []
    for entry_id, fields in entries:
        pairs = fields.items() if isinstance(fields, dict) else zip(fields[::2], fields[1::2], strict=True)
        for name, event in pairs:
            if name == b"e":
                raw = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                out.append((int(raw.partition("-")[2]), event))
            elif int(name) > after:
                out.append((int(name), event))
    return out


def _split_read(got: list[Any], entries: Any, n: int, after: int) -> tuple[list[Any], int, list[tuple[int, bytes]]]:
    """What `RedisStore._queue_read` read: the `n` fields asked for, the run's version, and the (id,
    encoded event) pairs found past `after` (from the run hash while the run has at most INLINE_EVENTS,
    else from its stream); `_gap` tells whether they are the whole history past `after`."""
    version = int(got[n] or 0)
    if version <= INLINE_EVENTS:
        found = [(after + 1 + i, e) for i, e in enumerate(got[n + 1:n + 1 + version - after]) if e is not None]
    else:
        found = _events_of(entries, after)
    return got[:n], version, found


def _loaded(workflow_id: str, fields: list[Any], version: int, found: list[tuple[int, bytes]]
            ) -> WorkflowState | None:
    """The run `load` read. A history that is not whole, or an event that does not decode, makes a state
    all the same, its reason in `error` (see `_state`)."""
    gap = _gap(workflow_id, version, 0, [i for i, _ in found])
    problem = None if gap is None else failure("HistoryLost", gap, non_retryable=True)
    try:
        history = tuple(codec.decode_event(e) for _, e in found)
    except SerializationError as exc:
        history = ()
        problem = problem or failure(
            "UnreadableRun", f"an event of workflow {workflow_id} cannot be read by this Beluga ({exc}); it is "
            "held stuck: upgrade the workers if a newer Beluga wrote it", non_retryable=True)
    return _state(workflow_id, fields, history, problem)


class RedisStore(WorkflowStore):
    """`url` is any redis-py URL (`redis://`, `rediss://` for TLS, with a password) or a Redis Cluster's
    (`redis+cluster://`, `rediss+cluster://`, see `connect`); or pass `client`.
    With `append_replicas` > 0, each write of a run (creation, append, inbox message) counts only once
    that many replicas confirmed it within `append_replicas_timeout` seconds (see `replicated`)."""

    def __init__(self, url: str = "redis://localhost:6379/0", *, prefix: str = "beluga",
                 client: redis.Redis | None = None, append_replicas: int = 0,
                 append_replicas_timeout: float = 1.0) -> None:
        self.redis = client if client is not None else connect(url)
        self.cluster = is_cluster(self.redis)
        self.prefix = prefix
        self.append_replicas = append_replicas
        self.append_replicas_timeout = append_replicas_timeout
        self._lua = Scripts(self.redis, [AppendCall, CreateCall])

    # --- key layout ---------------------------------------------------------------------------------
    def shard_tag(self, shard: int) -> str:
        """`<p>:{s<shard>}`: the hash tag of a shard's keys, its runs' and the fleet's records about them."""
        return f"{self.prefix}:{{s{shard}}}"

    def tag(self, workflow_id: str) -> str:
        return self.shard_tag(shard_of(workflow_id))

    def keys(self, workflow_id: str) -> tuple[str, str, str]:
        """The run's hash, events stream and inbox."""
        run = f"{self.tag(workflow_id)}:{workflow_id}"
        return f"{run}:run", f"{run}:events", f"{run}:inbox"

    def key(self, workflow_id: str, name: str) -> str:
        return f"{self.tag(workflow_id)}:{workflow_id}:{name}"

    def _index(self, name: str) -> str:
        return f"{self.prefix}:index:{name}"

    # --- replication --------------------------------------------------------------------------------
    def replicated(self, write: Callable[[Any], T], what: str, key: str | None = None) -> T:
        """Run `write` (one write, given the client to send it with) and, when replicas are required,
        confirm it with `WAIT n timeout` before returning. Redis replicates asynchronously, so a write
        the primary has answered can still be lost if the primary dies before a replica has it; WAIT
        closes that window. WAIT counts the writes of its own connection, so both go through a client
        pinned to one connection (on a Redis Cluster, to the primary of `key`'s slot: the key the write
        touches), and WAIT is sent without redis-py's reconnect-and-retry (a retry on a new connection
        would confirm nothing). Raises ReplicationError, with the primary's answer as its `result`,
        when fewer replicas confirmed in time."""
        wanted = self.append_replicas
        if wanted <= 0:
            return write(self.redis)
        timeout_ms = max(1, int(self.append_replicas_timeout * 1000))
        base = self.redis
        if self.cluster:
            if key is None:
                raise ValueError(f"{what}: a replicated write on a Redis Cluster must name its key")
            base = self.redis.get_redis_connection(self.redis.get_node_from_key(key))
        with base.client() as pinned:
            result = write(pinned)
            conn = pinned.connection
            assert conn is not None
            try:
                conn.send_command("WAIT", wanted, timeout_ms)
                acked = int(conn.read_response())
            except BaseException:
                conn.disconnect()  # never hand a connection with an unread reply back to the pool
                raise
        if acked < wanted:
            log.error("%s reached the primary but only %d of %d replicas within %gs (BELUGA_APPEND_REPLICAS): "
                      "not acknowledged as durable", what, acked, wanted, self.append_replicas_timeout)
            raise ReplicationError(f"{what} reached the Redis primary but only {acked} of {wanted} replicas "
                                   f"confirmed it within {self.append_replicas_timeout:g}s; a failover now "
                                   "could lose it: retry", acked=acked, wanted=wanted, result=result)
        return result

    # --- reads --------------------------------------------------------------------------------------
    def load(self, workflow_id: str) -> WorkflowState | None:
        """The run, its history checked whole (else held stuck: its reason in `error`)."""
        return _loaded(workflow_id, *self._read(workflow_id, _SUMMARY_FIELDS, 0))

    def load_summary(self, workflow_id: str) -> WorkflowState | None:
        """The run without its history: cheap, for status checks and result waits."""
        return _state(workflow_id, self.redis.hmget(self.keys(workflow_id)[0], *_SUMMARY_FIELDS), ())

    def history(self, workflow_id: str, after: int = 0) -> list[Event]:
        """The events past `after`; `HistoryLost` when they are not all there."""
        _, version, found = self._read(workflow_id, (), after)
        gap = _gap(workflow_id, version, after, [i for i, _ in found])
        if gap is not None:
            raise HistoryLost(gap)
        return [codec.decode_event(e) for _, e in found]

    def mark_lost(self, workflow_id: str, run_id: str, message: str) -> None:
        """Note on the run that its history was found not whole, so that even a summary read
        (`load_summary`: status checks, result waits) says so. Names the run: a new run of the id
        (whose creation drops the mark) is never taken for it."""
        self.redis.hset(self.keys(workflow_id)[0], "lost", codec.encode({"run": run_id, "message": message}))

    def _read(self, workflow_id: str, names: Sequence[str], after: int
              ) -> tuple[list[Any], int, list[tuple[int, bytes]]]:
        """The run hash's fields `names`, its version and its (id, encoded event) pairs past `after`, read
        at one instant (the events are in the run hash or in the run's stream, see
        beluga/lua/lib/events.lua)."""
        pipe = self.redis.pipeline(transaction=True)
        self._queue_read(pipe, workflow_id, names, after)
        got, entries = pipe.execute()
        return _split_read(got, entries, len(names), after)

    def _queue_read(self, pipe: Any, workflow_id: str, names: Sequence[str], after: int) -> None:
        """The two reads of `_read` (its answers: `_split_read`)."""
        run_key, events_key, _ = self.keys(workflow_id)
        pipe.hmget(run_key, *names, "version", *_INLINE_FIELDS[after:])
        pipe.xrange(events_key, min=f"0-{after + 1}")

    def load_many(self, workflow_ids: Sequence[str]) -> list[WorkflowState | None]:
        """`load` of several runs in one round trip (one MULTI, so each run is read at one instant, as
        `load` reads it). Not on a Redis Cluster, whose runs live on several nodes: load them one by one."""
        if self.cluster:
            return [self.load(w) for w in workflow_ids]
        if not workflow_ids:
            return []
        pipe = self.redis.pipeline(transaction=True)
        for workflow_id in workflow_ids:
            self._queue_read(pipe, workflow_id, _SUMMARY_FIELDS, 0)
        got = pipe.execute()
        # each run on its own: one that cannot be read whole is a state with its reason (see `_loaded`),
        # never an error that would stop the batch
        return [_loaded(wid, *_split_read(got[2 * i], got[2 * i + 1], len(_SUMMARY_FIELDS), 0))
                for i, wid in enumerate(workflow_ids)]

    def version(self, workflow_id: str) -> tuple[str | None, int]:
        run_id, version = self.redis.hmget(self.keys(workflow_id)[0], "run_id", "version")
        return (run_id.decode() if run_id else None), int(version or 0)

    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        f = filter or DEFAULT_FILTER
        if f.status is not None:
            index = self._index(f"status:{WorkflowStatus(f.status).value}")
        elif f.workflow_type is not None:
            index = self._index(f"type:{f.workflow_type}")
        else:
            index = self._index("all")
        out: list[WorkflowState] = []
        start, page = 0, max(f.limit, 100)
        while len(out) < f.limit:
            ids = self.redis.zrevrange(index, start, start + page - 1)
            if not ids:
                break
            start += page
            for raw in ids:
                state = self.load(raw.decode())
                if state is None or (f.status is not None and state.status != f.status):
                    continue
                if f.workflow_type is not None and state.workflow_type != f.workflow_type:
                    continue
                out.append(state)
                if len(out) >= f.limit:
                    break
        return out

    def counts(self, workflow_type: str | None = None) -> dict[str, int]:
        """From the listing indexes (derived data, updated just after each write)."""
        pipe = self.redis.pipeline(transaction=False)
        for status in WorkflowStatus:
            if workflow_type is None:
                pipe.zcard(self._index(f"status:{status.value}"))
            else:
                pipe.execute_command("ZINTERCARD", 2, self._index(f"status:{status.value}"),
                                     self._index(f"type:{workflow_type}"))
        return {status.value: int(n) for status, n in zip(WorkflowStatus, pipe.execute(), strict=True)}

    # --- writes -------------------------------------------------------------------------------------
    def create(self, state: WorkflowState, *, replace_run_id: str | None = None) -> None:
        check_events(state.history, 0, state.workflow_id)
        run_key, events_key, inbox_key = self.keys(state.workflow_id)
        call = CreateCall(
            run_key=run_key, events_key=events_key, inbox_key=inbox_key, run_id=state.run_id,
            status=state.status.value, summary=codec.encode_state(state), workflow_type=state.workflow_type,
            created=state.created_at, replace_run_id=replace_run_id, updated=state.updated_at,
            events=tuple(codec.encode_event(e) for e in state.history))

        def write(client: redis.Redis) -> None:
            created = self._lua.run(call, client=client)
            if created not in (b"", b"+"):
                check_create(state.workflow_id, created.decode(), WorkflowStatus.RUNNING, replace_run_id)
                raise WorkflowAlreadyStarted(f"workflow {state.workflow_id!r} already has an open run")
            self.reindex(state.workflow_id, state.workflow_type, state.created_at, state.status,
                         replaced=created == b"+")

        self.replicated(write, f"the start of workflow {state.workflow_id}", run_key)

    def save(self, state: WorkflowState) -> None:
        self.delete(state.workflow_id)
        self.create(state)

    def delete(self, workflow_id: str) -> None:
        state = self.load_summary(workflow_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(*self.keys(workflow_id), self.key(workflow_id, "lease"), self.key(workflow_id, "attempts"))
        pipe.zrem(self._index("all"), workflow_id)
        for status in WorkflowStatus:
            pipe.zrem(self._index(f"status:{status.value}"), workflow_id)
        if state is not None:
            pipe.zrem(self._index(f"type:{state.workflow_type}"), workflow_id)
        pipe.execute()

    def append(self, appends: Sequence[Append]) -> list[str]:
        for a in appends:  # a batch with a bad append writes nothing, as in the other stores
            check_append(a)
            for e in a.events:
                codec.encode_event(e)
        return [a.workflow_id for a in appends if self.append_one(a) is None]

    def append_one(self, a: Append, *, inbox_used: int = 0, attempts: Sequence[tuple[int, int]] = (),
                   lease_token: str | None = None, dispatch_deadline: float = 0.0,
                   summary: WorkflowState | None = None, timers: Sequence[tuple[float, bytes]] = ()) -> int | None:
        """One conditional append; None when refused. For the fleet, in the same atomic step:
        `inbox_used` consumes that many inbox messages (a message is consumed exactly when its events
        are recorded), `attempts` allows activity attempts (seq, attempt) to run before their tasks are
        sent (noted as dispatched until `dispatch_deadline`), `timers` arms durable timers, and
        `lease_token` releases the coordinator's lease. `summary` is the run's current summary when the
        caller has it. Returns the messages left; raises `HistoryLost` when the run's history is not
        whole (events lost), which nothing is ever appended to."""
        call = self.append_call(a, inbox_used=inbox_used, attempts=attempts, lease_token=lease_token,
                                dispatch_deadline=dispatch_deadline, summary=summary, timers=timers)
        if call is None:
            return None

        def write(client: redis.Redis) -> int | None:
            left = self._lua.run(call, client=client)
            if left == -2:
                raise HistoryLost(f"workflow {a.workflow_id}: its history in Redis is not whole (events lost: was a "
                                  "key evicted?); nothing was appended past the hole")
            if left < 0:
                return None
            if a.status is not None:
                self.restatus(a.workflow_id, a.status, summary.created_at if summary is not None else None,
                              was=WorkflowStatus.RUNNING)
            return int(left)

        return self.replicated(write, f"an append to workflow {a.workflow_id}", call.run_key)

    def append_many(self, calls: Sequence[AppendCall], created: Sequence[float | None]) -> list[int | None]:
        """Several `append_call`s (of different runs) in one pipeline, each atomic on its own, then the
        listing indexes of the runs they closed in another: for each, None when refused, else the messages
        left in its inbox (as `append_one`; a history found not whole is a refusal here, which the
        caller's re-read then finds). `created`: each run's creation time (its index order). Writes
        that replicas must confirm go one by one (`append_one`): a WAIT counts its own connection's writes."""
        if not calls:
            return []
        got = self._lua.run_all(calls)
        out: list[int | None] = [None if int(left) < 0 else int(left) for left in got]
        closed = [(c, at) for c, at, left in zip(calls, created, out, strict=True)
                  if left is not None and c.status]
        if closed:
            pipe = self.redis.pipeline(transaction=False)
            for c, at in closed:
                self._restatus_into(pipe, c.workflow_id, WorkflowStatus(c.status), at, (WorkflowStatus.RUNNING,))
            pipe.execute()
        return out

    def append_call(self, a: Append, *, inbox_used: int = 0, attempts: Sequence[tuple[int, int]] = (),
                    lease_token: str | None = None, dispatch_deadline: float = 0.0,
                    summary: WorkflowState | None = None,
                    timers: Sequence[tuple[float, bytes]] = ()) -> AppendCall | None:
        """The call `append_one` runs, None when the run is gone; the fleet's report-and-append
        extends it (beluga/lua/report_and_append.lua). `timers` are the fleet's durable timers (due,
        member) that the events arm, written in the same atomic step."""
        check_append(a)
        blob = b""
        if a.result is not None or a.error is not None or a.status is not None:
            current = summary if summary is not None else self.load_summary(a.workflow_id)
            if current is None:
                return None
            blob = codec.encode_state(summarize(current, a))
        run_key, events_key, inbox_key = self.keys(a.workflow_id)
        return AppendCall(
            run_key=run_key, events_key=events_key, inbox_key=inbox_key,
            attempts_key=self.key(a.workflow_id, "attempts"), lease_key=self.key(a.workflow_id, "lease"),
            # the fleet's dispatch record and timer set of the run's shard (a plain append writes neither)
            dispatched_key=f"{self.tag(a.workflow_id)}:dispatched",
            timers_key=f"{self.tag(a.workflow_id)}:timers",
            run_id=a.run_id, expected_version=a.expected_version, inbox_used=inbox_used,
            status=a.status.value if a.status else None, summary=blob, updated=a.updated_at or None,
            lease_token=lease_token or None, dispatch_deadline=dispatch_deadline, workflow_id=a.workflow_id,
            attempts=tuple(attempts), events=tuple(codec.encode_event(e) for e in a.events), timers=tuple(timers))

    def reindex(self, workflow_id: str, workflow_type: str, created_at: float, status: WorkflowStatus,
                replaced: bool = True) -> None:
        """List the run under its id, type and status (`replaced`: an earlier run of the id may be listed
        under another status; a new id is listed nowhere yet)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self._index("all"), {workflow_id: created_at})
        pipe.zadd(self._index(f"type:{workflow_type}"), {workflow_id: created_at})
        self._restatus_into(pipe, workflow_id, status, created_at, WorkflowStatus if replaced else ())
        pipe.execute()

    def restatus(self, workflow_id: str, status: WorkflowStatus, created_at: float | None = None,
                 was: WorkflowStatus | None = None) -> None:
        """Move the run to the index of its new status (derived data, updated after the write); the
        index is ordered by `created_at`, read from the index when not given. `was`: the status it is
        known to leave (an append closes an open run), else it leaves whichever it is in."""
        pipe = self.redis.pipeline(transaction=False)
        self._restatus_into(pipe, workflow_id, status, created_at, WorkflowStatus if was is None else (was,))
        pipe.execute()

    def _restatus_into(self, pipe: Any, workflow_id: str, status: WorkflowStatus, created_at: float | None,
                       leaving: Iterable[WorkflowStatus]) -> None:
        """Queue the run's move to the index of `status`, out of those of `leaving` (the statuses it may be
        listed under now)."""
        created = created_at if created_at is not None else self.redis.zscore(self._index("all"), workflow_id) or 0.0
        for s in leaving:
            if s is not status:
                pipe.zrem(self._index(f"status:{s.value}"), workflow_id)
        pipe.zadd(self._index(f"status:{status.value}"), {workflow_id: created})

    def close(self) -> None:
        self.redis.close()
