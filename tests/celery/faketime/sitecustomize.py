"""On the PYTHONPATH of a test worker whose wall clock libfaketime skews (tests/celery/test_clock_skew.py).

libfaketime 0.9.10 (Debian 12) skews the wall clock as the test needs, but its `clock_nanosleep` fails
with EINVAL for the monotonic clock (with FAKETIME_DONT_FAKE_MONOTONIC=1), and so does every
`time.sleep()` of Python 3.11, which sleeps that way; with the monotonic clock faked too, thread waits
hang instead. Event waits, lock timeouts and `select` work: `time.sleep` waits in `select` here. The skew
itself is libfaketime's, at the C level, for every clock reader of the process (Python, Celery, kombu)."""

import os

if "libfaketime" in os.environ.get("LD_PRELOAD", ""):
    import select
    import time

    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
