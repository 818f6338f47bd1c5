"""Processes a test started and left running: reported (and killed) at the end of the session.

A leaked worker keeps reconnecting to its broker's port; a later test's server that happens to get the
same free port then has a stranger consuming its queues, which takes (and skips as stale) messages of a
run that is not in its store. So a leak is named with the test that started it."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def children(pid: int) -> list[tuple[int, str]]:
    """The live direct children of `pid`, with their command lines."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                out.append((int(entry.name), cmd))
        except (OSError, ValueError, IndexError):
            continue
    return out


STARTED: dict[int, str] = {}  # pid -> the test that started it (tests.fleet.Worker and servers record theirs)


def started(pid: int) -> None:
    STARTED[pid] = os.environ.get("PYTEST_CURRENT_TEST", "?")


def reap() -> list[str]:
    """Kill this process's children still alive; returns a line for each."""
    lines = []
    for pid, cmd in children(os.getpid()):
        if "celery" not in cmd and "beluga" not in cmd and "server" not in cmd:
            continue
        lines.append(f"pid {pid} started by {STARTED.get(pid, '?')}: {cmd[:160]}")
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return lines
