"""Fault injection for tests/celery/test_parent_close_crash.py, loaded by its crashing worker only
(BELUGA_IMPORTS): the coordinator that is to send the children of a closing parent whose id starts with
`crash-parent-close-` their parent-close policy kills its whole worker (`kill -9` of the worker's process
group: the main process and its pool, as an OOM kill or a lost host would) the first time, after the
append that closed the parent and before any child's message is pushed. Every call is counted by parent
(`test:close-children`), so the test sees the backup's."""

from __future__ import annotations

import os
import signal
from typing import Any

from beluga.celery.coordinator import Coordinator
from tests.celery.workflows import _redis

_close_children = Coordinator._close_children


def _close_children_or_die(self: Coordinator, parent_id: str, close: Any) -> None:
    r = _redis("BELUGA_TEST_CALLS_URL")
    r.hincrby("test:close-children", parent_id, 1)
    if parent_id.startswith("crash-parent-close-") and r.set(f"test:crashed:{parent_id}", close.parent_run_id,
                                                             nx=True):
        r.rpush("test:crash-seen", repr([e.type for e in self.store.history(parent_id)[-1:]]))
        os.killpg(os.getpgrp(), signal.SIGKILL)
    _close_children(self, parent_id, close)


Coordinator._close_children = _close_children_or_die  # type: ignore[method-assign]
