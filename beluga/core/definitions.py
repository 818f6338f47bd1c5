"""Workflow and activity definitions, and the registry that finds them by name.

A name is how a run refers to code across processes and releases: a web app starts `"order_workflow"`
without importing it, and a worker that imported the module resolves it here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from beluga.core.errors import ConfigurationError
from beluga.core.limits import ActivityLimit, RateKey, limit_of
from beluga.core.retry import Duration, RetryPolicy, seconds

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__beluga_defn__"


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    name: str
    fn: Callable[..., Any]
    takes_input: bool


@dataclass(frozen=True, slots=True)
class ActivityDefinition:
    name: str
    fn: Callable[..., Any]
    takes_input: bool
    queue: str | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    heartbeat_timeout: float | None = None
    schedule_to_start_timeout: float | None = None
    limit: ActivityLimit | None = None  # its rate and concurrency limits across every worker

    def call(self, input: Any) -> Any:
        """Run the activity; for an `async def` one, the coroutine to await (see `is_async`)."""
        return self.fn(input) if self.takes_input else self.fn()

    @property
    def is_async(self) -> bool:
        """An `async def` activity: executors run it on an event loop, many attempts at once, rather than on
        a thread (or pool process) of its own (see beluga/activity_loop.py)."""
        return inspect.iscoroutinefunction(self.fn)


_DEFAULT_RETRY = RetryPolicy()  # equal to default_retry_policy(): 3 attempts, 0.1 s, x2, 10 s


def effective_retry(options: dict[str, Any], defn: ActivityDefinition | None) -> RetryPolicy:
    """The retry policy of one call: the call's own, else the activity's registered one, else the default."""
    retry = options.get("retry")
    if retry:
        return RetryPolicy.from_dict(retry)
    return defn.retry if defn is not None and defn.retry is not None else _DEFAULT_RETRY


def effective_option(options: dict[str, Any], defn: ActivityDefinition | None, key: str) -> Any:
    """`timeout`, `heartbeat_timeout`, `schedule_to_start_timeout` or `queue` of one call: the call's own,
    else the registered one."""
    if options.get(key) is not None:
        return options[key]
    return getattr(defn, key) if defn is not None else None


def _positional_arity(fn: Callable[..., Any], what: str, allowed: tuple[int, ...]) -> int:
    if not callable(fn):
        raise ConfigurationError(f"a {what} must be callable, got {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn) and what != "activity":
        raise ConfigurationError(f"{what} {fn.__qualname__} is `async def`; a workflow is a plain function "
                                 "(activities may be `async def`)")
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return allowed[-1]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in kinds and p.default is inspect.Parameter.empty]
    positional = [p for p in params if p.kind in kinds]
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    for n in sorted(allowed, reverse=True):
        if len(required) <= n and (len(positional) >= n or varargs):
            return n
    shape = "fn(ctx, input)" if what == "workflow" else "fn(input)"
    raise ConfigurationError(f"{what} {getattr(fn, '__qualname__', fn)!r} must look like {shape}; "
                             f"its signature is {inspect.signature(fn)}")


class Registry:
    """Names to definitions. Re-registering the same function (a module reload) is fine; giving one
    name to two different functions is a mistake worth an error."""

    def __init__(self) -> None:
        self.workflows: dict[str, WorkflowDefinition] = {}
        self.activities: dict[str, ActivityDefinition] = {}

    def add_workflow(self, fn: Callable[..., Any], name: str | None = None) -> WorkflowDefinition:
        arity = _positional_arity(fn, "workflow", (1, 2))
        defn = WorkflowDefinition(name or fn.__name__, fn, arity == 2)
        self._put(self.workflows, defn, "workflow")
        return defn

    def add_activity(self, fn: Callable[..., Any], name: str | None = None, *, queue: str | None = None,
                     retry: RetryPolicy | None = None, timeout: Duration | None = None,
                     heartbeat_timeout: Duration | None = None,
                     schedule_to_start_timeout: Duration | None = None, rate_limit: str | float | None = None,
                     max_concurrent: int | None = None, rate_key: RateKey | None = None) -> ActivityDefinition:
        arity = _positional_arity(fn, "activity", (0, 1))
        try:
            limit = limit_of(rate_limit, max_concurrent, rate_key)
        except ValueError as exc:
            raise ConfigurationError(f"activity {name or fn.__name__!r}: {exc}") from None
        defn = ActivityDefinition(name or fn.__name__, fn, arity == 1, queue, retry, seconds(timeout),
                                  seconds(heartbeat_timeout), seconds(schedule_to_start_timeout), limit)
        self._put(self.activities, defn, "activity")
        return defn

    @staticmethod
    def _put(table: dict[str, Any], defn: Any, what: str) -> None:
        old = table.get(defn.name)
        if old is not None and _identity(old.fn) != _identity(defn.fn):
            raise ConfigurationError(f"{what} name {defn.name!r} is already taken by {_identity(old.fn)}; "
                                     f"pass name=... to register {_identity(defn.fn)}")
        table[defn.name] = defn

    def retry_policy(self, name: str, options: dict[str, Any]) -> RetryPolicy:
        """The retry policy of a call to the activity `name` (see `effective_retry`): what the run driver
        asks of every executor's registry."""
        return effective_retry(options, self.activities.get(name))

    def limit_of(self, name: str) -> ActivityLimit | None:
        """The rate and concurrency limits of activity `name`, as registered in this process (None: none,
        or its code is not here)."""
        defn = self.activities.get(name)
        return defn.limit if defn is not None else None

    def queue_of(self, name: str, options: dict[str, Any]) -> str | None:
        """The queue a call of activity `name` with `options` goes to: its own, else the registered one."""
        return effective_option(options, self.activities.get(name), "queue")

    def workflow(self, ref: Any) -> WorkflowDefinition:
        name = workflow_name(ref)
        found = self.workflows.get(name)
        if found is None:
            if callable(ref) and not isinstance(ref, str):
                return self.add_workflow(ref)
            raise ConfigurationError(f"no workflow registered as {name!r}; registered: "
                                     f"{sorted(self.workflows)} (is its module in BELUGA_IMPORTS?)")
        return found

    def activity(self, name: str) -> ActivityDefinition:
        found = self.activities.get(name)
        if found is None:
            raise ConfigurationError(f"no activity registered as {name!r} in this process; registered: "
                                     f"{sorted(self.activities)} (is its module in BELUGA_IMPORTS?)")
        return found


