"""Wrap plain functions as registered activities with the shapes AI workflows use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from beluga.core.definitions import activity


def llm_activity(fn: Callable[[str], str], *, name: str | None = None, **options: Any) -> Callable[[str], str]:
    """`fn(prompt) -> text` as an activity: `ctx.execute_activity(llm, "Summarise ...")`. Options are
    those of `@workflow.activity` (retry, timeout, queue, ...)."""

    def call_llm(prompt: str) -> str:
        if not isinstance(prompt, str):
            raise TypeError(f"an LLM activity takes a prompt string, not {type(prompt).__name__}")
        return fn(prompt)

    call_llm.__qualname__ = call_llm.__name__ = name or getattr(fn, "__name__", "llm")
    return activity(call_llm, name=name or call_llm.__name__, **options)


def tool_activity(fn: Callable[[str, dict[str, Any]], Any], *, name: str | None = None,
                  **options: Any) -> Callable[[dict[str, Any]], Any]:
    """`fn(tool_name, args) -> result` as an activity whose input is `{"name": ..., "args": {...}}`."""

    def call_tool(call: dict[str, Any]) -> Any:
        if not isinstance(call, dict) or "name" not in call:
            raise TypeError('a tool activity takes {"name": tool_name, "args": {...}}')
        return fn(call["name"], dict(call.get("args") or {}))

    call_tool.__qualname__ = call_tool.__name__ = name or getattr(fn, "__name__", "tool")
    return activity(call_tool, name=name or call_tool.__name__, **options)
