"""The provider stores by name: registered through the entry-point group `beluga.stores`, listed by
`list_stores()`, built by `new_store(name, **settings)`, and failing with a clear error that names the
extra when their client library is missing (simulated here by hiding the import)."""

from __future__ import annotations

import re
import sys
from importlib.metadata import entry_points

import pytest

from beluga import workflow
from beluga.core.records import Event, WorkflowState


def test_the_provider_stores_are_entry_points_and_listed() -> None:
    group = {ep.name: ep.value for ep in entry_points(group="beluga.stores")}
    assert group["nats"] == "beluga.stores.nats:NatsStore"
    assert group["kafka"] == "beluga.stores.kafka:KafkaStore"
    assert group["dapr"] == "beluga.stores.dapr:DaprStore"
    names = workflow.list_stores()
    assert names == sorted(names)
    assert {"memory", "sqlite", "redis", "nats", "kafka", "dapr"} <= set(names)


def _round_trip(store: workflow.WorkflowStore) -> None:
    try:
        store.create(WorkflowState("by-name", "r1", "t", history=(Event(1, "workflow_started", 1.0),)))
        assert store.load("by-name").version == 1
    finally:
        store.close()


def test_new_store_builds_each_by_name(nats_url: str, kafka_bootstrap: str, dapr_url: str) -> None:
    _round_trip(workflow.new_store("nats", url=nats_url, prefix="byname"))
    _round_trip(workflow.new_store("kafka", bootstrap_servers=kafka_bootstrap, prefix="byname"))
    _round_trip(workflow.new_store("dapr", url=dapr_url, prefix="byname"))


@pytest.mark.parametrize("name, client_modules, extra", [
    ("nats", ["nats", "nats.js", "nats.js.api", "nats.js.errors"], "beluga-workflows[nats]"),
    ("kafka", ["confluent_kafka", "confluent_kafka.admin"], "beluga-workflows[kafka]"),
])
def test_a_missing_client_names_the_extra(monkeypatch: pytest.MonkeyPatch, name: str, client_modules: list[str],
                                          extra: str) -> None:
    for module in client_modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import nats` now raises ImportError
    monkeypatch.delitem(sys.modules, f"beluga.stores.{name}", raising=False)
    with pytest.raises(workflow.ConfigurationError, match=rf"'{name}' store needs .* pip install '{re.escape(extra)}'"):
        workflow.new_store(name)
    assert name in workflow.list_stores()  # listing never imports a provider
