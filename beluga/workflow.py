"""Beluga's public API: `from beluga import workflow`. Everything named in the API contract is here."""

from beluga.activities import (
    HumanActivity,
    HumanManager,
    HumanRequest,
    HumanResponse,
    InMemoryHumanManager,
    human_activity,
    llm_activity,
    tool_activity,
)
from beluga.activity import ActivityInfo, activity_info, heartbeat
from beluga.core.context import Future, SignalChannel, WorkflowContext
from beluga.core.definitions import Registry, activity, defn, registry
from beluga.core.errors import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    ConfigurationError,
    HistoryLost,
    InvalidName,
    NonDeterminismError,
    QueryNotFound,
    RemoteError,
    ReplicationError,
    ScheduleAlreadyExists,
    ScheduleNotFound,
    SerializationError,
    ServiceUnavailable,
    UnreadableRun,
    UpdateNotFound,
    WorkflowAlreadyStarted,
    WorkflowCancelled,
    WorkflowError,
    WorkflowFailed,
    WorkflowNotFound,
    WorkflowNotRunning,
)
from beluga.core.records import (
    Event,
    EventType,
    ParentClosePolicy,
    Signal,
    WorkflowFilter,
    WorkflowState,
    WorkflowStatus,
)
from beluga.core.reset import ResetError
from beluga.core.retry import RetryPolicy, default_retry_policy
from beluga.core.schedules import Interval, Overlap, ScheduleError, SchedulePolicy, ScheduleSpec
from beluga.core.search import InvalidSearchAttribute, Range
from beluga.executors.aio import AsyncExecutor, AsyncWorkflowHandle
from beluga.executors.base import Config, DurableExecutor, WorkflowHandle, WorkflowOptions
from beluga.hooks import Hooks, compose_hooks
from beluga.middleware import Middleware, apply_middleware, with_hooks
from beluga.providers import (
    list_providers,
    list_stores,
    new,
    new_async,
    new_executor,
    new_store,
    register,
    register_store,
)
from beluga.resets import ResetResult
from beluga.schedules import ScheduleDescription
from beluga.stores.base import WorkflowStore
from beluga.tracing import with_tracing

__all__ = [
    "ActivityError", "ActivityInfo", "ApplicationError", "AsyncExecutor", "AsyncWorkflowHandle", "ChildWorkflowError",
    "Config",
    "ConfigurationError", "DurableExecutor", "Event", "EventType", "Future", "Hooks", "HistoryLost", "HumanActivity",
    "HumanManager", "HumanRequest", "HumanResponse", "InMemoryHumanManager", "InvalidName", "Middleware",
    "NonDeterminismError", "ParentClosePolicy", "QueryNotFound", "Registry", "RemoteError", "ReplicationError",
    "RetryPolicy",
    "SerializationError", "ServiceUnavailable", "Signal", "SignalChannel", "UnreadableRun", "UpdateNotFound",
    "WorkflowAlreadyStarted",
    "WorkflowCancelled", "WorkflowContext",
    "WorkflowError", "WorkflowFailed", "WorkflowFilter", "WorkflowHandle", "WorkflowNotFound",
    "WorkflowNotRunning", "WorkflowOptions", "WorkflowState", "WorkflowStatus", "WorkflowStore",
    "activity", "activity_info", "apply_middleware", "compose_hooks", "default_retry_policy", "defn",
    "heartbeat", "human_activity", "list_providers", "list_stores", "llm_activity", "new", "new_async",
    "new_executor", "new_store", "register", "register_store", "registry", "tool_activity",
    "with_hooks", "with_tracing",
    # durable schedules (docs/schedules.md)
    "Interval", "Overlap", "ScheduleAlreadyExists", "ScheduleDescription", "ScheduleError", "ScheduleNotFound",
    "SchedulePolicy", "ScheduleSpec",
    # reset (docs/api.md)
    "ResetError", "ResetResult",
    # search attributes (docs/search-attributes.md)
    "InvalidSearchAttribute", "Range",
]
