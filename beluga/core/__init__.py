"""Beluga's pure core: records, the replay engine and the policies it uses.

Nothing here imports Celery, Redis, sqlite3, threading or reads the clock; executors and stores are
adapters around it (`beluga.executors`, `beluga.stores`).
"""

from beluga.core.instance import WorkflowInstance

__all__ = ["WorkflowInstance"]
