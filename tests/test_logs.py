"""Log records about a run carry its identity as attributes (beluga.logs), in-process; the fleet's worker
lines are checked in tests/celery/test_observability.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from beluga import logs, workflow
from beluga.stores import InMemoryStore

shop = logging.getLogger("tests.logs.shop")


@workflow.activity(name="logs_charge")
def charge(order: str) -> str:
    shop.warning("charging %s", order)
    if workflow.activity_info().attempt == 1:
        raise RuntimeError("card reader busy")
    return "charged"


@workflow.defn(name="logs_order")
def order(ctx: workflow.WorkflowContext, order_id: str) -> str:
    return ctx.execute_activity(charge, order_id, retry=workflow.RetryPolicy(max_attempts=2, initial_interval=0.01))


class JSONFormatter(logging.Formatter):
    """What a user's JSON formatter does: every record attribute it knows of, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"logger": record.name, "message": record.getMessage(),
                           **{k: getattr(record, k, "MISSING") for k in (*logs.FIELDS, "beluga")}})


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[dict] = []
        self.setFormatter(JSONFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def collected() -> Iterator[tuple[Collect, Collect]]:
    """A handler with the filter (a user who wants the fields on every record), one without."""
    filtered, plain = Collect(), Collect()
    filtered.addFilter(logs.RunContextFilter())
    root = logging.getLogger()
    old_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(filtered)
    root.addHandler(plain)
    try:
        yield filtered, plain
    finally:
        root.removeHandler(filtered)
        root.removeHandler(plain)
        root.setLevel(old_level)


def test_activity_lines_name_workflow_run_seq_and_attempt(collected) -> None:
    filtered, _ = collected
    ex = workflow.new_executor(InMemoryStore())
    try:
        handle = ex.execute(order, workflow.WorkflowOptions(id="logs-1", input="ORD-1"))
        assert handle.result(timeout=10) == "charged"
    finally:
        ex.close()
    charging = [line for line in filtered.lines if line["message"] == "charging ORD-1"]
    assert [(c["workflow_id"], c["run_id"], c["activity"], c["seq"], c["attempt"]) for c in charging] == [
        ("logs-1", handle.run_id, "logs_charge", 1, 1), ("logs-1", handle.run_id, "logs_charge", 1, 2)]
    assert charging[1]["beluga"] == f" [workflow logs-1 run {handle.run_id} activity logs_charge seq 1 attempt 2]"


def test_beluga_lines_carry_the_fields_on_any_handler(collected) -> None:
    """A record from Beluga's own loggers about a run has the fields even on a handler without the
    filter: here a hook that raises, logged by the engine as it carries out the run's step."""
    filtered, plain = collected
    logging.getLogger().removeHandler(filtered)   # only the plain handler: the logger itself adds them

    def broken(workflow_id: str, payload: object) -> None:
        raise ValueError("hook bug")

    ex = workflow.new_executor(InMemoryStore(), hooks=workflow.Hooks(on_workflow_complete=broken))
    try:
        handle = ex.execute(order, workflow.WorkflowOptions(id="logs-2", input="ORD-2"))
        handle.result(timeout=10)
    finally:
        ex.close()
    [hook] = [line for line in plain.lines if line["logger"] == "beluga.hooks"]
    assert (hook["workflow_id"], hook["run_id"]) == ("logs-2", handle.run_id)


def test_records_outside_a_run_get_empty_fields(collected) -> None:
    filtered, _ = collected
    shop.warning("nothing to do with a run")
    [line] = [x for x in filtered.lines if x["message"] == "nothing to do with a run"]
    assert all(line[k] is None for k in logs.FIELDS) and line["beluga"] == ""


def test_extra_given_by_the_caller_wins(collected) -> None:
    filtered, _ = collected
    with logs.bound(workflow_id="w", run_id="r"):
        shop.warning("explicit", extra={"workflow_id": "mine"})
    [line] = [x for x in filtered.lines if x["message"] == "explicit"]
    assert (line["workflow_id"], line["run_id"]) == ("mine", "r")
