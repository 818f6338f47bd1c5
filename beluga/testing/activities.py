"""Running one activity alone, as an executor would run one attempt of it, with the `activity_info()`
the test chooses — no workflow, store or worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from beluga import codec
from beluga.activity import ActivityInfo, run_async_with_info, run_with_info
from beluga.core.definitions import ActivityDefinition, Registry
from beluga.core.definitions import registry as default_registry


def activity_info(activity_name: str = "activity", *, workflow_id: str = "test-workflow", run_id: str = "test-run",
                  seq: int = 1, attempt: int = 1, heartbeat_details: Any = None) -> ActivityInfo:
    """An `ActivityInfo` with test defaults; its idempotency key is `test-workflow:test-run:1`."""
    return ActivityInfo(workflow_id, run_id, activity_name, seq, attempt, heartbeat_details)


def run_activity(activity: Callable[..., Any] | str, input: Any = None, *, info: ActivityInfo | None = None,
                 heartbeats: list[Any] | None = None, registry: Registry | None = None,
                 encode: bool = True) -> Any:
    """Run `activity` (a function, decorated or not, or a registered name) on `input` and return its
    result, raising what it raises. Inside it, `workflow.activity_info()` returns `info` (default:
    `activity_info(<its name>)`) and each `workflow.heartbeat(details)` appends `details` to
    `heartbeats` when given. With `encode` (the default) the input and the result make the round trip
    through Beluga's codec, as they do between processes, so a value that cannot be stored fails here."""
    defn = _definition(activity, registry or default_registry)
    info = info or activity_info(defn.name)
    if heartbeats is not None:
        def beat(details: Any) -> None:
            if encode:
                codec.encode(details)
            heartbeats.append(details)

        info = replace(info, _beat=beat)
    if encode:
        input = codec.decode(codec.encode(input))
    if defn.is_async:  # awaited on a loop of its own, as the executors' loop would
        result = asyncio.run(run_async_with_info(info, lambda: defn.call(input)))
    else:
        result = run_with_info(info, lambda: defn.call(input))
    return codec.decode(codec.encode(result)) if encode else result


def _definition(activity: Callable[..., Any] | str, registry: Registry) -> ActivityDefinition:
    if isinstance(activity, str):
        return registry.activity(activity)
    defn = getattr(activity, "__beluga_defn__", None)
    if isinstance(defn, ActivityDefinition):
        return defn
    return Registry().add_activity(activity)  # a plain function: its shape is checked as @activity would
