"""The Lua scripts of the Redis store and the fleet: one file per script in this folder, read by name,
registered with redis-py and run through a builder that names every KEYS and ARGV entry.

Why files: a script is read and reviewed as Lua, and its header comment (KEYS, ARGV, what it returns)
sits with the code that reads them. Every script reads its KEYS and ARGV by position once, at its top,
into named locals; nothing else in it knows a position.

Why builders (`Call`): the Python side of that contract. A builder is a frozen dataclass whose fields
are the script's KEYS (`key()`) and ARGV (`arg()`, and `tail()` for variable-length lists), declared in
the order of the file's header; callers pass them by keyword and never see a position. The ARGV of
every script is laid out by one rule: the `arg()` fields, then the length `#name` of each `tail()`,
then each tail's items (pairs flattened). `None` is sent as '' (the scripts read '' as "not given").
A field may also be a whole other builder (`part()`), whose keys, arguments and tails take its place
among the fields: the fleet's report-and-append is the store's append followed by the report.
tests/test_lua.py checks every builder against its file's header.

Why `-- #include "lib/<name>.lua"` for shared logic: the store's conditional append is also the tail
of the fleet's one-round-trip report-and-append; taking the coordinator lease with its read is shared
by `begin` and `report`; retiring a finished attempt by `report` and `report_and_append`. Two copies
would drift apart, and gluing fragments by position (as before) made one script's ARGV[11] another's
ARGV[x + 6]. Redis 7 functions could share code on the server, but need a deploy step that loads the
library again after every restart or failover. A registered script (`register_script`) carries its
whole text instead, and redis-py loads it again when the server answers EVALSHA with NOSCRIPT. So the
loader pastes an included file in place of its `#include` line, once, when the script is read: the
server sees one complete script whose SHA covers the included code. An included file (under `lib/`)
only defines `local function`s that take every key and argument as a parameter, usually one table
with named fields; it never reads KEYS or ARGV and includes nothing itself. The loader refuses one
that breaks these rules, and marks where each included file starts and ends (Redis reports errors by
line of the expanded text).

Why every script starts with `#!lua` (Redis 7's script flags): a script with flags that does not
declare `allow-oom` is refused whole, before it runs, while Redis is out of memory (`maxmemory` with
`noeviction`): a refusal that says nothing was written. A script without flags was refused only at its
first command that may grow memory, and not at all when a command that frees memory (DEL, LTRIM) came
first: then it ran to its end past `maxmemory`, so whether a step went through depended on its code.
read.lua declares `no-writes`: Redis runs it out of memory, and on a replica.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import MISSING, field, fields
from importlib import resources
from operator import attrgetter
from typing import Any, ClassVar

from redis.commands.core import Script
from redis.exceptions import NoScriptError

_INCLUDE = re.compile(r'^--\s*#include\s+"([\w./-]+)"\s*$', re.MULTILINE)
_READS_INPUT = re.compile(r"\b(KEYS|ARGV)\b")


@functools.cache
def source(name: str) -> str:
    """The script `name` (e.g. "append.lua") as sent to Redis, its includes expanded; read once."""
    return _INCLUDE.sub(lambda m: _included(m.group(1), name), _read(name))


def _read(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _included(name: str, into: str) -> str:
    if not name.startswith("lib/"):
        raise ValueError(f"{into}: only files under lib/ may be included, not {name!r}")
    text = _read(name)
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    if _READS_INPUT.search(code):
        raise ValueError(f"{name} reads KEYS or ARGV: an included file takes everything as parameters")
    if _INCLUDE.search(text):
        raise ValueError(f"{name} includes another file: included files include nothing")
    for line in code.splitlines():
        if line.strip() and not line[0].isspace() and not (line.startswith("local function ") or line == "end"):
            raise ValueError(f"{name} may only define local functions, found: {line!r}")
    return f"-- >>> {name}\n{text.rstrip()}\n-- <<< {name}"


# --- builders -------------------------------------------------------------------------------------------
def key() -> Any:
    """A KEYS entry."""
    return field(metadata={"lua": "key"})


def arg(default: Any = MISSING) -> Any:
    """A fixed ARGV entry; None is sent as ''. `default`: its value when not given."""
    return field(default=default, metadata={"lua": "arg"})


def tail() -> Any:
    """A variable-length list of ARGV entries, after all fixed ones; its length is sent as `#name`.
    Items that are tuples or lists are flattened ((seq, attempt) pairs are sent as seq, attempt, ...)."""
    return field(default=(), metadata={"lua": "tail"})


def part(of: type[Call]) -> Any:
    """A whole other builder (of class `of`): its keys, arguments and tails each take the field's place."""
    return field(metadata={"lua": "part", "of": of})


