"""Pin the public API (`docs/api.md`): every name it promises exists, with the promised shape.
Adding a name means adding it here too; renaming one breaks users and this test on purpose."""

from __future__ import annotations

import inspect

import pytest

from beluga import workflow

# Every name docs/api.md gives under `from beluga import workflow`.
API_NAMES = {
    # writing workflows and activities
    "activity", "defn", "WorkflowContext", "Future", "activity_info", "heartbeat",
    # executors
    "new", "register", "list_providers", "new_executor", "Config", "DurableExecutor", "WorkflowHandle",
    "new_async", "AsyncExecutor", "AsyncWorkflowHandle",
    "WorkflowOptions", "Signal", "WorkflowStatus", "ParentClosePolicy",
    # retry
    "RetryPolicy", "default_retry_policy",
    # errors
    "WorkflowError", "WorkflowNotFound", "WorkflowAlreadyStarted", "WorkflowNotRunning", "WorkflowFailed",
    "WorkflowCancelled", "ActivityError", "NonDeterminismError", "QueryNotFound", "SerializationError",
    "ApplicationError",
    # stores
    "new_store", "list_stores", "WorkflowStore", "WorkflowState", "WorkflowFilter",
    # hooks and middleware
    "Hooks", "compose_hooks", "Middleware", "apply_middleware", "with_hooks", "with_tracing",
    # activity factories
    "llm_activity", "tool_activity", "human_activity",
    # durable schedules
    "ScheduleSpec", "SchedulePolicy", "Interval", "Overlap", "ScheduleDescription", "ScheduleError",
    "ScheduleNotFound", "ScheduleAlreadyExists",
    # reset
    "ResetError", "ResetResult",
    # search attributes
    "Range", "InvalidSearchAttribute",
}

# What `workflow.__all__` holds today: the API names plus the extras the project chose to add.
EXPORTS = API_NAMES | {
    "ActivityInfo", "ChildWorkflowError", "ConfigurationError", "Event", "EventType", "HumanActivity",
    "HumanManager", "HumanRequest", "HumanResponse", "InMemoryHumanManager", "Registry", "RemoteError",
    "ReplicationError", "SignalChannel", "register_store", "registry", "ServiceUnavailable",
    "HistoryLost", "InvalidName", "UnreadableRun", "UpdateNotFound",
}


@pytest.mark.parametrize("name", sorted(API_NAMES))
def test_api_name_exists(name: str) -> None:
    assert hasattr(workflow, name), f"beluga.workflow.{name} is promised by docs/api.md"


def test_all_is_pinned() -> None:
    assert set(workflow.__all__) == EXPORTS
    assert len(workflow.__all__) == len(set(workflow.__all__))
    for name in workflow.__all__:
        assert hasattr(workflow, name), name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from beluga.workflow import *", namespace)
    assert set(namespace) - {"__builtins__"} == EXPORTS


def test_import_paths() -> None:
    import beluga
    from beluga.stores import InMemoryStore, SQLiteStore, WorkflowStore

    assert beluga.workflow is workflow
    assert issubclass(InMemoryStore, WorkflowStore) and issubclass(SQLiteStore, WorkflowStore)
    assert workflow.WorkflowStore is WorkflowStore


ERRORS = ["WorkflowNotFound", "WorkflowAlreadyStarted", "WorkflowNotRunning", "WorkflowFailed",
          "WorkflowCancelled", "ActivityError", "NonDeterminismError", "QueryNotFound", "SerializationError",
          "ApplicationError", "ConfigurationError", "ChildWorkflowError", "RemoteError", "ScheduleError",
          "ScheduleNotFound", "ScheduleAlreadyExists"]


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_workflow_errors(name: str) -> None:
    assert issubclass(getattr(workflow, name), workflow.WorkflowError)
    assert issubclass(workflow.WorkflowError, Exception)


def test_application_error_signature() -> None:
    err = workflow.ApplicationError("order rejected", non_retryable=True)
    assert (str(err), err.non_retryable) == ("order rejected", True)
    assert workflow.ApplicationError("m").non_retryable is False


def test_workflow_status_values() -> None:
    assert {s.name: s.value for s in workflow.WorkflowStatus} == {
        "RUNNING": "running", "COMPLETED": "completed", "FAILED": "failed", "CANCELED": "canceled",
        "TIMED_OUT": "timed_out"}
    assert issubclass(workflow.WorkflowStatus, str)
    assert workflow.WorkflowStatus.RUNNING == "running"


def test_event_types_include_the_references_nine() -> None:
    for value in ["workflow_started", "workflow_completed", "workflow_failed", "workflow_canceled",
                  "activity_started", "activity_completed", "activity_failed", "signal_received", "timer_fired"]:
        assert value in vars(workflow.EventType).values()


def params(obj: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(obj).parameters.values()]  # type: ignore[arg-type]


E = inspect.Parameter.empty


