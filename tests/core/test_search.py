"""Search attributes' typing and filters (beluga/core/search.py): what every store and the CLI rely on."""

from __future__ import annotations

import datetime as dt

import pytest

from beluga.core.search import (
    InvalidSearchAttribute,
    Range,
    check_attributes,
    index_entries,
    merged,
    parse_where,
    where_holds,
)
from beluga.executors.base import WorkflowOptions

UTC = dt.timezone.utc


@pytest.mark.parametrize("bad", [{"k": {"a": 1}}, {"k": [1]}, {"k": (1,)}, {"k": b"x"}, {"k": dt.datetime(2026, 1, 1)},
                                 {"k": float("inf")}, {"k": 2**60}, {"k": "x" * 300}, {"1st": 1}, {"a b": 1},
                                 {"": 1}, {"k": None}])
def test_bad_attributes_are_refused_with_the_name_and_the_reason(bad: dict) -> None:
    with pytest.raises(InvalidSearchAttribute) as err:
        check_attributes(bad)
    assert isinstance(err.value, ValueError)
    with pytest.raises(InvalidSearchAttribute):
        WorkflowOptions(search_attributes=bad)


def test_nested_dict_error_names_the_attribute_and_the_types() -> None:
    with pytest.raises(InvalidSearchAttribute, match=r"search attribute 'order': .*str \(keyword\), int, float"):
        check_attributes({"order": {"id": 1}})


def test_upsert_values_may_be_none_to_remove() -> None:
    assert check_attributes({"k": None}, allow_unset=True) == {"k": None}
    assert merged({"a": 1, "b": 2}, {"b": None, "c": "x"}) == {"a": 1, "c": "x"}


def test_equality_is_typed_and_ranges_compare_numbers_and_instants() -> None:
    day = dt.datetime(2026, 1, 1, tzinfo=UTC)
    attrs = {"n": 10, "f": 2.5, "k": "10", "b": True, "at": day}
    assert where_holds({"n": 10.0}, attrs) and where_holds({"k": "10"}, attrs)
    assert not where_holds({"k": 10}, attrs) and not where_holds({"n": "10"}, attrs)
    assert not where_holds({"b": 1}, attrs) and where_holds({"b": True}, attrs)
    assert where_holds({"n": Range(gte=10, lt=11), "f": Range(gt=2)}, attrs)
    assert not where_holds({"n": Range(gt=10)}, attrs) and not where_holds({"missing": 1}, attrs)
    assert where_holds({"at": Range(gte=day - dt.timedelta(seconds=1), lte=day)}, attrs)
    assert not where_holds({"n": Range(gte=day)}, attrs)  # a datetime range never holds for a number
    assert index_entries(attrs) == [("at", "datetime", day.timestamp()), ("b", "bool", 1), ("f", "number", 2.5),
                                    ("k", "keyword", "10"), ("n", "number", 10.0)]


def test_cli_conditions_parse_into_typed_filters() -> None:
    assert parse_where(["customer=c-42", "amount>=10", "amount<100", "vip=true", "code=\"10\""]) == {
        "customer": "c-42", "amount": Range(gte=10, lt=100), "vip": True, "code": "10"}
    assert parse_where(["at>2026-01-02T03:04:05Z"]) == {"at": Range(gt=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))}
    assert parse_where(["at<=2026-01-02 00:00"]) == {"at": Range(lte=dt.datetime(2026, 1, 2, tzinfo=UTC))}
    assert parse_where(["ratio=0.5", "n=-3"]) == {"ratio": 0.5, "n": -3}
    for bad in (["customer"], ["a=1", "a=2"], ["a!=1"], ["name>=abc"], ["a=1", "a>0"]):
        with pytest.raises(InvalidSearchAttribute):
            parse_where(bad)
