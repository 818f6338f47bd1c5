"""The script loader (beluga/lua): every builder matches its file's header, includes are expanded and
policed, every script compiles, and a server that lost its script cache gets the scripts again."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from importlib import resources
from typing import ClassVar

import pytest
import redis

import beluga.lua as lua
from beluga.celery import fleet_scripts
from beluga.lua import Call, Scripts, arg, key, part, tail
from beluga.stores import redis_schedules, redis_scripts
from beluga.stores.redis_scripts import AppendCall

_ENTRY = re.compile(r"^--   (\S.*)$")   # an entry of a header's KEYS or ARGV list; deeper lines continue it


def _builders() -> list[type[Call]]:
    modules = (redis_scripts, fleet_scripts, redis_schedules)
    return [c for m in modules for c in vars(m).values()
            if isinstance(c, type) and issubclass(c, Call) and c is not Call and c.__module__ == m.__name__]


def _script_files() -> set[str]:
    return {f.name for f in resources.files("beluga.lua").iterdir() if f.name.endswith(".lua")}


def header(name: str) -> tuple[list[str], list[str]]:
    """The KEYS and ARGV names a script's header comment lists, in order."""
    lists: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in resources.files("beluga.lua").joinpath(name).read_text().splitlines():
        if line.startswith("#!"):  # a script's flags (`#!lua flags=no-writes`) come before its header
            continue
        if not line.startswith("--"):
            break
        if line.rstrip() in ("-- KEYS", "-- ARGV"):
            current = lists.setdefault(line.split()[1], [])
        elif line.startswith("-- Returns"):
            current = None
        elif current is not None and (m := _ENTRY.match(line)):
            current += [n.strip() for n in re.split(r"\s{2,}", m.group(1))[0].split(",") if n.strip()]
    return lists.get("KEYS", []), lists.get("ARGV", [])


@pytest.mark.parametrize("builder", _builders(), ids=lambda c: c.__name__)
def test_every_builder_matches_its_script_header(builder: type[Call]) -> None:
    keys, argv = header(builder.SCRIPT)
    assert keys and argv
    assert builder.names() == (keys, argv)


_READ = re.compile(r"^(?:tonumber\()?(KEYS|ARGV)\[(\d+)\]\)?$")


def reads(name: str) -> dict[tuple[str, int], set[str]]:
    """Which local or table field each fixed KEYS[i] and ARGV[i] of a script is read into (`x = KEYS[1]`,
    `local a, b = KEYS[1], tonumber(ARGV[2])`, `{a = ARGV[1], b = ARGV[2]}`)."""
    out: dict[tuple[str, int], set[str]] = {}
    for line in resources.files("beluga.lua").joinpath(name).read_text().splitlines():
        line = line.split("--", 1)[0]
        multi = re.match(r"^local ((?:\w+, )+\w+) = (.+)$", line)
        if multi:
            pairs = zip(multi.group(1).split(", "), multi.group(2).split(", "), strict=True)
        else:
            pairs = ((m.group(1), m.group(2)) for m in re.finditer(r"(\w+) = ([^,]+)", line))
        for local, expr in pairs:
            if m := _READ.match(expr.strip().rstrip(",")):
                out.setdefault((m.group(1), int(m.group(2))), set()).add(local)
    return out


@pytest.mark.parametrize("name", sorted(_script_files()))
def test_every_script_reads_its_inputs_where_its_header_says(name: str) -> None:
    """Together with the builders' check above: the builder, the header and the code agree."""
    keys, argv = header(name)
    fixed = {("KEYS", i + 1): n for i, n in enumerate(keys)}
    fixed.update({("ARGV", i + 1): "n_" + n[1:] if n.startswith("#") else n
                  for i, n in enumerate(argv) if not n.endswith("...")})
    assert reads(name) == {pos: {n} for pos, n in fixed.items()}


def test_every_script_file_has_one_builder() -> None:
    scripts = [b.SCRIPT for b in _builders()]
    assert sorted(scripts) == sorted(_script_files())


def test_header_parser_reads_grouped_and_variadic_entries() -> None:
    keys, argv = header("report_and_append.lua")
    assert keys[:7] == ["run_key", "events_key", "inbox_key", "lease_key", "dispatched_key", "timers_key",
                        "running_info_key"]
    assert argv[-6:] == ["#attempts", "#events", "#timers", "attempts...", "events...", "timers..."]


