"""Run as a script in a Django process of the example shop (DJANGO_SETTINGS_MODULE=shop.settings): what
its web side does. Starts an order through `workflow.new("celery")`, calls one of the team's own tasks,
reads the console through Django's URLs, and prints what it saw as JSON."""

from __future__ import annotations

import json
import sys
import time

import django

django.setup()

import shop.celery  # noqa: E402
from django.test import Client  # noqa: E402
from shop.tasks import add  # noqa: E402

from beluga import workflow  # noqa: E402


def main(workflow_id: str) -> None:
    seen: dict = {"added": add.delay(2, 3).get(timeout=30)}          # the team's own task, same workers
    ex = workflow.new("celery")
    seen["same_app"] = ex.app is shop.celery.app
    handle = ex.execute("shop_order", workflow.WorkflowOptions(id=workflow_id, input=workflow_id))
    deadline = time.monotonic() + 30
    while True:
        try:
            if ex.query(workflow_id, "progress") == "awaiting approval":
                break
        except workflow.QueryNotFound:
            pass
        assert time.monotonic() < deadline, "the order never waited for approval"
        time.sleep(0.1)
    web = Client()
    seen["console_forbidden"] = web.post("/beluga/run/signal", {"id": workflow_id, "name": "approve"}).status_code
    seen["approve"] = web.post(f"/orders/{workflow_id}/approve").status_code
    seen["result"] = handle.result(timeout=30)
    seen["console_runs"] = workflow_id in web.get("/beluga/").content.decode()
    page = web.get("/beluga/run", {"id": workflow_id})
    seen["console_run"] = [page.status_code, "completed" in page.content.decode()]
    seen["orders_page"] = workflow_id in web.get("/").content.decode()
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1])
