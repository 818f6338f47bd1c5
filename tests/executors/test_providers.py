"""Providers: executors and stores by name (API.md, "Providers — the registry")."""

from __future__ import annotations

from pathlib import Path

import pytest

from beluga import workflow
from beluga.stores import InMemoryStore, SQLiteStore
from tests.executors import workflows as W


def test_list_providers_is_sorted_and_has_the_builtins() -> None:
    names = workflow.list_providers()
    assert names == sorted(names)
    assert {"default", "celery"} <= set(names)


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(workflow.ConfigurationError) as info:
        workflow.new("nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in workflow.list_providers():
        assert repr(name) in message


def test_new_default(tmp_path: Path) -> None:
    with workflow.new("default", workflow.Config(store=InMemoryStore())) as ex:
        assert isinstance(ex, workflow.DurableExecutor)
        assert ex.execute(W.wf_echo, workflow.WorkflowOptions(input="d")).result(timeout=5) == "d"


def test_new_executor_is_the_default_provider() -> None:
    with workflow.new_executor(store=InMemoryStore()) as ex:
        assert ex.execute(W.wf_echo, workflow.WorkflowOptions(input=1)).result(timeout=5) == 1


def test_register_a_custom_provider() -> None:
    seen: list[workflow.Config] = []

    def factory(config: workflow.Config) -> workflow.DurableExecutor:
        seen.append(config)
        return workflow.new("default", workflow.Config(store=InMemoryStore()))

    workflow.register("tests-custom", factory)
    assert "tests-custom" in workflow.list_providers()
    assert workflow.list_providers() == sorted(workflow.list_providers())
    config = workflow.Config(extra={"answer": 42})
    with workflow.new("tests-custom", config) as ex:
        assert seen == [config]
        assert ex.execute(W.wf_no_input).result(timeout=5) == "no input needed"
    with workflow.new("tests-custom") as ex:  # no config: an empty one
        assert seen[-1] == workflow.Config()


def test_register_overrides_a_name() -> None:
    calls: list[str] = []

    def one(config: workflow.Config) -> workflow.DurableExecutor:
        calls.append("one")
        return workflow.new("default", workflow.Config(store=InMemoryStore()))

    def two(config: workflow.Config) -> workflow.DurableExecutor:
        calls.append("two")
        return workflow.new("default", workflow.Config(store=InMemoryStore()))

    workflow.register("tests-override", one)
    workflow.register("tests-override", two)
    workflow.new("tests-override").close()
    assert calls == ["two"]


def test_default_provider_passes_extra_settings() -> None:
    with workflow.new("default", workflow.Config(store=InMemoryStore(), extra={"workers": 1, "cache_size": 1})) as ex:
        assert ex.execute(W.wf_fanout, workflow.WorkflowOptions(input=3)).result(timeout=5) == [1, 2, 3]
    with pytest.raises((TypeError, workflow.ConfigurationError), match="no_such_setting"):
        workflow.new("default", workflow.Config(store=InMemoryStore(), extra={"no_such_setting": 1}))


def test_stores_by_name(tmp_path: Path) -> None:
    names = workflow.list_stores()
    assert names == sorted(names) and {"memory", "sqlite", "redis"} <= set(names)
    assert isinstance(workflow.new_store("memory"), InMemoryStore)
    sqlite = workflow.new_store("sqlite", path=str(tmp_path / "named.db"))
    assert isinstance(sqlite, SQLiteStore)
    sqlite.close()
    with pytest.raises(workflow.ConfigurationError, match="'nope'.*memory"):
        workflow.new_store("nope")


def test_register_a_custom_store() -> None:
    workflow.register_store("tests-store", lambda **settings: InMemoryStore())
    assert "tests-store" in workflow.list_stores()
    store = workflow.new_store("tests-store", anything=1)
    with workflow.new("default", workflow.Config(store=store)) as ex:
        assert ex.execute(W.wf_echo, workflow.WorkflowOptions(input=2)).result(timeout=5) == 2
