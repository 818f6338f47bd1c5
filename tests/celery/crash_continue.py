"""Fault injection for tests/celery/test_continue_crash.py, loaded by its workers only (BELUGA_IMPORTS):
the process that carries out a continue-as-new of a run whose id starts with `crash-continue-` dies
(`os._exit(9)`) once per id, after the step that records it and before the next run is created; and
every run created as a continuation is counted, by the run it continues (`test:continued`)."""

from __future__ import annotations

import os
from typing import Any

from beluga.celery.process import FleetProcess
from beluga.stores.redis import RedisStore
from tests.celery.workflows import _redis

_start_child = FleetProcess.start_child
_create = RedisStore.create


def _start_child_or_die(self: FleetProcess, c: Any, link: Any, queue: Any, *, continue_from: Any = None,
                        input: Any = None) -> None:
    if continue_from is not None and continue_from.workflow_id.startswith("crash-continue-"):
        r = _redis("BELUGA_TEST_CALLS_URL")
        if r.set(f"test:crashed:{continue_from.workflow_id}", continue_from.run_id, nx=True):
            r.rpush("test:crash-seen", repr([e.type for e in self.store.history(continue_from.workflow_id)[-1:]]))
            os._exit(9)
    _start_child(self, c, link, queue, continue_from=continue_from, input=input)


def _counted_create(self: RedisStore, state: Any, *, replace_run_id: str | None = None) -> None:
    _create(self, state, replace_run_id=replace_run_id)
    if replace_run_id is not None:
        _redis("BELUGA_TEST_CALLS_URL").hincrby("test:continued", replace_run_id, 1)


FleetProcess.start_child = _start_child_or_die  # type: ignore[method-assign]
RedisStore.create = _counted_create  # type: ignore[method-assign]
