"""Testing workflows and activities without Redis or a worker (see docs/testing.md).

- `Replayer` / `replay(...)`: replay exported histories against the current code (`beluga replay`).
- `WorkflowEnvironment`: the in-process executor on an in-memory store, with time skipping.
- `run_activity(fn, input, info=...)`: one activity, alone, with the `activity_info()` you choose.
"""

from beluga.activity import ActivityInfo
from beluga.history_json import ExportedHistory, HistoryFormatError
from beluga.testing.activities import activity_info, run_activity
from beluga.testing.environment import TestClock, WorkflowEnvironment
from beluga.testing.replayer import Replayer, ReplayResult, import_modules, replay

__all__ = ["ActivityInfo", "ExportedHistory", "HistoryFormatError", "ReplayResult", "Replayer", "TestClock",
           "WorkflowEnvironment", "activity_info", "import_modules", "replay", "run_activity"]
