"""`run_activity`: one activity alone, with the `activity_info()` the test gives it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from beluga import workflow
from beluga.core.errors import SerializationError
from beluga.testing import ActivityInfo, activity_info, run_activity


@workflow.activity(name="testing_charge")
def charge(order: dict) -> dict:
    info = workflow.activity_info()
    workflow.heartbeat({"progress": 50})
    return {"key": info.idempotency_key, "attempt": info.attempt, "resumed_from": info.heartbeat_details,
            "order": order["id"], "name": info.activity_name}


def test_a_decorated_activity_runs_with_default_info() -> None:
    beats: list[Any] = []
    out = run_activity(charge, {"id": "o-1"}, heartbeats=beats)
    assert out == {"key": "test-workflow:test-run:1", "attempt": 1, "resumed_from": None, "order": "o-1",
                   "name": "testing_charge"}
    assert beats == [{"progress": 50}]


@workflow.activity(name="testing_async_charge")
async def async_charge(order: dict) -> dict:
    import asyncio

    await asyncio.sleep(0)
    workflow.heartbeat({"progress": 50})
    return {"key": workflow.activity_info().idempotency_key, "order": order["id"]}


def test_an_async_activity_is_awaited() -> None:
    beats: list[Any] = []
    assert run_activity(async_charge, {"id": "o-4"}, heartbeats=beats) == {"key": "test-workflow:test-run:1",
                                                                          "order": "o-4"}
    assert beats == [{"progress": 50}]


def test_the_info_the_test_gives_is_what_the_activity_sees() -> None:
    info = ActivityInfo("wf-9", "run-9", "testing_charge", 4, 3, heartbeat_details={"progress": 50})
    out = run_activity(charge, {"id": "o-2"}, info=info)
    assert out["key"] == "wf-9:run-9:4" and out["attempt"] == 3 and out["resumed_from"] == {"progress": 50}
    assert run_activity("testing_charge", {"id": "o-3"}, info=activity_info(attempt=2))["attempt"] == 2


def test_plain_functions_errors_and_values_that_cannot_travel() -> None:
    assert run_activity(lambda: workflow.activity_info().seq) == 1
    with pytest.raises(workflow.ApplicationError, match="declined"):
        run_activity(lambda x: (_ for _ in ()).throw(workflow.ApplicationError("declined")), 1)
    with pytest.raises(SerializationError):
        run_activity(lambda x: threading.Lock(), 1)
    assert isinstance(run_activity(lambda x: threading.Lock(), 1, encode=False), type(threading.Lock()))
    with pytest.raises(workflow.WorkflowError, match="only available inside a running activity"):
        workflow.activity_info()
