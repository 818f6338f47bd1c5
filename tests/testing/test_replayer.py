"""`Replayer` / `replay()`: recorded histories (files, directories, exported runs) replayed against the
current code, from pytest, with each mismatch's position, recorded event and new command."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from beluga import history_json, workflow
from beluga.core.errors import ConfigurationError, NonDeterminismError
from beluga.testing import HistoryFormatError, Replayer, WorkflowEnvironment, replay
from tests.core import histories
from tests.core.patch_workflows import ship_v1, ship_v2

FIXTURES = histories.FIXTURES


@dataclasses.dataclass(frozen=True)
class Parcel:
    sku: str
    weight: Decimal


@workflow.activity(name="testing_replay_pack")
def pack(parcel: Parcel) -> tuple:
    return (parcel.sku, b"\x00label", dt.datetime(2030, 1, 2, tzinfo=dt.timezone.utc), uuid.UUID(int=7))


@workflow.defn(name="testing_replay_parcel")
def parcel_flow(ctx: workflow.WorkflowContext, parcel: Parcel) -> str:
    sku, label, when, ref = ctx.execute_activity(pack, parcel)
    if not (isinstance(label, bytes) and isinstance(when, dt.datetime) and isinstance(ref, uuid.UUID)):
        ctx.execute_activity(pack, parcel)   # a replay that saw other types would take this branch
    ctx.receive_signal("go").receive()
    return f"{sku} {when.year} {ref.int}"


def exported_parcel_run(tmp_path: Path) -> Path:
    with WorkflowEnvironment() as env:
        handle = env.execute(parcel_flow, Parcel("P-1", Decimal("1.25")), id="parcel-1")
        env.signal(handle.id, "go", {"at": 1, "$odd key": (1, 2)})
        assert handle.result(timeout=10) == "P-1 2030 7"
        document = history_json.export(env.describe(handle.id))
    path = tmp_path / "parcel-1.json"
    path.write_text(history_json.dumps(document))
    return path


def test_an_exported_run_replays_against_the_same_code(tmp_path: Path) -> None:
    path = exported_parcel_run(tmp_path)
    [result] = replay(path)
    assert result.ok and result.workflow_type == "testing_replay_parcel" and result.workflow_id == "parcel-1"
    assert result.events == len(json.loads(path.read_text())["events"])
    assert result.describe().startswith("ok ")


def test_export_keeps_the_types_the_workflow_saw(tmp_path: Path) -> None:
    document = json.loads(exported_parcel_run(tmp_path).read_text())
    loaded = history_json.load(document)
    started = loaded.events[0].attrs["input"]
    assert started == Parcel("P-1", Decimal("1.25"))
    completed = next(ev for ev in loaded.events if ev.type == "activity_completed").attrs["result"]
    assert completed == ("P-1", b"\x00label", dt.datetime(2030, 1, 2, tzinfo=dt.timezone.utc), uuid.UUID(int=7))
    signal = next(ev for ev in loaded.events if ev.type == "signal_received").attrs["payload"]
    assert signal == {"at": 1, "$odd key": (1, 2)}
    raw = next(e for e in document["events"] if e["type"] == "activity_completed")["attrs"]["result"]
    assert set(raw) == {"$tuple"} and raw["$tuple"][0] == "P-1"   # readable where JSON allows


def test_changed_code_is_a_mismatch_with_its_position(tmp_path: Path) -> None:
    path = exported_parcel_run(tmp_path)

    def changed(ctx: Any, parcel: Any) -> str:
        ctx.sleep(1)
        return "x"

    [result] = Replayer(workflows={"testing_replay_parcel": changed}).replay(path)
    assert result.mismatch and result.position == 2
    assert result.error.recorded == "activity 'testing_replay_pack' (seq 1)"
    assert result.error.asked == "timer of 1s (seq 1)"
    assert result.describe() == (f"MISMATCH  {path} (testing_replay_parcel parcel-1): at event #2 the history "
                                 "records activity 'testing_replay_pack' (seq 1), but the code asked for timer "
                                 "of 1s (seq 1)")
    with pytest.raises(NonDeterminismError, match=f"^{path}: workflow 'testing_replay_parcel' .* event #2") as err:
        replay(path, workflows={"testing_replay_parcel": changed})
    assert err.value.position == 2


def test_a_directory_of_fixtures_replays_each_file() -> None:
    results = Replayer(workflows={"order": histories.order, "reminders": histories.reminders,
                                  "ship": ship_v2}).replay(FIXTURES)
    by_file = {Path(r.source).name: r for r in results}
    assert set(by_file) == {p.name for p in FIXTURES.glob("*.json")}
    assert [name for name, r in sorted(by_file.items()) if not r.ok] == ["order_v0_charge_card.json"]
    assert by_file["order_v0_charge_card.json"].mismatch


def test_patched_code_replays_histories_from_before_and_after_the_change() -> None:
    replay(FIXTURES / "ship_v1.json", FIXTURES / "ship_v2.json", FIXTURES / "ship_v3.json",
           workflows={"ship": ship_v2})
    with pytest.raises(NonDeterminismError, match="ship_v2.json: .*patch marker 'fraud-check'"):
        replay([FIXTURES / "ship_v1.json", FIXTURES / "ship_v2.json"], workflows={"ship": ship_v1})


def test_files_that_are_not_histories_and_unknown_types_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a_not_json.json").write_text("{oops")
    (tmp_path / "b_no_events.json").write_text('{"workflow_type": "x"}')
    (tmp_path / "c_gap.json").write_text(json.dumps({"workflow_type": "x", "events": [
        {"id": 1, "type": "workflow_started", "timestamp": 1, "attrs": {}},
        {"id": 3, "type": "timer_fired", "timestamp": 1, "attrs": {}}]}))
    (tmp_path / "d_unknown.json").write_text((FIXTURES / "ship_v1.json").read_text().replace('"ship"', '"nope"'))
    results = Replayer(workflows={"ship": ship_v2}).replay(tmp_path, tmp_path / "missing.json")
    errors = [(Path(r.source).name, type(r.error).__name__, str(r.error)) for r in results]
    assert [e[:2] for e in errors] == [("a_not_json.json", "HistoryFormatError"),
                                       ("b_no_events.json", "HistoryFormatError"),
                                       ("c_gap.json", "HistoryFormatError"),
                                       ("d_unknown.json", "ConfigurationError"),
                                       ("missing.json", "HistoryFormatError")]
    assert "not JSON" in errors[0][2] and "event 2 has id 3" in errors[2][2]
    assert "workflow type 'nope' is not defined" in errors[3][2] and "cannot read it" in errors[4][2]
    assert not any(r.mismatch for r in results)
    with pytest.raises(HistoryFormatError):
        replay(tmp_path / "a_not_json.json")
    with pytest.raises(ConfigurationError, match="cannot import 'no_such_module_xyz'"):
        replay(FIXTURES / "ship_v1.json", imports="no_such_module_xyz")


def test_workflow_states_replay_directly() -> None:
    with WorkflowEnvironment() as env:
        handle = env.execute(parcel_flow, Parcel("P-2", Decimal(2)))
        env.signal(handle.id, "go")
        handle.result(timeout=10)
        [result] = replay(env.describe(handle.id))
    assert result.ok and result.source == f"<{handle.id}>"
