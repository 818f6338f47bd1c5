"""Listing and counting the runs of a `RedisStore` from its shards' listing indexes (beluga/lua/lib/index.lua:
`<t>:index:all`, `:type:<type>`, `:status:<status>`, sorted sets of workflow ids scored by creation time).

A page merges the shards' indexes in the page's order. Each shard's index is read where it is, by
beluga/lua/index_page.lua: from the cursor's score on (no offset past earlier pages: any page costs about
the first's), keeping the ids that pass the listing's id conditions (prefix, kept copies), so that only
entries the page may show cross the network. The index only finds candidates: each run's summary is read
(one script a shard, summaries.lua), then the page's runs whole, and a run is kept only if it still
matches, so a run that changed meanwhile is never listed under what it no longer is. A listing with
search attributes (`where`) reads an attribute's index instead (beluga/stores/redis_search.py), a range
by attr_page.lua, and counts by the summaries of the runs it lists. Counts come from
the indexes' sizes, or, with id conditions, from index_count.lua; stuck (an open run with an error in
its summary, or the mark of a history found not whole) is known only from the summary: the stuck filter
and count read the summaries of the open runs the other conditions leave.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from beluga.core.records import WorkflowFilter, WorkflowState, WorkflowStatus
from beluga.lua import Scripts
from beluga.stores._common import count_by_status, counting, id_matches, in_window, is_stuck, matches
from beluga.stores.redis_scripts import AttrPageCall, IndexCountCall, IndexPageCall
from beluga.stores.redis_search import driving

Entry = tuple[float, str]  # (creation time, workflow id): a run's place in a listing


class RedisListing:
    """`client`: the store's connection; `lua`: its scripts; `prefixes`: every shard's `<t>:index:`;
    `summaries` and `load_many`: the store's batched reads (None for a run gone meanwhile)."""

    def __init__(self, client: Any, lua: Scripts, prefixes: list[str],
                 summaries: Callable[[Sequence[str]], list[WorkflowState | None]],
                 load_many: Callable[[Sequence[str]], list[WorkflowState | None]]) -> None:
        self.redis = client
        self.lua = lua
        self.prefixes = prefixes
        self.summaries = summaries
        self.load_many = load_many

    def indexes(self, name: str) -> list[str]:
        return [prefix + name for prefix in self.prefixes]

    # --- a page -------------------------------------------------------------------------------------------
    def page(self, f: WorkflowFilter) -> list[WorkflowState]:
        limit = max(f.limit, 0)
        if limit == 0:
            return []
        backward = f.before is not None and f.after is None
        out: list[WorkflowState] = []
        chunk: list[str] = []
        for _, workflow_id in self._candidates(f, backward, min(limit, 1000)):
            chunk.append(workflow_id)
            if len(chunk) >= max(limit - len(out), 20):
                out.extend(self._keep(f, chunk, limit - len(out)))
                chunk = []
                if len(out) >= limit:
                    break
        if chunk and len(out) < limit:
            out.extend(self._keep(f, chunk, limit - len(out)))
        out = out[:limit]
        return out[::-1] if backward else out

    def _keep(self, f: WorkflowFilter, workflow_ids: list[str], need: int) -> list[WorkflowState]:
        """The first `need` runs of `workflow_ids` that match: told apart by their summaries (cheap), then
        read whole."""
        workflow_ids = [s.workflow_id for s in self.summaries(workflow_ids) if s is not None and matches(f, s)][:need]
        return [s for s in self.load_many(workflow_ids) if s is not None and matches(f, s)]

    def _candidates(self, f: WorkflowFilter, backward: bool, count: int) -> Iterator[Entry]:
        """The ids the shards' indexes list under the filter's status (or type), past its cursors and
        passing its id conditions, in the page's order: each shard read `count` at a time (the first
        reads of all shards in one pipeline), the shards merged."""
        name, low, high = _index_name(f), None, None
        if f.where:  # an attribute's index finds fewer candidates than a status or type's
            name, low, high = driving(f.where)
        indexes = self.indexes(name)
        alls = dict(zip(indexes, self.indexes("all"), strict=True))

        def call(index: str, at: tuple[float, str] | None) -> IndexPageCall | AttrPageCall:
            cursor = {"backward": "1" if backward else "", "count": count,
                      "score": None if at is None else repr(float(at[0])), "workflow_id": "" if at is None else at[1],
                      "prefix": f.id_prefix or "", "kept_copies": "1" if f.kept_copies else ""}
            if low is None or high is None:
                return IndexPageCall(index_key=index, **cursor)
            return AttrPageCall(attr_key=index, all_key=alls[index], low=low, high=high, **cursor)

        def entries(index: str, got: list[bytes]) -> Iterator[Entry]:
            while got:
                last: Entry = (0.0, "")
                for i in range(0, len(got), 2):
                    last = (float(got[i + 1]), got[i].decode())
                    yield last
                if len(got) < 2 * count:
                    return
                got = self.lua.run(call(index, last))

        firsts = self.lua.run_all([call(index, f.before if backward else f.after) for index in indexes])
        streams = [entries(index, got) for index, got in zip(indexes, firsts, strict=True)]
        for entry in heapq.merge(*streams, reverse=not backward):
            if in_window(f, entry) and id_matches(f, entry[1]):
                yield entry

    # --- counts -------------------------------------------------------------------------------------------
    def counts(self, filter: WorkflowFilter | str | None) -> dict[str, int]:
        """By status, as `page` would list them over all its pages: from the indexes' sizes; with id
        conditions, counted by index_count.lua in each shard; stuck runs from the open runs' summaries."""
        f = counting(filter)
        running = WorkflowStatus.RUNNING.value
        if f.where:  # search attributes are known from the summaries of the runs their indexes list
            listed = [wid for _, wid in self._candidates(f, False, 1000)]
            return count_by_status(f, (s for s in self.summaries(listed) if s is not None))
        if f.stuck:  # a part of the open runs: their summaries tell
            stuck = len(self._stuck(f))
            return {status.value: stuck if status.value == running else 0 for status in WorkflowStatus}
        if f.id_prefix or not f.kept_copies:
            by_status = self._count_ids(f)
        else:
            by_status = self._count_indexes(f.workflow_type)
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
        shards = len(self.prefixes)
        return {status.value: sum(int(n) for n in got[i * shards:(i + 1) * shards])
                for i, status in enumerate(WorkflowStatus)}

    def _count_ids(self, f: WorkflowFilter) -> dict[str, int]:
        """Counted in each shard by index_count.lua: no id crosses the network."""
        base = f"type:{f.workflow_type}" if f.workflow_type is not None else "all"
        statuses = [status.value for status in WorkflowStatus]
        got = self.lua.run_all([IndexCountCall(index_key=prefix + base, index_prefix=prefix, prefix=f.id_prefix or "",
                                               kept_copies="1" if f.kept_copies else "", statuses=statuses)
                                for prefix in self.prefixes])
        return {status: sum(int(counts[i]) for counts in got) for i, status in enumerate(statuses)}

    def _stuck(self, f: WorkflowFilter) -> list[str]:
        """The ids of the stuck runs under the filter's type and id conditions (all pages)."""
        open_runs = WorkflowFilter(status=WorkflowStatus.RUNNING, id_prefix=f.id_prefix, kept_copies=f.kept_copies)
        ids = [wid for _, wid in self._candidates(open_runs, False, 1000)]
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
