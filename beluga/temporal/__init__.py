"""The `temporal` executor (provider `"temporal"`, extra `temporal`): Beluga workflows run by a Temporal
server. `executor` is the client (and `new_worker`/`run_worker`), `workflow` the dynamic Temporal workflow
that drives a run, `activities` what runs an activity on a worker, `failures` Beluga's failures in
Temporal's terms, `store` the runs read back from Temporal's visibility (store `"temporal"`).

Importing it without `temporalio` raises a `ConfigurationError` naming the extra."""

from __future__ import annotations

from beluga.temporal.executor import TemporalExecutor, factory, new_worker, run_worker
from beluga.temporal.store import TemporalStore

__all__ = ["TemporalExecutor", "TemporalStore", "factory", "new_worker", "run_worker"]
