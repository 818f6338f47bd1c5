"""The fleet's inbox messages: run inputs (`beluga.core.steps`) as they travel through Redis, and back.

A message is a small msgpack map: `k` names its kind, `run` the run it is for (None: whichever run is
current). This module is the only place that knows the keys; senders build messages with `encode`
and the coordinator reads them with `decode`, which refuses anything it does not know."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from beluga.core import steps as st
from beluga.core.retry import GiveUp, Retry, retry_delay


@dataclass(frozen=True, slots=True)
class Start:
    """Only wakes the run: its first activation happens when the coordinator loads it."""


@dataclass(frozen=True, slots=True)
class RetryStuck:
    """A durable wake for a stuck run: look again after `delay` seconds, doubling up to a cap."""

    delay: float


@dataclass(frozen=True, slots=True)
class EnsureChild:
    """A backup armed with the step that records a child's start: should the process that was to create
    the child have died, the parent's coordinator creates it then (a no-op when it exists)."""

    seq: int


@dataclass(frozen=True, slots=True)
class NotifyParent:
    """A backup armed with the step that closes a child run: tell the parent again how it ended, should
    the process that was to tell it have died."""


@dataclass(frozen=True, slots=True)
class EnsureContinued:
    """A backup armed with the step that records a continue-as-new: should the process that was to
    create the next run have died, the run's coordinator creates it then (a no-op once it exists: the
    message names the run that continued, and a newer run of the id ignores it)."""


@dataclass(frozen=True, slots=True)
class CloseChildren:
    """A backup armed with the step that closes a parent with open children: apply their parent-close
    policy again, should the process that was to apply it have died (harmless when it was applied)."""

    close: st.CloseChildren


@dataclass(frozen=True, slots=True)
class ParentClosed:
    """A parent-close policy in a child's inbox: `input` (a terminate or a cancel request), applied only
    while the run is still the child of `parent` ({"workflow_id", "run_id", "seq"}), not an unrelated run
    that took the id since."""

    parent: dict[str, Any]
    input: st.Input


# The query task (`beluga.query`) runs an update's validator when the query name starts with this (a name
# no query handler can have: names may not hold control characters), so that it reaches the workers, and
# is handed on, exactly as a query is.
VALIDATE_UPDATE = "\x1fvalidate update\x1f"


Control = Start | RetryStuck | EnsureChild | NotifyParent | EnsureContinued | CloseChildren | ParentClosed


def encode(input: st.Input | Control, run_id: str | None = None) -> dict[str, Any]:
    msg = _encode(input)
    if run_id is not None:
        msg["run"] = run_id
    return msg


def _encode(x: st.Input | Control) -> dict[str, Any]:
    if isinstance(x, st.SignalReceived):
        return _who({"k": "signal", "name": x.name, "payload": x.payload, "sender_id": x.sender_id}, x.identity)
    if isinstance(x, st.CancelRequested):
        return _who({"k": "cancel"}, x.identity)
    if isinstance(x, st.UpdateRequested):
        return _who({"k": "update", "id": x.update_id, "name": x.name, "args": list(x.args)}, x.identity)
    if isinstance(x, st.TimerFired):
        return {"k": "timer", "seq": x.seq}
    if isinstance(x, st.TimedOut):
        return {"k": "timeout"}
    if isinstance(x, st.ChildClosed):
        return {"k": "child_done", "seq": x.seq, "ok": x.ok, "payload": x.payload}
    if isinstance(x, st.ActivityOutcome):
        msg = {"k": "activity", "seq": x.seq, "attempt": x.attempt, "ok": x.ok, "payload": x.payload}
        if x.decision is not None or x.ok:  # (a success, with nothing to decide, kept its fields as before)
            msg["retry_in"] = None if x.decision is None else retry_delay(x.decision)
            msg["celery_retry"] = isinstance(x.decision, Retry) and x.decision.by_sender
        return msg
    if isinstance(x, st.AttemptDue):
        return {"k": "dispatch", "seq": x.seq, "attempt": x.attempt}
    if isinstance(x, st.Terminate):
        return _who({"k": "terminate", "reason": x.reason}, x.identity)
    if isinstance(x, Start):
        return {"k": "start"}
    if isinstance(x, RetryStuck):
        return {"k": "wake", "delay": x.delay}
    if isinstance(x, EnsureChild):
        return {"k": "ensure_child", "seq": x.seq}
    if isinstance(x, NotifyParent):
        return {"k": "notify_parent"}
    if isinstance(x, EnsureContinued):
        return {"k": "ensure_continued"}
    if isinstance(x, CloseChildren):
        c = x.close
        return {"k": "close_children", "run_id": c.parent_run_id, "reason": c.reason,
                "children": [[ch.seq, ch.workflow_id, ch.policy] for ch in c.children]}
    if isinstance(x, ParentClosed):
        return {"k": "parent_closed", "parent": x.parent, "input": _encode(x.input)}
    raise TypeError(f"not an inbox message: {x!r}")


def decode(msg: dict[str, Any]) -> st.Input | Control:
    """The input a message carries; `ValueError` (or `KeyError`/`TypeError`) for a malformed one."""
    kind = msg["k"]
    if kind == "signal":
        return st.SignalReceived(str(msg["name"]), msg.get("payload"), msg.get("sender_id"), _identity(msg))
    if kind == "cancel":
        return st.CancelRequested(_identity(msg))
    if kind == "update":
        return st.UpdateRequested(str(msg["id"]), str(msg["name"]), tuple(msg.get("args") or ()), _identity(msg))
    if kind == "timer":
        return st.TimerFired(int(msg["seq"]))
    if kind == "timeout":
        return st.TimedOut()
    if kind == "child_done":
        return st.ChildClosed(int(msg["seq"]), bool(msg.get("ok")), msg.get("payload"))
    if kind == "activity":
        delay = msg.get("retry_in")
        decision = (None if "retry_in" not in msg else GiveUp("decided by the sender") if delay is None
                    else Retry(float(delay), bool(msg.get("celery_retry"))))
        return st.ActivityOutcome(int(msg["seq"]), int(msg["attempt"]), bool(msg.get("ok")), msg.get("payload"),
                                  decision)
    if kind == "dispatch":
        return st.AttemptDue(int(msg["seq"]), int(msg["attempt"]))
    if kind == "terminate":
        return st.Terminate(str(msg.get("reason") or ""), _identity(msg))
    if kind == "start":
        return Start()
    if kind == "wake":
        return RetryStuck(float(msg.get("delay") or 5.0))
    if kind == "ensure_child":
        return EnsureChild(int(msg["seq"]))
    if kind == "notify_parent":
        return NotifyParent()
    if kind == "ensure_continued":
        return EnsureContinued()
    if kind == "close_children":
        children = tuple(st.ChildToClose(int(seq), str(wid), str(policy)) for seq, wid, policy in msg["children"])
        return CloseChildren(st.CloseChildren(str(msg["run_id"]), str(msg.get("reason") or ""), children))
    if kind == "parent_closed":
        parent, input = msg["parent"], decode(msg["input"])
        if not isinstance(parent, dict) or not isinstance(input, (st.Terminate, st.CancelRequested)):
            raise ValueError(f"a parent_closed message carries {input!r} for {parent!r}")
        return ParentClosed(parent, input)
    raise ValueError(f"unknown inbox message kind {kind!r}")


def _who(msg: dict[str, Any], identity: str | None) -> dict[str, Any]:
    if identity is not None:
        msg["identity"] = identity
    return msg


def _identity(msg: dict[str, Any]) -> str | None:
    identity = msg.get("identity")
    return None if identity is None else str(identity)