def _identity(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def workflow_name(ref: Any) -> str:
    if isinstance(ref, str):
        return ref
    defn = getattr(ref, _ATTR, None)
    if isinstance(defn, WorkflowDefinition):
        return defn.name
    if callable(ref):
        return ref.__name__
    raise ConfigurationError(f"a workflow is a function or its registered name, not {type(ref).__name__}")


def activity_name(ref: Any) -> str:
    if isinstance(ref, str):
        return ref
    defn = getattr(ref, _ATTR, None)
    if isinstance(defn, ActivityDefinition):
        return defn.name
    raise ConfigurationError(f"{getattr(ref, '__qualname__', ref)!r} is not an activity: decorate it with "
                             "@workflow.activity() or pass its registered name")


registry = Registry()
"""The process-wide registry the decorators fill; executors take another one where isolation matters."""


def defn(fn: F | None = None, *, name: str | None = None) -> Any:
    """Register a workflow function: `@workflow.defn()` or `@workflow.defn(name="orders")`."""

    def wrap(f: F) -> F:
        setattr(f, _ATTR, registry.add_workflow(f, name))
        return f

    return wrap(fn) if fn is not None else wrap


def activity(fn: F | None = None, *, name: str | None = None, queue: str | None = None,
             retry: RetryPolicy | None = None, timeout: Duration | None = None,
             heartbeat_timeout: Duration | None = None, schedule_to_start_timeout: Duration | None = None,
             rate_limit: str | float | None = None, max_concurrent: int | None = None,
             rate_key: RateKey | None = None) -> Any:
    """Register an activity function with its default options (each call may override them). `rate_limit`
    ("10/s", "60/m") and `max_concurrent` bound its starts and its running attempts across every worker;
    activities with the same `rate_key` (a name, or a function of the input: the tenant) share them. An
    attempt without a permit waits on a durable timer, holding no worker; it is not a failure."""

    def wrap(f: F) -> F:
        setattr(f, _ATTR, registry.add_activity(f, name, queue=queue, retry=retry, timeout=timeout,
                                                heartbeat_timeout=heartbeat_timeout,
                                                schedule_to_start_timeout=schedule_to_start_timeout,
                                                rate_limit=rate_limit, max_concurrent=max_concurrent,
                                                rate_key=rate_key))
        return f

    return wrap(fn) if fn is not None else wrap
