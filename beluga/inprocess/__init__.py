"""The default executor (provider `"default"`): durable workflows in the calling process, no server needed.
`executor` is the client API, `engine` the one thread that steps runs, `pool` the threads that run
activities, `timers` the timer heap, `records` the messages between them."""

from __future__ import annotations

from beluga.inprocess.executor import InProcessExecutor, factory

__all__ = ["InProcessExecutor", "factory"]
