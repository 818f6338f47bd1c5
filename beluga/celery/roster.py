"""Which live worker has which workflow code: a run is never held up by a worker that lacks its code
while another live worker has it.

Each worker announces, under a key with a time to live that its scheduler renews (`Fleet.announce_worker`,
`BELUGA_LEASE_SECONDS`; withdrawn at a clean shutdown), its own queue and, for each workflow type it has,
a short digest of that workflow function's code (`code_digest`). A worker that loads a run it cannot
drive (the type is missing here, or the code here does not match the run's history) looks for a live
worker with a version of the type not tried yet (`pick`); if there is one, the run goes to that worker's
own queue untouched: no stuck mark, no input recorded, its inbox left as it was. The versions tried
travel with the message, so a run visits each version at most once and at most MAX_HOPS workers; a
run becomes stuck, as before, only when no live worker is left to try.

Like Temporal's and Sidekiq's operators expect of a rolling deploy: the old and the new worker run side
by side, each run goes to a worker that can run it, and nothing waits on a backoff meanwhile."""

from __future__ import annotations

import hashlib
import inspect
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import CodeType
from typing import Any

from beluga import codec
from beluga.core.errors import SerializationError
from beluga.logs import get_logger

log = get_logger("beluga.roster")
MISSING = ""  # the version of a workflow type that a worker does not have
MAX_HOPS = 8  # workers a run is handed through at most before it is left stuck where it is
SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Announcement:
    """A live worker: its Celery node name, its own queue, and its workflow types -> code digests."""

    worker: str
    queue: str
    workflows: dict[str, str]


@dataclass(frozen=True, slots=True)
class Handoff:
    """Where a run goes: a worker, its queue, and the versions of the run's type tried so far (the
    sender's included)."""

    worker: str
    queue: str
    tried: tuple[str, ...]


def encode(announcement: Announcement) -> bytes:
    return codec.encode({"v": SCHEMA, "queue": announcement.queue, "workflows": announcement.workflows})


def decode(worker: str, raw: bytes) -> Announcement | None:
    """A worker's announcement, or None (logged) for one this version cannot read."""
    try:
        got = codec.decode(raw)
        queue, workflows = got["queue"], got["workflows"]
        if not isinstance(queue, str) or not isinstance(workflows, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in workflows.items()):
            raise TypeError("not a queue name and a map of names to digests")
    except (SerializationError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable announcement of worker %s: %s", worker, exc)
        return None
    return Announcement(worker, queue, workflows)


def versions(workflows: dict[str, Any]) -> dict[str, str]:
    """The code digest of each registered workflow (name -> definition with `fn`)."""
    return {name: code_digest(defn.fn) for name, defn in workflows.items()}


def pick(workflow_type: str, mine: str, tried: Iterable[str], live: Iterable[Announcement], me: str | None,
         choose: Callable[[list[Announcement]], Announcement] = random.choice) -> Handoff | None:
    """A live worker (not `me`) with a version of `workflow_type` that is neither `mine` (MISSING when
    this process lacks the type) nor one `tried` already; None when there is none, or the run has been
    handed on MAX_HOPS times. Pure: the caller reads the announcements."""
    tried = tuple(tried)
    if len(tried) >= MAX_HOPS:
        return None
    seen = {*tried, mine}
    candidates = [a for a in live if a.worker != me and workflow_type in a.workflows
                  and a.workflows[workflow_type] not in seen]
    if not candidates:
        return None
    target = choose(candidates)
    return Handoff(target.worker, target.queue, (*tried, mine))


def code_digest(fn: Callable[..., Any]) -> str:
    """12 hex digits that differ when a workflow function's code does: its bytecode, names and constants
    (nested functions' too), not its file or line numbers, so the same code deployed at another path or
    with edited comments has the same digest. Helpers it calls are not included: two workers whose
    digests are equal count as one version."""
    fn = inspect.unwrap(fn)
    h = hashlib.sha256()
    code = getattr(fn, "__code__", None)
    _feed(h, code if code is not None else getattr(fn, "__qualname__", repr(type(fn))))
    return h.hexdigest()[:12]


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, CodeType):
        h.update(b"c")
        h.update(value.co_code)
        for part in (value.co_names, value.co_varnames, value.co_freevars, value.co_cellvars, value.co_consts):
            _feed(h, part)
    elif isinstance(value, tuple):
        h.update(b"(%d" % len(value))
        for item in value:
            _feed(h, item)
    elif isinstance(value, frozenset):  # its order varies with the hash seed: sorted
        h.update(b"{%d" % len(value))
        for item in sorted(repr(v) for v in value):
            h.update(item.encode())
    else:
        text = repr(value).encode()
        h.update(b"%s%d:" % (type(value).__name__.encode(), len(text)))
        h.update(text)
