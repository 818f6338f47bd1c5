"""`RedisStore`: runs in Redis or a Redis Cluster, appended by a compare-and-append Lua script.

Every workflow id belongs to one of `SHARDS` shards (crc32 of the id, modulo), and all keys of a run carry
its shard's hash tag: `<t>:<id>:run` (hash: run_id, type, status, version, summary, ...), `<t>:<id>:inbox`
(list of messages waiting for the coordinator) and, once the run has more than `INLINE_EVENTS` events,
`<t>:<id>:events` (a stream of one entry per append: id `0-<id of its last event>`, one field per event,
named by the event's id, in order; streams written by earlier versions hold entries `0-<i>` of one field
`e`, read alike. Before that the events are fields `e:<i>` of the run hash, so a short or parked run
costs one key), where `<t>` is `<p>:{s<shard>}`. The fleet keeps its
per-shard records (timers, attempts, wake-ups) under the same tag, so each of its scripts touches one
slot of a Redis Cluster. So do the listing indexes (`<t>:index:all`, `:index:type:<type>`,
`:index:status:<status>`, sorted sets by creation time), written by the step that creates or closes a run
(beluga/lua/lib/index.lua): a run that exists is listed; a listing merges the shards' indexes. The
scripts are beluga/lua/append.lua, create.lua and read.lua, called through the builders in `redis_scripts`.
"""
from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from beluga import codec
from beluga.core.errors import HistoryLost, ReplicationError, SerializationError, WorkflowAlreadyStarted
from beluga.core.failure import history_lost, unreadable_run
from beluga.core.records import Append, Event, WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.logs import get_logger
from beluga.lua import Scripts
from beluga.stores import redis_search
from beluga.stores._common import DEFAULT_FILTER, check_append, check_create, check_events, summarize
from beluga.stores.base import WorkflowStore
from beluga.stores.redis_keys import SHARDS, KeyLayout, RunKeys, shard_of  # noqa: F401 - shard_of re-exported
from beluga.stores.redis_listing import RedisListing
from beluga.stores.redis_scripts import (
    APPEND_HISTORY_LOST,
    APPEND_REFUSED,
    AppendAttrsCall,
    AppendCall,
    AttrPageCall,
    CreateCall,
    IndexCountCall,
    IndexPageCall,
    ReadCall,
    RelistCall,
    SummariesCall,
    was_created,
)
from beluga.stores.schedule_store import ScheduleStore

# the summary blob, the fields appends keep apart from it, the mark of a history found not whole, and
# what names the run should its summary not decode
_SUMMARY_FIELDS = ("summary", "status", "updated", "lost", "run_id", "type", "created")
INLINE_EVENTS = 8    # a run's first events live in its run hash (beluga/lua/lib/events.lua says the same)
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
            unreadable_run(f"the stored summary of workflow {workflow_id} cannot be read by this "
                           f"Beluga ({exc}); it is held stuck: upgrade the workers if a newer Beluga wrote it"),
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
    return history_lost(str(mark.get("message", "")))


def _gap(workflow_id: str, version: int, after: int, whole: bool, events: list[bytes | None]) -> str | None:
    """Why the `events` read are not exactly the history past `after` up to `version`, or None when they
    are: every load checks that the history is whole, and never replays a partial one. `whole`: the
    history's first and last events are where the version says (lib/events.lua's `events_whole`); with
    that, one event for each id past `after` means every one of them is there."""
    found = sum(e is not None for e in events)
    if whole and found == len(events) == max(version - after, 0):
        return None
    return (f"events of workflow {workflow_id}'s history are missing in Redis: it is at event {version}, but of "
            f"events {after + 1}-{version} {found} were found{'' if whole else ', its first or last missing'}. "
            "Was a key evicted (maxmemory-policy must be noeviction) or deleted? The run cannot be replayed or "
            "extended: it is held stuck and never completes")


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


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


SOCKET_TIMEOUT = 5.0    # the defaults of BELUGA_REDIS_SOCKET_TIMEOUT and BELUGA_REDIS_CONNECT_TIMEOUT
CONNECT_TIMEOUT = 3.0
# TCP keepalive on every connection: an idle connection (a pub/sub wait, a pooled client) to a host that
# vanished is dropped after about a minute (30 s idle, then 3 probes 10 s apart), not after hours.
_KEEPALIVE = {name: value for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
              if hasattr(socket, name)}


