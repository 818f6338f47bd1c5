"""Human in the loop: the workflow asks a person and parks, holding no thread, until the answer arrives
as a signal. A notification activity hands the request to a `HumanManager` (a ticket queue, an e-mail,
a chat message); the person's answer is sent back with `respond()`."""

from __future__ import annotations

import enum
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from beluga.activity import activity_info
from beluga.core.context import WorkflowContext
from beluga.core.definitions import activity
from beluga.core.records import Signal


class RequestType(str, enum.Enum):
    APPROVAL = "approval"
    FEEDBACK = "feedback"
    INPUT = "input"
    ANNOTATION = "annotation"


class RiskLevel(str, enum.Enum):
    READ_ONLY = "read_only"
    DATA_MODIFICATION = "data_modification"
    IRREVERSIBLE = "irreversible"


class Decision(str, enum.Enum):
    APPROVE = "approve"
    REJECT = "reject"
    MODIFY = "modify"


@dataclass(frozen=True)
class HumanRequest:
    id: str = ""
    type: str = RequestType.APPROVAL.value
    tool_name: str = ""
    description: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    risk_level: str = RiskLevel.READ_ONLY.value
    confidence: float = 0.0
    timeout: float | None = None
    workflow_id: str = ""


@dataclass(frozen=True)
class HumanResponse:
    decision: str = Decision.APPROVE.value
    feedback: str = ""
    modified_input: dict[str, Any] | None = None


def signal_name(request_id: str) -> str:
    return f"human:{request_id}"


class HumanManager(Protocol):
    """Where requests go to reach a person. `notify` runs inside an activity, so it may do I/O."""

    def notify(self, request: HumanRequest) -> None: ...


class InMemoryHumanManager:
    """Keeps pending requests in memory, for tests and demos; `respond` answers one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: dict[str, HumanRequest] = {}

    def notify(self, request: HumanRequest) -> None:
        with self._lock:
            self.pending[request.id] = request

    def respond(self, executor: Any, request_id: str, response: HumanResponse) -> None:
        with self._lock:
            request = self.pending.pop(request_id)
        executor.signal(request.workflow_id, Signal(signal_name(request_id), asdict(response)))


class HumanActivity:
    """Call it from a workflow: `response = ask(ctx, HumanRequest(...))`. `TimeoutError` when the
    request's timeout passes with no answer."""

    def __init__(self, manager: HumanManager, name: str) -> None:
        self.manager = manager

        def notify_human(request: dict[str, Any]) -> None:
            req = HumanRequest(**{**request, "workflow_id": activity_info().workflow_id})
            manager.notify(req)

        self.notify = activity(notify_human, name=name)

    def __call__(self, ctx: WorkflowContext, request: HumanRequest) -> HumanResponse:
        request_id = request.id or str(ctx.uuid4())
        data = {**asdict(request), "id": request_id, "workflow_id": ctx.workflow_id}
        ctx.execute_activity(self.notify, data)
        answer = ctx.receive_signal(signal_name(request_id)).receive(timeout=request.timeout)
        return HumanResponse(**answer) if isinstance(answer, dict) else HumanResponse(str(answer))


def human_activity(manager: HumanManager, *, name: str = "notify_human") -> HumanActivity:
    return HumanActivity(manager, name)
