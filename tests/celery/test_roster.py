"""Which live worker has which code (beluga/celery/roster.py): the pure choice of where a run a worker
cannot drive goes, the code digests it compares, and the announcements' time to live in a real Redis."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from beluga.celery import roster
from beluga.celery.fleet import Fleet
from beluga.celery.roster import MAX_HOPS, MISSING, Announcement, Handoff
from beluga.stores.redis import RedisStore

ROOT = Path(__file__).resolve().parent.parent.parent
OLD, NEW = "aaaaaaaaaaaa", "bbbbbbbbbbbb"
LIVE = [Announcement("old@h", "q.old", {"X": OLD, "Y": OLD}), Announcement("new@h", "q.new", {"X": NEW}),
        Announcement("other@h", "q.other", {"Y": OLD})]


@pytest.mark.parametrize(("workflow_type", "mine", "tried", "me", "expected"), [
    ("X", MISSING, (), "other@h", {"old@h", "new@h"}),    # lacking X: any worker that has it
    ("X", OLD, (), "old@h", {"new@h"}),                   # another version of X: the other version only
    ("X", NEW, (), "new@h", {"old@h"}),                   # ... either way round
    ("Y", OLD, (), "old@h", set()),                       # the only other worker with Y has the same code
    ("X", MISSING, (NEW,), "other@h", {"old@h"}),         # a version tried already is not tried again
    ("X", OLD, (MISSING, NEW), "old@h", set()),           # every live version tried: stuck here
    ("Z", MISSING, (), "other@h", set()),                 # nobody has Z
    ("X", MISSING, (OLD,) * MAX_HOPS, "other@h", set()),  # a bound on hops, whatever is announced
    ("X", MISSING, (), None, {"old@h", "new@h"}),         # a client (no worker of its own)
])
def test_pick(workflow_type: str, mine: str, tried: tuple[str, ...], me: str | None, expected: set[str]) -> None:
    picked = {h.worker for h in (roster.pick(workflow_type, mine, tried, LIVE, me, choose=lambda c, i=i: c[i % len(c)])
                                 for i in range(4)) if h is not None}
    assert picked == expected
    if expected:
        got = roster.pick(workflow_type, mine, tried, LIVE, me, choose=lambda c: c[0])
        assert got == Handoff(got.worker, f"q.{got.worker.split('@')[0]}", (*tried, mine))


def test_announcements_round_trip_and_unreadable_ones_are_ignored() -> None:
    a = Announcement("w@h", "beluga.worker.w@h", {"X": OLD})
    assert roster.decode("w@h", roster.encode(a)) == a
    assert roster.decode("w@h", b"\xc1garbage") is None
    assert roster.decode("w@h", roster.codec.encode({"queue": 1, "workflows": {}})) is None


def _f(ctx: object, x: int) -> int:
    return x + 1


def _g(ctx: object, x: int) -> int:
    return x + 2


DIGEST = """
from beluga.celery import roster
def f(ctx, x):
    def inner(y):
        return y in {"a", "b", "c", "d"}
    return inner(x)
print(roster.code_digest(f))
"""


def test_code_digest_follows_the_code_not_its_place_nor_the_hash_seed(tmp_path: Path) -> None:
    assert roster.code_digest(_f) != roster.code_digest(_g)
    assert len(roster.code_digest(_f)) == 12
    # the same code at another line of another file, in processes with other hash seeds (a set constant)
    digests = set()
    for seed, pad in (("1", ""), ("2", "\n\n\n# moved\n")):
        script = tmp_path / f"wf{seed}.py"
        script.write_text(pad + DIGEST)
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)})
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_an_announcement_lives_for_its_ttl_and_a_clean_stop_withdraws_it(redis_url: str) -> None:
    fleet = Fleet(RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}"))
    fleet.announce_worker("a@h", b"A", ttl=0.3)
    fleet.announce_worker("b@h", b"B", ttl=30)
    assert fleet.live_workers() == [("a@h", b"A"), ("b@h", b"B")]
    fleet.withdraw_worker("b@h")
    assert fleet.live_workers() == [("a@h", b"A")]
    time.sleep(0.4)  # a worker that died: Redis expires its announcement, and readers forget its name
    assert fleet.live_workers() == []
    assert fleet.redis.scard(fleet.names.fleet("workers")) == 0