def test_argv_layout_fixed_then_counts_then_tails() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class Inner(Call):
        SCRIPT: ClassVar[str] = "inner.lua"
        a_key: str = key()
        x: int = arg()
        pairs: tuple[tuple[int, int], ...] = tail()

    @dataclass(frozen=True, slots=True, kw_only=True)
    class Outer(Call):
        SCRIPT: ClassVar[str] = "outer.lua"
        inner: Inner = part(Inner)
        b_key: str = key()
        y: str | None = arg()
        items: tuple[bytes, ...] = tail()

    call = Outer(inner=Inner(a_key="A", x=1, pairs=((2, 3), (4, 5))), b_key="B", y=None, items=(b"i",))
    assert call.keys() == ["A", "B"]
    assert call.argv() == [1, "", 2, 1, 2, 3, 4, 5, b"i"]
    assert Outer.names() == (["a_key", "b_key"], ["x", "y", "#pairs", "#items", "pairs...", "items..."])


def test_include_is_expanded_in_place() -> None:
    text = lua.source("append.lua")
    assert "#include" not in text
    assert text.count("local function append_allowed(a)") == 1
    assert text.index("-- >>> lib/append.lua") < text.index("local function append_write(a)") < text.index(
        "-- <<< lib/append.lua") < text.index("return append_write(a)")
    assert lua.source("report_and_append.lua").count("local function append_write(a)") == 1


@pytest.mark.parametrize("lib, complaint", [
    ("local function f(t)\n  return ARGV[1]\nend\n", "reads KEYS or ARGV"),
    ("local function f(t)\n  return t.x\nend\nlocal x = KEYS[1]\n", "reads KEYS or ARGV"),
    ("local function f(t)\n  return t.x\nend\nredis.call('DEL', 'k')\n", "may only define local functions"),
    ('-- #include "lib/other.lua"\nlocal function f(t)\n  return t.x\nend\n', "includes another file"),
])
def test_included_files_only_define_functions(monkeypatch: pytest.MonkeyPatch, lib: str, complaint: str) -> None:
    files = {"main.lua": '-- #include "lib/shared.lua"\nreturn f({})\n', "lib/shared.lua": lib}
    monkeypatch.setattr(lua, "_read", files.__getitem__)
    with pytest.raises(ValueError, match=complaint):
        lua.source.__wrapped__("main.lua")


def test_only_lib_files_are_included(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lua, "_read", {"main.lua": '-- #include "begin.lua"\n'}.__getitem__)
    with pytest.raises(ValueError, match="only files under lib/"):
        lua.source.__wrapped__("main.lua")


def test_shipped_lib_files_pass_the_include_rules() -> None:
    for name in sorted(_script_files()):
        lua.source.__wrapped__(name)   # raises if an included file breaks the rules


def test_every_script_compiles(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for name in sorted(_script_files()):
        assert client.script_load(lua.source(name))


def test_a_server_that_lost_its_scripts_gets_them_again(redis_url: str) -> None:
    """What a restarted Redis looks like: EVALSHA answers NOSCRIPT, and the script is loaded again,
    directly and through a pipeline."""
    client = redis.Redis.from_url(redis_url)
    scripts = Scripts(client, [AppendCall])
    p = f"t{uuid.uuid4().hex[:8]}"
    call = AppendCall(run_key=f"{p}:run", events_key=f"{p}:events", inbox_key=f"{p}:inbox",
                      lease_key=f"{p}:lease", dispatched_key=f"{p}:dispatched",
                      timers_key=f"{p}:timers",
                      run_id="r", expected_version=0, inbox_used=0, status=None, summary=None, updated=None,
                      lease_token=None, dispatch_deadline=0.0, workflow_id="w", index_prefix="")
    assert scripts.run(call) == -1          # no such run: refused
    client.script_flush()
    assert scripts.run(call) == -1
    client.script_flush()
    pipe = client.pipeline(transaction=False)
    scripts.run(call, client=pipe)
    assert pipe.execute() == [-1]


def test_every_script_carries_redis_7_flags() -> None:
    """A script without a `#!lua` line runs under Redis's compatibility rules, which refuse it for lack of
    memory only at its first command that grows memory: one that starts with a DEL or HDEL would write
    half a step past `maxmemory`. With the flags, a full Redis refuses a writing script whole, before it
    runs; only scripts flagged `no-writes` run then."""
    unflagged = sorted(name for name in _script_files()
                       if not resources.files("beluga.lua").joinpath(name).read_text().startswith("#!lua"))
    assert not unflagged, f"scripts without a '#!lua' line: {unflagged}"
