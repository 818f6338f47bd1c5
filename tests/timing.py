"""Bounds for tests that must say how long something may take.

A test states such a bound as the time that governs it (a timeout the test configured, a lease, a retry
budget) plus `SLACK`: what a loaded 2-core machine (busy loops on both cores, the suite's fleets and
servers beside the test) may add to it in scheduling, process start and round trips. The slack is kept
below every gap the bound exists to tell apart (the default of the setting under test, a run's sleep,
the broker's hour-long visibility timeout), so a slow machine does not fail the test and a wrong
behaviour still does.
"""

from __future__ import annotations

SLACK = 4.0


def bounded_by(configured: float) -> float:
    """The most a call governed by `configured` seconds may take on a loaded machine."""
    return configured + SLACK
