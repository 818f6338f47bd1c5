"""Listing and counting the runs of a `RedisStore` from its shards' listing indexes (beluga/lua/lib/index.lua:
`<t>:index:all`, `:type:<type>`, `:status:<status>`, sorted sets of workflow ids scored by creation time).

A page merges the shards' indexes in the page's order, each read from the cursor's score on
(`ZREVRANGEBYSCORE <index> <created> -inf LIMIT ...`), so it costs the same whichever page it is: nothing
is skipped by counting. An id prefix is found by `ZSCAN ... MATCH <prefix>*` in each shard's index (done
by Redis, no member sent that does not match). The index only finds candidates: each run is read (its
summary, then the page's runs whole) and kept only if it still matches, so a run that changed meanwhile
is never listed under what it no longer is. Stuck (an open run with an error in its summary, or the mark
of a history found not whole) is known only from the summary: the stuck filter reads the summaries of
the open runs the other conditions leave.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from beluga.core.records import WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.stores._common import counting, id_matches, in_window, is_kept_copy, is_stuck, matches

Entry = tuple[float, str]  # (creation time, workflow id): a run's place in a listing
SCAN_COUNT = 1000


def glob_escape(text: str) -> str:
    """`text` matched literally by a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisListing:
    """`client`: the store's connection; `indexes(name)`: the index `name` of every shard; `summaries`
    and `load_many`: the store's batched reads (None for a run gone meanwhile)."""

    def __init__(self, client: Any, indexes: Callable[[str], list[str]],
                 summaries: Callable[[Sequence[str]], list[WorkflowState | None]],
                 load_many: Callable[[Sequence[str]], list[WorkflowState | None]]) -> None:
        self.redis = client
        self.indexes = indexes
        self.summaries = summaries
        self.load_many = load_many

    # --- a page -------------------------------------------------------------------------------------------
    def page(self, f: WorkflowFilter) -> list[WorkflowState]:
        limit = max(f.limit, 0)
        if limit == 0:
            return []
        backward = f.before is not None and f.after is None
        out: list[WorkflowState] = []
        chunk: list[str] = []
        for _, workflow_id in self._candidates(f, backward, max(limit, 20)):
            chunk.append(workflow_id)
            if len(chunk) >= max(limit - len(out), 20):
                out.extend(self._keep(f, chunk))
                chunk = []
                if len(out) >= limit:
                    break
        if chunk and len(out) < limit:
            out.extend(self._keep(f, chunk))
        out = out[:limit]
        return out[::-1] if backward else out

    def _keep(self, f: WorkflowFilter, workflow_ids: list[str]) -> list[WorkflowState]:
        """The runs of `workflow_ids` that match: told apart by their summaries (cheap), then read whole."""
        workflow_ids = [s.workflow_id for s in self.summaries(workflow_ids) if s is not None and matches(f, s)]
        return [s for s in self.load_many(workflow_ids) if s is not None and matches(f, s)]

    def _candidates(self, f: WorkflowFilter, backward: bool, batch: int) -> Iterator[Entry]:
        """The ids the shards' indexes list under the filter's status (or type), past its cursors and
        passing its id conditions, in the page's order."""
        indexes = self.indexes(_index_name(f))
        if f.id_prefix:
            found = [sorted(entries, reverse=not backward)
                     for entries in self._scan(indexes, glob_escape(f.id_prefix) + "*")]
            streams: list[Iterator[Entry]] = [iter(entries) for entries in found]
        else:
            streams = self._streams(indexes, f, backward, batch)
        for entry in heapq.merge(*streams, reverse=not backward):
            if in_window(f, entry) and id_matches(f, entry[1]):
                yield entry

    def _streams(self, indexes: list[str], f: WorkflowFilter, backward: bool, batch: int) -> list[Iterator[Entry]]:
        """Each index from the cursor's score on, in the page's order (ties by id, as Redis orders them),
        read `batch` at a time; the first batches in one pipeline."""
        bound = f.before if backward else f.after
        edge = ("-inf" if backward else "+inf") if bound is None else repr(float(bound[0]))

        def read(client: Any, index: str, offset: int) -> Any:
            if backward:
                return client.zrangebyscore(index, edge, "+inf", start=offset, num=batch, withscores=True)
            return client.zrevrangebyscore(index, edge, "-inf", start=offset, num=batch, withscores=True)

        pipe = self.redis.pipeline(transaction=False)
        for index in indexes:
            read(pipe, index, 0)

        def entries(index: str, got: list[tuple[bytes, float]]) -> Iterator[Entry]:
            offset = 0
            while got:
                for member, score in got:
                    yield float(score), member.decode()
                if len(got) < batch:
                    return
                offset += batch
                got = read(self.redis, index, offset)

        return [entries(index, first) for index, first in zip(indexes, pipe.execute(), strict=True)]

    def _scan(self, indexes: list[str], pattern: str) -> list[list[Entry]]:
        """The members of each index that match `pattern`, with their scores (ZSCAN: Redis does the
        matching; the first call to every index in one pipeline)."""
        out: list[list[Entry]] = [[] for _ in indexes]
        cursors = {i: 0 for i in range(len(indexes))}
        while cursors:
            pipe = self.redis.pipeline(transaction=False)
            order = list(cursors)
            for i in order:
                pipe.zscan(indexes[i], cursors[i], match=pattern, count=SCAN_COUNT)
            for i, (cursor, got) in zip(order, pipe.execute(), strict=True):
                out[i].extend((float(score), member.decode()) for member, score in got)
                if int(cursor) == 0:
                    del cursors[i]
                else:
                    cursors[i] = int(cursor)
        return out

    # --- counts -------------------------------------------------------------------------------------------
    def counts(self, filter: WorkflowFilter | str | None) -> dict[str, int]:
        """By status, as `page` would list them over all pages: from the indexes' sizes; the ids of a
        prefix (or of kept copies, taken off) found by ZSCAN; stuck runs from the open runs' summaries."""
        f = counting(filter)
        running = WorkflowStatus.RUNNING.value
        if f.stuck:  # a part of the open runs: their summaries tell
            return {status.value: len(self._stuck(f)) if status.value == running else 0 for status in WorkflowStatus}
        base = f"type:{f.workflow_type}" if f.workflow_type is not None else "all"
        if f.id_prefix:
            by_status = self._count_ids(f, [[wid for _, wid in entries if id_matches(f, wid)] for entries in
                                            self._scan(self.indexes(base), glob_escape(f.id_prefix) + "*")])
        else:
            by_status = self._count_indexes(f.workflow_type)
            if not f.kept_copies:
                copies = self._count_ids(f, [[wid for _, wid in entries if is_kept_copy(wid)] for entries in
                                             self._scan(self.indexes(base), "*/runs/*")])
                by_status = {status: n - copies[status] for status, n in by_status.items()}
        if f.stuck is None:
            return by_status
        return {**by_status, running: by_status[running] - len(self._stuck(f))}

    def _count_indexes(self, workflow_type: str | None) -> dict[str, int]:
        pipe = self.redis.pipeline(transaction=False)
        for status in WorkflowStatus:
            for index, of_type in zip(self.indexes(f"status:{status.value}"), self.indexes(f"type:{workflow_type}"),
                                      strict=True):
                if workflow_type is None:
                    pipe.zcard(index)
                else:
                    pipe.execute_command("ZINTERCARD", 2, index, of_type)
        got = pipe.execute()
        shards = len(self.indexes("all"))
        return {status.value: sum(int(n) for n in got[i * shards:(i + 1) * shards])
                for i, status in enumerate(WorkflowStatus)}

    def _count_ids(self, f: WorkflowFilter, ids_by_shard: list[list[str]]) -> dict[str, int]:
        """How many of each shard's `ids` each status index of that shard lists (ZMSCORE)."""
        pipe = self.redis.pipeline(transaction=False)
        asked: list[str] = []
        for status in WorkflowStatus:
            for index, ids in zip(self.indexes(f"status:{status.value}"), ids_by_shard, strict=True):
                if ids:
                    pipe.zmscore(index, ids)
                    asked.append(status.value)
        out = {status.value: 0 for status in WorkflowStatus}
        for status, scores in zip(asked, pipe.execute() if asked else [], strict=True):
            out[status] += sum(score is not None for score in scores)
        return out

    def _stuck(self, f: WorkflowFilter) -> list[str]:
        """The ids of the stuck runs under the filter's type and id conditions (all pages)."""
        running = self.indexes(f"status:{WorkflowStatus.RUNNING.value}")
        if f.id_prefix:
            found = self._scan(running, glob_escape(f.id_prefix) + "*")
            ids = [wid for entries in found for _, wid in entries]
        else:
            pipe = self.redis.pipeline(transaction=False)
            for index in running:
                pipe.zrange(index, 0, -1)
            ids = [member.decode() for got in pipe.execute() for member in got]
        ids = [wid for wid in ids if id_matches(f, wid)]
        want = WorkflowFilter(workflow_type=f.workflow_type, stuck=True)
        return [s.workflow_id for s in self.summaries(ids) if s is not None and is_stuck(s) and matches(want, s)]


def _index_name(f: WorkflowFilter) -> str:
    """The index whose members are the candidates: of the status (open, for stuck), else the type."""
    status = WorkflowStatus.RUNNING if f.stuck and f.status is None else f.status
    if status is not None:
        return f"status:{WorkflowStatus(status).value}"
    if f.workflow_type is not None:
        return f"type:{f.workflow_type}"
    return "all"

