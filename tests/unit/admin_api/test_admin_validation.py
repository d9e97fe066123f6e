"""Pure request validation of the admin API: bodies, names, stages, aliases, versions, auth, health verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from admin_api.auth import check_key, key_matches, needs_key
from admin_api.errors import ApiError
from admin_api.openapi import openapi_document
from admin_api.registry import map_mlflow_error, validate_alias, validate_model_name, validate_stage, validate_version
from admin_api.views import (
    health_report,
    parse_alias_body,
    parse_json,
    parse_predict,
    parse_reload,
    parse_transition,
)
from config.settings import load_settings
from consumer.core.handle import ModelHandle
from consumer.state import ReloadResult, ScorerState
from schemas.examples import EXAMPLE_RECORD

RECORD = dict(EXAMPLE_RECORD)


def raises(error: str, status: int = 400) -> Any:
    class Check:
        def __enter__(self) -> None:
            return None

        def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
            assert isinstance(exc, ApiError), f"expected ApiError {error}, got {exc!r}"
            assert (exc.status_code, exc.error) == (status, error), (exc.status_code, exc.error, exc.message)
            assert exc.message
            return True

    return Check()


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


# --- names ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alias", ["champion", "challenger", "blue-green_2", "A", "x" * 255, "v1a", "latest2"])
def test_good_aliases(alias: str) -> None:
    assert validate_alias(alias) == alias


@pytest.mark.parametrize("alias", ["", "latest", "LATEST", "v1", "V42", "a b", "a.b", "a/b", "é", "x" * 256, None, 3,
                                   ["a"]])
def test_bad_aliases(alias: Any) -> None:
    with raises("invalid_alias"):
        validate_alias(alias)


@pytest.mark.parametrize("stage", ["None", "Staging", "Production", "Archived"])
def test_good_stages(stage: str) -> None:
    assert validate_stage(stage) == stage


@pytest.mark.parametrize("stage", ["production", "PRODUCTION", "Prod", "", None, 1, "Development"])
def test_bad_stages(stage: Any) -> None:
    with raises("invalid_stage"):
        validate_stage(stage)


@pytest.mark.parametrize(("version", "expected"), [("3", "3"), (3, "3"), ("10", "10"), (9_999_999_999, "9999999999")])
def test_good_versions(version: Any, expected: str) -> None:
    assert validate_version(version) == expected


@pytest.mark.parametrize("version", ["0", 0, -1, "-1", "01", "3.0", 3.0, "three", True, None, "", "1 ", [1],
                                     10**10])
def test_bad_versions(version: Any) -> None:
    with raises("invalid_version"):
        validate_version(version)


@pytest.mark.parametrize("name", ["california_housing_best_model", "my model", "m-1.2"])
def test_good_model_names(name: str) -> None:
    assert validate_model_name(name) == name


@pytest.mark.parametrize("name", ["", "a'b", 'a"b', "a/b", "a\\b", "a\nb", "x" * 257])
def test_bad_model_names(name: str) -> None:
    with raises("invalid_model_name"):
        validate_model_name(name)


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


# --- auth --------------------------------------------------------------------------------------------------
def test_which_requests_need_the_key() -> None:
    assert not needs_key("POST", "/api/predict", protect_reads=False)  # changes nothing: open like the original
    assert needs_key("POST", "/api/predict", protect_reads=True)
    assert needs_key("POST", "/api/model/reload", protect_reads=False)
    assert needs_key("DELETE", "/api/mlflow/models/{name}/aliases/{alias}", protect_reads=False)
    assert not needs_key("GET", "/api/model/info", protect_reads=False)
    assert needs_key("GET", "/api/model/info", protect_reads=True)
    assert not needs_key("GET", "/health", protect_reads=True)
    assert not needs_key("POST", "/api/webhooks/mlflow", protect_reads=True)  # signed instead


def test_key_checks() -> None:
    with raises("forbidden", 403):
        check_key(None, "anything", mutating=True)
    with raises("unauthorized", 401):
        check_key("secret", None, mutating=True)
    with raises("unauthorized", 401):
        check_key("secret", "secreT", mutating=True)
    check_key("secret", "secret", mutating=True)
    assert key_matches("sécret", "sécret") and not key_matches("secret", "s\udcffcret")


# --- errors from MLflow -----------------------------------------------------------------------------------
def test_mlflow_errors_map_to_statuses() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

    assert map_mlflow_error(MlflowException("x", RESOURCE_DOES_NOT_EXIST), "get").status_code == 404
    assert map_mlflow_error(MlflowException("x", INVALID_PARAMETER_VALUE), "get").status_code == 400
    down = MlflowException("API request failed: Max retries exceeded (Connection refused)", INTERNAL_ERROR)
    assert map_mlflow_error(down, "get").status_code == 503
    assert map_mlflow_error(ConnectionRefusedError("refused"), "get").status_code == 503
    answered = MlflowException("Max retries exceeded (too many 500 error responses)", INTERNAL_ERROR)
    assert map_mlflow_error(answered, "get").status_code == 502


# --- health verdicts ----------------------------------------------------------------------------------------
SETTINGS = load_settings({"scorer.instance_id": "unit"}, env={}, config_path=None)


def verdict(state: ScorerState, *, kafka_down_for: float | None = None, consumer_expected: bool = True,
            error_rate: float | None = None) -> tuple[int, dict[str, Any]]:
    return health_report(SETTINGS, state, kafka_down_for=kafka_down_for, consumer_expected=consumer_expected,
                         error_rate=error_rate)


def model(source: str = "registry") -> ModelHandle:
    return ModelHandle(model=None, name="m", version="3", source=source)  # type: ignore[arg-type]


def healthy_state() -> ScorerState:
    state = ScorerState(SETTINGS, model=model())
    state.set_mlflow_reachable(True)
    state.kafka_connected = True
    return state


def test_healthy() -> None:
    status, body = verdict(healthy_state())
    assert (status, body["status"], body["reasons"]) == (200, "healthy", [])
    assert body["kafka_connection"] == "connected" and body["model_version"] == "3"


@pytest.mark.parametrize("change", ["fallback", "mlflow", "reload", "drift", "errors", "kafka_blip"])
def test_degraded(change: str) -> None:
    state = healthy_state()
    kafka_down_for, error_rate = None, None
    if change == "fallback":
        state.models.swap(model("fallback"))
    elif change == "mlflow":
        state.set_mlflow_reachable(False)
    elif change == "reload":
        state.record_reload(ReloadResult("failed", "4", "corrupt artifact"))
    elif change == "drift":
        state.drift = {"median_income": 0.4, "latitude": 0.01}
    elif change == "errors":
        error_rate = 12.0
    else:
        kafka_down_for = 5.0
    status, body = verdict(state, kafka_down_for=kafka_down_for, error_rate=error_rate)
    assert (status, body["status"]) == (200, "degraded"), body
    assert len(body["reasons"]) == 1
    if change == "drift":
        assert body["drift_alerts"] == ["median_income"]


@pytest.mark.parametrize("change", ["no_model", "fatal", "kafka_long"])
def test_unhealthy(change: str) -> None:
    state = ScorerState(SETTINGS) if change == "no_model" else healthy_state()
    if change == "fatal":
        state.fatal_error = "topic deleted"
    status, body = verdict(state, kafka_down_for=600.0 if change == "kafka_long" else None)
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["reasons"]


def test_error_rate_below_the_threshold_is_fine() -> None:
    assert verdict(healthy_state(), error_rate=1.0)[1]["status"] == "healthy"


# --- the OpenAPI document ---------------------------------------------------------------------------------
def test_openapi_document_is_self_consistent() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(document):
        assert ref.split("/")[-1] in schemas, ref
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "200" in operation["responses"], (method, path)
            if method in {"post", "put", "delete"} and path != "/api/webhooks/mlflow":
                assert {"400", "401", "403"} <= set(operation["responses"]), (method, path)
    record = schemas["HousingRecord"]
    assert record["additionalProperties"] is False and "total_bedrooms" not in record["required"]
