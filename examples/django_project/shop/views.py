"""Views that start and approve orders: clients of the fleet, by workflow name (no workflow code here)."""

import uuid
from html import escape

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.views.decorators.http import require_POST

import shop.celery  # noqa: F401 - the project's Celery app, with Beluga installed: clients send through it
from beluga import workflow
from beluga.core.records import WorkflowFilter


def _executor() -> workflow.DurableExecutor:
    return workflow.new("celery")      # the app installed in shop/celery.py, settings from settings.py


def orders(request: HttpRequest) -> HttpResponse:
    ex = _executor()
    if request.method == "POST":
        order_id = f"ORD-{uuid.uuid4().hex[:6].upper()}"
        ex.execute("shop_order", workflow.WorkflowOptions(id=f"shop-{order_id}", input=order_id))
        return HttpResponseRedirect("/")
    rows = "".join(
        f"<tr><td>{escape(s.workflow_id)}</td><td>{escape(s.status.value)}</td><td>{escape(str(s.result or ''))}</td>"
        f"<td><form method='post' action='/orders/{escape(s.workflow_id)}/approve'>"
        f"<button{' disabled' if not s.status.is_open else ''}>approve</button></form></td></tr>"
        for s in ex.store.list(WorkflowFilter(workflow_type="shop_order", limit=20)))
    return HttpResponse(f"<h1>Orders</h1><form method='post'><button>new order</button></form>"
                        f"<table>{rows}</table><p><a href='/beluga/'>the Beluga console</a></p>")


@require_POST
def approve(request: HttpRequest, workflow_id: str) -> HttpResponse:
    _executor().signal(workflow_id, workflow.Signal("approve", "approved", sender_id="shop"))
    return HttpResponseRedirect("/")
