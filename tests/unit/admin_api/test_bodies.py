"""Request bodies of the admin API: JSON parsing and the reload, transition, alias and predict bodies."""

from __future__ import annotations

from typing import Any

import pytest

from admin_api.bodies import parse_alias_body, parse_json, parse_predict, parse_reload, parse_transition
from admin_api.errors import ApiError
from schemas.examples import EXAMPLE_RECORD
from tests.unit.admin_api.api_errors import raises

RECORD = dict(EXAMPLE_RECORD)


# --- JSON ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"{", b"[1,", b"\xff", b"{'a': 1}", b"NaN", b"[Infinity]", b"-Infinity"])
def test_malformed_json(raw: bytes) -> None:
    with raises("malformed_json"):
        parse_json(raw)


def test_empty_body() -> None:
    assert parse_json(b"  ", allow_empty=True) == {}
    with raises("missing_body"):
        parse_json(b"")
    assert parse_json(b'{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}


def test_deeply_nested_json_is_a_client_error() -> None:
    with raises("malformed_json"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)


# --- bodies -----------------------------------------------------------------------------------------------
def test_reload_body() -> None:
    assert parse_reload({}) == (False, None, None, None, False)
    assert parse_reload({"force_mlflow": True}) == (True, None, None, None, False)
    wanted = parse_reload({"version": 4, "alias": "champion", "stage": "Production", "broadcast": True})
    assert (wanted.version, wanted.alias, wanted.stage, wanted.broadcast) == ("4", "champion", "Production", True)


@pytest.mark.parametrize(("body", "error"), [
    ([], "invalid_body"), ("x", "invalid_body"), ({"force_mlflow": 1}, "wrong_type"),
    ({"broadcast": "true"}, "wrong_type"), ({"stage": None}, "invalid_stage"), ({"version": None}, "invalid_version"),
    ({"alias": "latest"}, "invalid_alias"), ({"forse_mlflow": True}, "unknown_field"),
])
def test_bad_reload_bodies(body: Any, error: str) -> None:
    with raises(error):
        parse_reload(body)


def test_transition_body() -> None:
    assert parse_transition({"version": "4", "stage": "Production", "archive_existing": True}) == ("4", "Production",
                                                                                                   True)
    assert parse_transition({"version": 2, "stage": "Archived"}) == ("2", "Archived", False)


@pytest.mark.parametrize(("body", "error"), [
    ({"stage": "Staging"}, "missing_field"), ({"version": "1"}, "missing_field"),
    ({"version": "1", "stage": "Bad"}, "invalid_stage"),
    ({"version": "1", "stage": "None", "archive_existing": True}, "invalid_stage"),
    ({"version": "1", "stage": "Staging", "archive_existing": None}, "wrong_type"),
    ({"version": "x", "stage": "Staging"}, "invalid_version"), (None, "invalid_body"),
    ({"version": "1", "stage": "Staging", "name": "other"}, "unknown_field"),
])
def test_bad_transition_bodies(body: Any, error: str) -> None:
    with raises(error):
        parse_transition(body)


def test_alias_body() -> None:
    assert parse_alias_body({"version": "7"}) == "7"
    for body, error in (({}, "missing_field"), ({"version": "a"}, "invalid_version"), ([], "invalid_body"),
                        ({"version": "1", "alias": "x"}, "unknown_field")):
        with raises(error):
            parse_alias_body(body)


def test_predict_bodies() -> None:
    records, single = parse_predict(RECORD)
    assert single and records[0]["median_income"] == 8.3252 and records[0]["record_id"] is None
    records, single = parse_predict([RECORD, {**RECORD, "total_bedrooms": None}])
    assert not single and len(records) == 2 and records[1]["total_bedrooms"] is None


@pytest.mark.parametrize(("body", "error", "reason"), [
    ({**RECORD, "longitude": "1"}, "invalid_record", "wrong_type"),
    ({**RECORD, "median_income": float("nan")}, "invalid_record", "not_finite"),
    ({**RECORD, "extra": 1}, "invalid_record", "unknown_field"),
    ({}, "invalid_record", "missing_field"),
    ([RECORD, {**RECORD, "ocean_proximity": "MOON"}], "invalid_record", "unknown_category"),
    ([RECORD, []], "invalid_record", "not_an_object"),
    ([], "invalid_body", None),
    (7, "invalid_body", None),
    ([RECORD] * 5001, "too_many_records", None),
])
def test_bad_predict_bodies(body: Any, error: str, reason: str | None) -> None:
    with pytest.raises(ApiError) as caught:
        parse_predict(body)
    assert (caught.value.status_code, caught.value.error) == (400, error)
    assert caught.value.extra.get("reason") == reason
    if isinstance(body, list) and reason is not None:
        assert caught.value.extra["index"] == 1
