"""The builders of the Redis store's scripts (beluga/lua/append.lua, create.lua, read.lua): each names its KEYS
and ARGV in the order of the script's header, so callers pass them by keyword (see beluga.lua)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from beluga.lua import Call, arg, key, part, tail

# What append.lua (and the append of report_and_append.lua) answers besides the messages left (>= 0):
APPEND_REFUSED = -1  # the run is not at the run id and version the writer read
APPEND_HISTORY_LOST = -2  # the run's history is not whole: nothing is appended past the hole
# What create.lua and start.lua answer when they created the run; anything else names the open run that
# blocks it (start.lua: or '=' and the run id this same request created before, see STARTED_BEFORE)
CREATED = ""  # the id had no run
CREATED_IN_PLACE = "+"  # in place of an earlier, closed run
STARTED_BEFORE = "="


def was_created(reply: str) -> bool:
    """Whether create.lua's or start.lua's reply says the run was created by this call."""
    return reply in (CREATED, CREATED_IN_PLACE)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendCall(Call):
    """The conditional append of one run: -1 when refused, else how many inbox messages are left."""

    SCRIPT: ClassVar[str] = "append.lua"
    run_key: str = key()
    events_key: str = key()
    inbox_key: str = key()
    lease_key: str = key()
    dispatched_key: str = key()
    timers_key: str = key()
    run_id: str = arg()
    expected_version: int = arg()
    inbox_used: int = arg()
    status: str | None = arg()
    summary: bytes | None = arg()
    updated: float | None = arg()
    lease_token: str | None = arg()
    dispatch_deadline: float = arg()
    workflow_id: str = arg()
    index_prefix: str = arg()
    attempts: Sequence[tuple[int, int]] = tail()
    events: Sequence[bytes] = tail()
    timers: Sequence[tuple[float, bytes]] = tail()


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendAttrsCall(Call):
    """`AppendCall` for a step that upserts search attributes: the run listed under `attrs` (the JSON of
    `redis_search.entries`) in the same atomic step. Answers as append.lua."""

    SCRIPT: ClassVar[str] = "append_attrs.lua"
    append: AppendCall = part(AppendCall)
    attrs: str | None = arg()

    # what callers of `RedisStore.append_call` read of the call they get
    @property
    def run_key(self) -> str:
        return self.append.run_key

    @property
    def workflow_id(self) -> str:
        return self.append.workflow_id

    @property
    def events(self) -> Sequence[bytes]:
        return self.append.events


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateCall(Call):
    """Start a run: b'' when created, else the id of the open run that blocks it."""

    SCRIPT: ClassVar[str] = "create.lua"
    run_key: str = key()
    events_key: str = key()
    inbox_key: str = key()
    run_id: str = arg()
    status: str = arg()
    summary: bytes = arg()
    workflow_type: str = arg()
    created: float = arg()
    replace_run_id: str | None = arg()
    updated: float = arg()
    workflow_id: str = arg()
    index_prefix: str = arg()
    attrs: str | None = arg(None)  # redis_search.entries: its search attributes' index entries
    events: Sequence[bytes] = tail()


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadCall(Call):
    """A run's hash `fields`, its version and its encoded events after `after`, at one instant; runs on a
    Redis out of memory (flagged no-writes)."""

    SCRIPT: ClassVar[str] = "read.lua"
    run_key: str = key()
    events_key: str = key()
    after: int = arg()
    fields: Sequence[str] = tail()


@dataclass(frozen=True, slots=True, kw_only=True)
class RelistCall(Call):
    """List a run that only 0.1.0's global index lists in its shard's indexes: 1, or 0 when it is gone."""

    SCRIPT: ClassVar[str] = "relist.lua"
    run_key: str = key()
    workflow_id: str = arg()
    index_prefix: str = arg()
    created: float = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class SummariesCall(Call):
    """The run hash `fields` of many runs of one shard, flat, run after run (false where missing)."""

    SCRIPT: ClassVar[str] = "summaries.lua"
    index_key: str = key()
    tag: str = arg()
    fields: Sequence[str] = tail()
    workflow_ids: Sequence[str] = tail()


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexPageCall(Call):
    """The next `count` entries of one shard's listing index past a cursor that pass the id conditions:
    flat (id, score) pairs, in the page's order."""

    SCRIPT: ClassVar[str] = "index_page.lua"
    index_key: str = key()
    backward: str = arg()          # "1" or ""
    score: str | None = arg()      # repr(float): exact
    workflow_id: str = arg()
    prefix: str = arg()
    kept_copies: str = arg()       # "1" or ""
    count: int = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class AttrPageCall(Call):
    """The next `count` entries of one shard's listing by a number or datetime attribute in a range, past a
    cursor, passing the id conditions: flat (id, creation time) pairs, in the page's order."""

    SCRIPT: ClassVar[str] = "attr_page.lua"
    attr_key: str = key()
    all_key: str = key()
    low: str = arg()
    high: str = arg()
    backward: str = arg()          # "1" or ""
    score: str | None = arg()
    workflow_id: str = arg()
    prefix: str = arg()
    kept_copies: str = arg()       # "1" or ""
    count: int = arg()


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexCountCall(Call):
    """How many of one shard's runs (of `index_key`) passing the id conditions each status index lists."""

    SCRIPT: ClassVar[str] = "index_count.lua"
    index_key: str = key()
    index_prefix: str = arg()
    prefix: str = arg()
    kept_copies: str = arg()       # "1" or ""
    statuses: Sequence[str] = tail()
