"""What the web examples (`examples.flask_app`, `examples.fastapi_app`) share: the workflow they start,
the order ids they take, and the HTTP status each of Beluga's errors maps to."""

from __future__ import annotations

import re

from beluga import workflow

WORKFLOW = "order_workflow"             # registered by beluga.demo.orders, which the apps do not import
ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
ORDER_ID_RULE = "order_id must be 1-128 letters, digits or ._:- and start with a letter or digit"

ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (workflow.WorkflowNotFound, 404),
    (workflow.WorkflowNotRunning, 409),
    (workflow.WorkflowAlreadyStarted, 409),
    (workflow.SerializationError, 400),
    (workflow.ConfigurationError, 400),
    (workflow.ServiceUnavailable, 503),  # Redis away for BELUGA_CLIENT_RETRY_SECONDS
    (TimeoutError, 504),                 # a query no worker answered in time
]


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of one of the errors above, None for any other (an internal error)."""
    for kind, status in ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    return None