def socket_options(socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT) -> dict[str, Any]:
    """The connection options of every Redis connection Beluga makes (redis-py's names, which kombu's
    Redis transport takes too): no call waits for a frozen or unreachable Redis longer than the timeouts,
    and idle connections are probed (keepalive)."""
    for name, value in (("BELUGA_REDIS_SOCKET_TIMEOUT", socket_timeout),
                        ("BELUGA_REDIS_CONNECT_TIMEOUT", connect_timeout)):
        if not value > 0:
            raise ValueError(f"{name} must be a number of seconds above 0, not {value!r}")
    return {"socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout, "socket_keepalive": True,
            "socket_keepalive_options": {getattr(socket, name): v for name, v in _KEEPALIVE.items()}}


def connect(url: str, socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT) -> Any:
    """A client for `url`: `redis://`, `rediss://` (TLS), `unix://` give a `redis.Redis`;
    `redis+cluster://host:port` (`rediss+cluster://` for TLS) a `redis.cluster.RedisCluster` that finds
    the other nodes from that one. Its connections have `socket_options` (options in the URL's query,
    `?socket_timeout=...`, win). A command is retried once, at once, only when its connection was found
    closed (a pooled connection to a Redis that restarted): redis-py 6 and later would otherwise retry
    timeouts too, three times with backoff of up to 10 s, so one call to a frozen Redis took a minute;
    Beluga's callers retry within their own budgets (`BELUGA_CLIENT_RETRY_SECONDS`, the lease)."""
    options = socket_options(socket_timeout, connect_timeout)
    scheme, sep, rest = url.partition("://")
    if sep and scheme in CLUSTER_SCHEMES:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme]}://{rest}", **options)
    return redis.Redis.from_url(url, **_single(url, options),
                                retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))


