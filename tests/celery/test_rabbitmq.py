"""RabbitMQ as the broker, Redis still holding the histories."""

from __future__ import annotations

import uuid
from pathlib import Path

from beluga import workflow
from tests.fleet import Worker, fleet_env, rabbitmq_server, redis_server, wait_progress


def test_order_workflow_with_a_rabbitmq_broker(tmp_path: Path) -> None:
    with redis_server() as redis_url, rabbitmq_server(tmp_path / "rabbit") as amqp_url:
        worker = Worker(fleet_env(amqp_url, redis_url), "rabbit-worker", tmp_path)
        try:
            worker.wait_ready()
            ex = workflow.new("celery", workflow.Config(extra={"broker_url": amqp_url, "redis_url": redis_url}))
            handle = ex.execute("order_workflow", workflow.WorkflowOptions(id=f"rabbit-{uuid.uuid4().hex[:6]}",
                                                                          input="ORD-R"))
            wait_progress(ex, handle.id)
            ex.signal(handle.id, workflow.Signal("approve", "approved"))
            assert handle.result(timeout=30) == "order ORD-R processed"
            steps = ex.execute("fleet_steps", workflow.WorkflowOptions(input={"steps": 5}))
            assert steps.result(timeout=30) == 15
            assert "amqp://" in worker.log() and "Connected to" in worker.log()
        finally:
            worker.stop()