@pytest.mark.parametrize(("obj", "expected"), [
    (workflow.WorkflowOptions, [("id", "POSITIONAL_OR_KEYWORD", None), ("input", "POSITIONAL_OR_KEYWORD", None),
                                ("timeout", "POSITIONAL_OR_KEYWORD", None),
                                ("queue", "POSITIONAL_OR_KEYWORD", None),
                                ("request_id", "POSITIONAL_OR_KEYWORD", None),
                                ("headers", "POSITIONAL_OR_KEYWORD", None),
                                ("identity", "POSITIONAL_OR_KEYWORD", None),
                                ("search_attributes", "POSITIONAL_OR_KEYWORD", None),
                                ("memo", "POSITIONAL_OR_KEYWORD", None),
                                ("priority", "POSITIONAL_OR_KEYWORD", None)]),
    (workflow.Signal, [("name", "POSITIONAL_OR_KEYWORD", E), ("payload", "POSITIONAL_OR_KEYWORD", None),
                       ("sent_at", "POSITIONAL_OR_KEYWORD", None), ("sender_id", "POSITIONAL_OR_KEYWORD", None),
                       ("request_id", "POSITIONAL_OR_KEYWORD", None)]),
    (workflow.WorkflowFilter, [("status", "POSITIONAL_OR_KEYWORD", None),
                               ("workflow_type", "POSITIONAL_OR_KEYWORD", None),
                               ("limit", "POSITIONAL_OR_KEYWORD", 100),
                               ("id_prefix", "POSITIONAL_OR_KEYWORD", None),
                               ("stuck", "POSITIONAL_OR_KEYWORD", None),
                               ("kept_copies", "POSITIONAL_OR_KEYWORD", True),
                               ("after", "POSITIONAL_OR_KEYWORD", None),
                               ("before", "POSITIONAL_OR_KEYWORD", None),
                               ("where", "POSITIONAL_OR_KEYWORD", None)]),
    (workflow.WorkflowContext.execute_activity,
     [("self", "POSITIONAL_OR_KEYWORD", E), ("activity", "POSITIONAL_OR_KEYWORD", E),
      ("input", "POSITIONAL_OR_KEYWORD", None), ("retry", "KEYWORD_ONLY", None), ("timeout", "KEYWORD_ONLY", None),
      ("heartbeat_timeout", "KEYWORD_ONLY", None), ("queue", "KEYWORD_ONLY", None),
      ("schedule_to_start_timeout", "KEYWORD_ONLY", None), ("priority", "KEYWORD_ONLY", None)]),
    (workflow.WorkflowContext.execute_child_workflow,
     [("self", "POSITIONAL_OR_KEYWORD", E), ("workflow", "POSITIONAL_OR_KEYWORD", E),
      ("input", "POSITIONAL_OR_KEYWORD", None), ("id", "KEYWORD_ONLY", None),
      ("parent_close_policy", "KEYWORD_ONLY", workflow.ParentClosePolicy.TERMINATE)]),
    (workflow.heartbeat, [("details", "POSITIONAL_OR_KEYWORD", None)]),
    (workflow.new, [("name", "POSITIONAL_OR_KEYWORD", E), ("config", "POSITIONAL_OR_KEYWORD", None)]),
])
def test_signatures(obj: object, expected: list[tuple[str, object, object]]) -> None:
    assert params(obj) == expected


def test_retry_policy_fields_and_config_defaults() -> None:
    assert [p[0] for p in params(workflow.RetryPolicy)] == [
        "max_attempts", "initial_interval", "backoff_coefficient", "max_interval", "non_retryable",
        "retry_after_counts"]
    cfg = workflow.Config()
    assert (cfg.store, cfg.hooks, cfg.extra) == (None, None, {})
    assert [p[0] for p in params(workflow.Hooks)] == [
        "on_workflow_start", "on_workflow_complete", "on_workflow_fail", "on_activity_start",
        "on_activity_complete", "on_signal", "on_retry"]


@pytest.mark.parametrize("member", ["workflow_id", "run_id", "execute_activity", "start_activity", "receive_signal",
                                    "sleep", "timer", "wait_any", "wait_all", "now", "random", "uuid4",
                                    "side_effect", "set_query_handler", "execute_child_workflow",
                                    "continue_as_new", "is_cancelled", "patched", "deprecate_patch",
                                    "set_update_handler", "wait_condition"])
def test_context_members(member: str) -> None:
    if member in ("workflow_id", "run_id"):
        assert member in inspect.signature(workflow.WorkflowContext.__init__).parameters
    else:
        assert callable(getattr(workflow.WorkflowContext, member))


@pytest.mark.parametrize("member", ["execute", "signal", "query", "cancel", "terminate", "get_handle", "describe",
                                    "close", "signal_with_start", "update"])
def test_executor_members(member: str) -> None:
    assert callable(getattr(workflow.DurableExecutor, member))


@pytest.mark.parametrize("member", ["status", "result"])
def test_handle_members(member: str) -> None:
    assert callable(getattr(workflow.WorkflowHandle, member))


@pytest.mark.parametrize("member", ["done", "result"])
def test_future_members(member: str) -> None:
    assert callable(getattr(workflow.Future, member))
    assert callable(getattr(workflow.SignalChannel, member if member == "done" else "receive"))


def test_testing_helpers() -> None:
    from beluga import testing

    assert {"Replayer", "replay", "ReplayResult", "WorkflowEnvironment", "run_activity", "ActivityInfo"} <= set(
        testing.__all__)
    assert testing.ActivityInfo is workflow.ActivityInfo
