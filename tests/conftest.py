"""Shared test setup: the repository root is importable, so test helpers are imported by their full
path (`tests.core.harness`, `tests.executors.workflows`), the same in pytest and in subprocesses."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