def _single(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of a client of one server: `options`, but no keepalive without TCP (`unix://`), and a
    command retried (once, see `connect`) only when its pooled connection was found closed."""
    if url.startswith("unix:"):
        options = {k: v for k, v in options.items() if not k.startswith("socket_keepalive")}
    return {**options, "retry_on_error": [redis.ConnectionError]}


# Connections of one async client at most: a burst of concurrent calls past it waits for a free one (up to
# the socket timeout, then the call's retries) instead of failing at once with "Too many connections".
ASYNC_CONNECTIONS = 100


def connect_async(url: str, socket_timeout: float = SOCKET_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT) -> Any:
    """`connect`'s client on redis-py's asyncio client (`redis.asyncio.Redis`), with the same options and
    the same single retry of a command whose pooled connection was found closed; for the async client
    (beluga/bridge.py). At most ASYNC_CONNECTIONS connections. Bound to the event loop it is first used
    in. A Redis Cluster is not supported yet."""
    import redis.asyncio
    from redis.asyncio.retry import Retry as AsyncRetry

    scheme, sep, _ = url.partition("://")
    if sep and scheme in CLUSTER_SCHEMES:
        from beluga.core.errors import ConfigurationError

        raise ConfigurationError(f"the async client does not support a Redis Cluster ({scheme}://) yet: use "
                                 "workflow.new('celery') from a thread pool")
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, **_single(url, socket_options(socket_timeout, connect_timeout)), max_connections=ASYNC_CONNECTIONS,
        timeout=socket_timeout, retry=AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
    return redis.asyncio.Redis(connection_pool=pool)


def is_cluster(client: Any) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def _split_read(got: list[Any], n: int) -> tuple[list[Any], int, bool, list[bytes | None]]:
    """What read.lua answered: the `n` fields asked for, the run's version, whether its history looked
    whole (lib/events.lua's `events_whole`), and the encoded events it read past `after` (None where an
    event the version promises is missing)."""
    return got[:n], int(got[n] or 0), bool(got[n + 1]), list(got[n + 2:])


def _loaded(workflow_id: str, fields: list[Any], version: int, whole: bool, events: list[bytes | None]
            ) -> WorkflowState | None:
    """The run `load` read. A history that is not whole, or an event that does not decode, makes a state
    all the same, its reason in `error` (see `_state`)."""
    gap = _gap(workflow_id, version, 0, whole, events)
    problem = None if gap is None else history_lost(gap)
    try:
        history = tuple(codec.decode_event(e) for e in events if e is not None) if gap is None else ()
    except SerializationError as exc:
        history = ()
        problem = problem or unreadable_run(
            f"an event of workflow {workflow_id} cannot be read by this Beluga ({exc}); it is "
            "held stuck: upgrade the workers if a newer Beluga wrote it")
    return _state(workflow_id, fields, history, problem)


class RedisStore(WorkflowStore):
    """`url` is any redis-py URL (`redis://`, `rediss://` for TLS, with a password) or a Redis Cluster's
    (`redis+cluster://`, `rediss+cluster://`, see `connect`); or pass `client`.
    With `append_replicas` > 0, each write of a run (creation, append, inbox message) counts only once
    that many replicas confirmed it within `append_replicas_timeout` seconds (see `replicated`).
    `socket_timeout` and `connect_timeout`: see `connect`."""

    def __init__(self, url: str = "redis://localhost:6379/0", *, prefix: str = "beluga",
                 client: redis.Redis | None = None, append_replicas: int = 0,
                 append_replicas_timeout: float = 1.0, socket_timeout: float = SOCKET_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.redis = client if client is not None else connect(url, socket_timeout, connect_timeout)
        self.cluster = is_cluster(self.redis)
        self.prefix = prefix
        self._schedule_store: ScheduleStore | None = None
        self.names = KeyLayout(prefix)  # every key name (beluga/stores/redis_keys.py)
        self.append_replicas = append_replicas
        self.append_replicas_timeout = append_replicas_timeout
        self._lua = Scripts(self.redis, [AppendCall, AppendAttrsCall, CreateCall, ReadCall, RelistCall, SummariesCall,
                                         IndexPageCall, AttrPageCall, IndexCountCall])
        self._listing = RedisListing(self.redis, self._lua, [self.names.shard(n).index_prefix for n in range(SHARDS)],
                                     self.load_summaries, self.load_many)

    # --- key layout: `names` (beluga/stores/redis_keys.py); these read it for tests and tools ----------
    def shard_tag(self, shard: int) -> str:
        """`<p>:{s<shard>}`: the hash tag of a shard's keys, its runs' and the fleet's records about them."""
        return self.names.shard(shard).tag

    def tag(self, workflow_id: str) -> str:
        return self.names.shard_of(workflow_id).tag

    def keys(self, workflow_id: str) -> tuple[str, str, str]:
        """The run's hash, events stream and inbox."""
        k = self.names.run(workflow_id)
        return k.run, k.events, k.inbox

    def key(self, workflow_id: str, name: str) -> str:
        return self.names.run(workflow_id).key(name)

    def index_prefix(self, workflow_id: str) -> str:
        """`<t>:index:`: the listing indexes of the run's shard (beluga/lua/lib/index.lua)."""
        return self.names.shard_of(workflow_id).index_prefix

    def _indexes(self, name: str) -> list[str]:
        """The index `name` ("all", "type:<type>", "status:<status>") of every shard."""
        return [f"{self.names.shard(shard).index_prefix}{name}" for shard in range(SHARDS)]

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
        return _state(workflow_id, self.redis.hmget(self.names.run(workflow_id).run, *_SUMMARY_FIELDS), ())

    def history(self, workflow_id: str, after: int = 0) -> list[Event]:
        """The events past `after`; `HistoryLost` when they are not all there."""
        _, version, whole, events = self._read(workflow_id, (), after)
        gap = _gap(workflow_id, version, after, whole, events)
        if gap is not None:
            raise HistoryLost(gap)
        return [codec.decode_event(e) for e in events if e is not None]

    def _read(self, workflow_id: str, names: Sequence[str], after: int
              ) -> tuple[list[Any], int, bool, list[bytes | None]]:
        """The run hash's fields `names`, its version, whether its history looks whole, and its encoded
        events past `after`, read at one instant (the events are in the run hash or in the run's stream,
        see beluga/lua/lib/events.lua) by a script flagged no-writes, which a Redis out of memory still
        runs (it refuses a MULTI's reads)."""
        return _split_read(self._lua.run(self._read_call(workflow_id, names, after)), len(names))

    def mark_lost(self, workflow_id: str, run_id: str, message: str) -> None:
        """Note on the run that its history was found not whole, so that even a summary read
        (`load_summary`: status checks, result waits) says so. Names the run: a new run of the id
        (whose creation drops the mark) is never taken for it."""
        self.redis.hset(self.names.run(workflow_id).run, "lost", codec.encode({"run": run_id, "message": message}))

    def _read_call(self, workflow_id: str, names: Sequence[str], after: int) -> ReadCall:
        k = self.names.run(workflow_id)
        return ReadCall(run_key=k.run, events_key=k.events, after=after, fields=tuple(names))

    def load_many(self, workflow_ids: Sequence[str]) -> list[WorkflowState | None]:
        """`load` of several runs in one round trip (a pipeline of read scripts: each run is read at one
        instant, as `load` reads it; one by one on a Redis Cluster, whose runs live on several nodes). Each
        run on its own: one that cannot be read whole is a state with its reason (see `_loaded`), never an
        error that would stop the batch."""
        got = self._lua.run_all([self._read_call(w, _SUMMARY_FIELDS, 0) for w in workflow_ids])
        return [_loaded(wid, *_split_read(read, len(_SUMMARY_FIELDS))) for wid, read in zip(workflow_ids, got,
                                                                                              strict=True)]

    def version(self, workflow_id: str) -> tuple[str | None, int]:
        run_id, version = self.redis.hmget(self.names.run(workflow_id).run, "run_id", "version")
        return (run_id.decode() if run_id else None), int(version or 0)

    def load_summaries(self, workflow_ids: Sequence[str]) -> list[WorkflowState | None]:
        """`load_summary` of many runs: one read script per shard (beluga/lua/summaries.lua), in one pipeline."""
        by_shard: dict[int, list[str]] = {}
        for workflow_id in workflow_ids:
            by_shard.setdefault(shard_of(workflow_id), []).append(workflow_id)
        calls = [SummariesCall(index_key=self.names.shard(n).index_prefix + "all", tag=self.names.shard(n).tag,
                               fields=_SUMMARY_FIELDS, workflow_ids=ids) for n, ids in by_shard.items()]
        found: dict[str, WorkflowState | None] = {}
        width = len(_SUMMARY_FIELDS)
        for call, got in zip(calls, self._lua.run_all(calls) if calls else [], strict=True):
            for i, workflow_id in enumerate(call.workflow_ids):
                found[workflow_id] = _state(workflow_id, got[i * width:(i + 1) * width], ())
        return [found[workflow_id] for workflow_id in workflow_ids]

    def list(self, filter: WorkflowFilter | None = None) -> list[WorkflowState]:
        """From the shards' listing indexes (see `beluga.stores.redis_listing`)."""
        return self._listing.page(filter or DEFAULT_FILTER)

    def counts(self, filter: WorkflowFilter | str | None = None) -> dict[str, int]:
        """From the listing indexes of every shard (written by the steps that create and close runs)."""
        return self._listing.counts(filter)

    # --- writes -------------------------------------------------------------------------------------
    def create(self, state: WorkflowState, *, replace_run_id: str | None = None) -> None:
        check_events(state.history, 0, state.workflow_id)
        k = self.names.run(state.workflow_id)
        call = CreateCall(
            run_key=k.run, events_key=k.events, inbox_key=k.inbox, run_id=state.run_id,
            status=state.status.value, summary=codec.encode_state(state), workflow_type=state.workflow_type,
            created=state.created_at, replace_run_id=replace_run_id, updated=state.updated_at,
            workflow_id=state.workflow_id, index_prefix=k.shard.index_prefix,
            attrs=redis_search.entries(state.search_attributes),
            events=tuple(codec.encode_event(e) for e in state.history))

        def write(client: redis.Redis) -> None:
            got = self._lua.run(call, client=client)  # listed in the same step
            if not was_created(reply := got.decode()):
                check_create(state.workflow_id, reply, WorkflowStatus.RUNNING, replace_run_id)
                raise WorkflowAlreadyStarted(f"workflow {state.workflow_id!r} already has an open run")

        self.replicated(write, f"the start of workflow {state.workflow_id}", k.run)

    def save(self, state: WorkflowState) -> None:
        self.delete(state.workflow_id)
        self.create(state)

    def delete(self, workflow_id: str) -> None:
        state = self.load_summary(workflow_id)
        k = self.names.run(workflow_id)
        listed_under = redis_search.suffixes(self.redis.hget(k.run, "sa"))
        pipe = self.redis.pipeline(transaction=False)
        for key in (k.run, k.events, k.inbox, k.lease, k.attempts):  # one a command: a cluster's pipeline
            pipe.delete(key)                                          # deletes no more
        indexes = k.shard.index_prefix
        pipe.zrem(f"{indexes}all", workflow_id)
        for status in WorkflowStatus:
            pipe.zrem(f"{indexes}status:{status.value}", workflow_id)
        if state is not None:
            pipe.zrem(f"{indexes}type:{state.workflow_type}", workflow_id)
        for name in listed_under:
            pipe.zrem(indexes + name, workflow_id)
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
            left = self._lua.run(call, client=client)  # a closed run is relisted in the same step
            if left == APPEND_HISTORY_LOST:
                raise HistoryLost(f"workflow {a.workflow_id}: its history in Redis is not whole (events lost: was a "
                                  "key evicted?); nothing was appended past the hole")
            return None if left == APPEND_REFUSED else int(left)

        return self.replicated(write, f"an append to workflow {a.workflow_id}", call.run_key)

    def append_many(self, calls: Sequence[AppendCall | AppendAttrsCall]) -> list[int | None]:
        """Several `append_call`s (of different runs) in one pipeline, each atomic on its own (a closed run
        relisted in it): for each, None when refused, else the messages left in its inbox (as
        `append_one`; a history found not whole is a refusal here, which the caller's re-read then finds).
        Writes that replicas must confirm go one by one (`append_one`): a WAIT counts its own connection's
        writes."""
        if not calls:
            return []
        return [None if int(left) in (APPEND_REFUSED, APPEND_HISTORY_LOST) else int(left)
                for left in self._lua.run_all(calls)]

    def append_call(self, a: Append, *, inbox_used: int = 0, attempts: Sequence[tuple[int, int]] = (),
                    lease_token: str | None = None, dispatch_deadline: float = 0.0,
                    summary: WorkflowState | None = None,
                    timers: Sequence[tuple[float, bytes]] = ()) -> AppendCall | AppendAttrsCall | None:
        """The call `append_one` runs, None when the run is gone; the fleet's report-and-append
        extends it (beluga/lua/report_and_append.lua). `timers` are the fleet's durable timers (due,
        member) that the events arm, written in the same atomic step. An append that sets search attributes
        is an `AppendAttrsCall` (append_attrs.lua): the same append, and the run listed under them."""
        check_append(a)
        blob = b""
        if a.result is not None or a.error is not None or a.status is not None or a.search_attributes is not None:
            current = summary if summary is not None else self.load_summary(a.workflow_id)
            if current is None:
                return None
            blob = codec.encode_state(summarize(current, a))
        k = self.names.run(a.workflow_id)
        call = AppendCall(
            run_key=k.run, events_key=k.events, inbox_key=k.inbox, lease_key=k.lease,
            # the fleet's dispatch record and timer set of the run's shard (a plain append writes neither)
            dispatched_key=k.shard.dispatched, timers_key=k.shard.timers,
            run_id=a.run_id, expected_version=a.expected_version, inbox_used=inbox_used,
            status=a.status.value if a.status else None, summary=blob, updated=a.updated_at or None,
            lease_token=lease_token or None, dispatch_deadline=dispatch_deadline, workflow_id=a.workflow_id,
            index_prefix=k.shard.index_prefix, attempts=tuple(attempts),
            events=tuple(codec.encode_event(e) for e in a.events), timers=tuple(timers))
        if a.search_attributes is None:
            return call
        return AppendAttrsCall(append=call, attrs=redis_search.entries(a.search_attributes))

    def adopt_listing(self, batch: int = 500) -> int:
        """List the runs that Beluga 0.1.0 listed in one global index (`<p>:index:all`, `:status:*`,
        `:type:*`) in their shards' indexes, where this version lists and counts, then drop the old
        index: a run written before an upgrade stays listed. Each run is listed under what its hash says
        at that instant (relist.lua), so a run closing meanwhile is listed once. Cheap when there is
        nothing to adopt (one EXISTS); safe to run from several workers at once. Returns the runs listed."""
        old = self.names.old_index_prefix
        if not self.redis.exists(old + "all"):
            return 0
        listed, types = 0, set()
        entries = list(self.redis.zscan_iter(old + "all", count=batch))
        for start in range(0, len(entries), batch):
            chunk = [(wid.decode() if isinstance(wid, bytes) else wid, created)
                     for wid, created in entries[start:start + batch]]
            pipe = self.redis.pipeline(transaction=False)
            for workflow_id, _ in chunk:
                pipe.hget(self.names.run(workflow_id).run, "type")
            types.update(t.decode() for t in pipe.execute() if t)
            for workflow_id, created in chunk:
                listed += int(self._lua.run(RelistCall(
                    run_key=self.names.run(workflow_id).run, workflow_id=workflow_id,
                    index_prefix=self.names.shard_of(workflow_id).index_prefix, created=created)))
        stale = [old + "all", *(old + f"status:{s.value}" for s in WorkflowStatus), *(old + f"type:{t}" for t in types)]
        for name in stale:  # one key per command: on a Redis Cluster they live in different slots
            self.redis.delete(name)
        log.info("listed %d runs of Beluga 0.1.0's global index in their shards' indexes", listed)
        return listed

    def schedules(self) -> ScheduleStore:
        """The schedules kept in this store (under its prefix)."""
        if self._schedule_store is None:
            from beluga.stores.redis_schedules import RedisSchedules

            self._schedule_store = RedisSchedules(self)
        return self._schedule_store

    def close(self) -> None:
        self.redis.close()
