"""The console's tests share an in-process executor on an in-memory store (`ex`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from beluga import workflow
from beluga.stores import InMemoryStore


@pytest.fixture
def ex() -> Iterator[Any]:
    executor = workflow.new_executor(InMemoryStore())
    try:
        yield executor
    finally:
        executor.close()