class Call:
    """Base of the builders: a subclass is a frozen, keyword-only dataclass naming its `SCRIPT` file."""

    __slots__ = ()
    SCRIPT: ClassVar[str]

    def keys(self) -> list[Any]:
        return [get(self) for get in _getters(type(self))["key"]]

    def argv(self) -> list[Any]:
        getters = _getters(type(self))
        tails = [get(self) for get in getters["tail"]]
        return [*(_wire(get(self)) for get in getters["arg"]), *(len(t) for t in tails),
                *(_wire(x) for t in tails for x in _flat(t))]

    @classmethod
    def names(cls) -> tuple[list[str], list[str]]:
        """The KEYS and ARGV names in the order the script's header lists them."""
        plan = {kind: [path.rsplit(".", 1)[-1] for path in paths] for kind, paths in _plan(cls).items()}
        return plan["key"], [*plan["arg"], *(f"#{t}" for t in plan["tail"]), *(f"{t}..." for t in plan["tail"])]


@functools.cache
def _plan(cls: type[Call]) -> dict[str, tuple[str, ...]]:
    """The attribute paths of the class's keys, arguments and tails, in order, parts expanded
    ("append.run_key"); worked out once per class."""
    plan: dict[str, list[str]] = {"key": [], "arg": [], "tail": []}
    for f in fields(cls):  # type: ignore[arg-type]
        kind = f.metadata.get("lua")
        if kind == "part":
            for part_kind, paths in _plan(f.metadata["of"]).items():
                plan[part_kind] += [f"{f.name}.{p}" for p in paths]
        elif kind in plan:
            plan[kind].append(f.name)
        else:
            raise TypeError(f"{cls.__name__}.{f.name} is neither key(), arg(), tail() nor part()")
    return {kind: tuple(paths) for kind, paths in plan.items()}


@functools.cache
def _getters(cls: type[Call]) -> dict[str, tuple[Callable[[Any], Any], ...]]:
    return {kind: tuple(attrgetter(p) for p in paths) for kind, paths in _plan(cls).items()}


def _wire(value: Any) -> Any:
    return "" if value is None else value


def _flat(items: Sequence[Any]) -> Iterator[Any]:
    for item in items:
        if isinstance(item, (tuple, list)):
            yield from item
        else:
            yield item


class Scripts:
    """The scripts one owner (the store, the fleet) runs on one client, registered once up front, so a
    missing file fails at construction. redis-py sends EVALSHA and falls back to EVAL on NOSCRIPT."""

    def __init__(self, client: Any, calls: Iterable[type[Call]]) -> None:
        self._client = client
        self._registered: dict[str, Script] = {c.SCRIPT: client.register_script(source(c.SCRIPT)) for c in calls}

    def run(self, call: Call, client: Any = None) -> Any:
        """Run the call's script (on `client`, e.g. a pipeline, when given)."""
        return self._registered[call.SCRIPT](keys=call.keys(), args=call.argv(), client=client)

    def run_all(self, calls: Sequence[Call]) -> list[Any]:
        """Run several calls in one pipeline, their results in order (on a Redis Cluster, whose client
        pipelines no scripts, one after the other). Not a transaction: each script is atomic on its own.
        Scripts the server lost are loaded again; the first other error is raised once all have run."""
        if not calls:
            return []
        if not hasattr(self._client, "connection_pool"):  # a RedisCluster: its pipelines refuse EVALSHA
            return [self.run(call) for call in calls]
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for again in (False, True):
            pipe = self._client.pipeline(transaction=False)
            for i in todo:
                keys = calls[i].keys()
                pipe.evalsha(self._registered[calls[i].SCRIPT].sha, len(keys), *keys, *calls[i].argv())
            for i, got in zip(todo, pipe.execute(raise_on_error=False), strict=True):
                results[i] = got
            todo = [i for i in todo if isinstance(results[i], NoScriptError)]
            if not todo or again:
                break
            for name in {calls[i].SCRIPT for i in todo}:
                self._client.script_load(source(name))
        for got in results:
            if isinstance(got, Exception):
                raise got
        return results
