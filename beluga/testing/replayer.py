"""Replaying recorded histories against the current code: `beluga replay` and pytest use this.

A replay runs the workflow code over a history exactly as an executor rebuilding the run would, with no
store, executor or worker, and reports for each history whether the code still matches it; where it
does not, the `NonDeterminismError` names the event position, what the history records there and what
the code asked for instead. Run it in CI over exported histories of real runs before deploying a change.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beluga import history_json
from beluga.core.definitions import Registry
from beluga.core.definitions import registry as default_registry
from beluga.core.errors import ConfigurationError, NonDeterminismError, WorkflowError
from beluga.core.instance import WorkflowInstance
from beluga.core.records import WorkflowState
from beluga.history_json import ExportedHistory, HistoryFormatError

History = str | Path | Mapping[str, Any] | WorkflowState | ExportedHistory


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """The outcome of replaying one history. `error` is None when the code matches it; a
    `NonDeterminismError` (with `position`, `recorded`, `asked`) when it does not; a
    `ConfigurationError` for a workflow type the code does not define; a `HistoryFormatError` for a
    file that is not a history."""

    source: str
    workflow_type: str | None = None
    workflow_id: str | None = None
    run_id: str | None = None
    events: int = 0
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def mismatch(self) -> bool:
        """The code does not match the history (as opposed to a history that could not be replayed)."""
        return isinstance(self.error, NonDeterminismError)

    @property
    def position(self) -> int | None:
        return getattr(self.error, "position", None)

    def describe(self) -> str:
        """One line: what was replayed and how it went."""
        what = f"{self.source}" + (f" ({self.workflow_type} {self.workflow_id})" if self.workflow_type else "")
        if self.ok:
            return f"ok        {what}: {self.events} events match the code"
        err = self.error
        if isinstance(err, NonDeterminismError) and err.position is not None:
            return (f"MISMATCH  {what}: at event #{err.position} the history records {err.recorded}, "
                    f"but the code asked for {err.asked}")
        label = "MISMATCH " if self.mismatch else "ERROR    "
        text = str(err)
        return f"{label} {what}: " + (text[len(self.source) + 2:] if text.startswith(f"{self.source}: ") else text)


class Replayer:
    """Replays histories against workflow code found in `registry` (default: the process-wide one the
    decorators fill), after importing `imports`; `workflows` registers functions in a private registry
    instead (`Replayer(workflows=[order_workflow])`, or `{"order": order_workflow}` to name them)."""

    def __init__(self, imports: str | Iterable[str] = (), *, registry: Registry | None = None,
                 workflows: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]] | None = None) -> None:
        import_modules(imports)
        if workflows is not None:
            registry = Registry()
            items = workflows.items() if isinstance(workflows, Mapping) else ((None, fn) for fn in workflows)
            for name, fn in items:
                registry.add_workflow(fn, name or getattr(getattr(fn, "__beluga_defn__", None), "name", None))
        self.registry = registry or default_registry

    def replay(self, *histories: History | Iterable[History]) -> list[ReplayResult]:
        """One result per history; a directory stands for the `*.json` files under it."""
        out = []
        for item in _flatten(histories):
            if isinstance(item, (str, Path)):
                out.extend(self.replay_one(path) for path in history_json.files([item]))
            else:
                out.append(self.replay_one(item))
        return out

    def replay_one(self, history: History) -> ReplayResult:
        source = str(history) if isinstance(history, (str, Path)) else "<history>"
        try:
            h = _as_history(history)
        except HistoryFormatError as exc:
            return ReplayResult(source, error=exc)
        source = h.source or (f"<{h.workflow_id}>" if h.workflow_id else source)
        base = {"workflow_type": h.workflow_type, "workflow_id": h.workflow_id, "run_id": h.run_id,
                "events": len(h.events)}
        try:
            definition = self.registry.workflow(h.workflow_type)
        except ConfigurationError as exc:
            return ReplayResult(source, **base, error=ConfigurationError(
                f"workflow type {h.workflow_type!r} is not defined by the code replayed against ({exc})"))
        instance = WorkflowInstance(definition, h.workflow_id or "replay", h.run_id or "replay")
        try:
            instance.activate(h.events)
        except Exception as exc:  # NonDeterminismError, or a history this code cannot even read
            return ReplayResult(source, **base, error=exc)
        finally:
            instance.close()
        return ReplayResult(source, **base)


def replay(*histories: History | Iterable[History], imports: str | Iterable[str] = (),
           registry: Registry | None = None, workflows: Any = None,
           raise_on_failure: bool = True) -> list[ReplayResult]:
    """Replay `histories` (files, directories of `*.json`, exported documents, `WorkflowState`s). With
    `raise_on_failure` (the default, for tests) the first failure is raised: a `NonDeterminismError` whose
    message starts with the history's source; otherwise the results say what happened."""
    results = Replayer(imports, registry=registry, workflows=workflows).replay(*histories)
    if raise_on_failure:
        for r in results:
            if r.error is not None:
                raise_failure(r)
    return results


def raise_failure(result: ReplayResult) -> None:
    err = result.error
    if isinstance(err, NonDeterminismError):
        raise NonDeterminismError(f"{result.source}: {err}", position=err.position, recorded=err.recorded,
                                  asked=err.asked) from err
    if isinstance(err, HistoryFormatError):
        raise err
    raise WorkflowError(f"{result.source}: {err}") from err


def import_modules(modules: str | Iterable[str]) -> list[str]:
    """Import the user's modules (comma-separated or a list) so their decorators register workflows and
    activities; the current directory is importable, as for `python -m`."""
    names = [m.strip() for m in (modules.split(",") if isinstance(modules, str) else modules) if m and m.strip()]
    if names and "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a module that fails to import, whatever the reason, is one clear error
            raise ConfigurationError(f"cannot import {name!r}: {exc.__class__.__name__}: {exc}") from None
    return names


def _flatten(items: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, (str, Path, Mapping, WorkflowState, ExportedHistory)):
            out.append(item)
        else:
            out.extend(_flatten(item))
    return out


def _as_history(history: History) -> ExportedHistory:
    if isinstance(history, ExportedHistory):
        return history
    if isinstance(history, WorkflowState):
        return ExportedHistory(history.workflow_type, history.workflow_id, history.run_id, tuple(history.history),
                               "", history.status.value)
    if isinstance(history, (str, Path)):
        return history_json.read(history)
    return history_json.load(history)
