"""An activity attempt's report, as the process that ran the attempt hands it to the coordinator, and
the option keys an activity message carries for it beside the call's own (see Coordinator._carry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# In an activity message's options, beside the call's own:
SENT_AT = "_version"  # the run's version after the append that sent it
CARRIED = "_events"  # the run's latest encoded events, ending there (see `_carry`): a process whose cached
# run is behind catches up from the message instead of reading the store (a run's steps go to either
# process of a pool)
UNTIL = "_until"  # the attempt's deadline as that append recorded it (see Holds: a message taken long
# before it needs no renewal of its own)


@dataclass(frozen=True)
class AttemptReport:
    """One attempt's outcome for the coordinator: the inbox `message` reporting attempt `attempt` of
    activity `seq`, and `next_attempt` when Celery itself sends the next attempt (a short retry), so
    that the report keeps that attempt's place. `heartbeat`: the attempt promised heartbeats.
    `sent_at`: the run's version when the attempt was sent (None for a message of another Beluga),
    and `carried`: the events its message carried, ending there; with them a cached run that is behind
    catches up without reading the store."""

    seq: int
    attempt: int
    message: dict[str, Any]
    next_attempt: int | None = None
    heartbeat: bool = False
    sent_at: int | None = None
    carried: Any = None

    @classmethod
    def of(cls, seq: int, attempt: int, message: dict[str, Any], next_attempt: int | None, heartbeat: bool,
           options: dict[str, Any]) -> AttemptReport:
        """The report of an attempt sent with these message `options` (see SENT_AT, CARRIED)."""
        sent_at = options.get(SENT_AT)
        return cls(seq, attempt, message, next_attempt, heartbeat,
                   sent_at if isinstance(sent_at, int) else None, options.get(CARRIED))
