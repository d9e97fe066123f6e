"""MLflow webhook verification (the exact scheme MLflow signs with) and the event mapping."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from admin_api.webhooks import (
    WebhookPayloadError,
    WebhookSignatureError,
    WebhookTimestampError,
    event_from_webhook,
    sign_mlflow_webhook,
    verify_mlflow_webhook,
)

SECRET = "s3cret-for-tests"
NOW = 1_760_000_000.0


def delivery(payload: dict, *, secret: str = SECRET, timestamp: float = NOW) -> tuple[dict[str, str], bytes]:
    """Headers and body built the way mlflow/webhooks/delivery.py builds them."""
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body_text = json.dumps(payload)
    delivery_id = str(uuid.uuid4())
    stamp = str(int(timestamp))
    headers = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery_id,
               "X-MLflow-Timestamp": stamp,
               "X-MLflow-Signature": _generate_hmac_signature(secret, delivery_id, stamp, body_text)}
    return headers, body_text.encode()


def alias_created(name: str = "m", alias: str = "champion", version: str = "3") -> dict:
    return {"entity": "model_version_alias", "action": "created", "timestamp": "2025-10-09T10:00:00+00:00",
            "data": {"name": name, "alias": alias, "version": version}}


def test_a_delivery_signed_by_mlflow_verifies_and_returns_the_payload() -> None:
    headers, body = delivery(alias_created())
    assert verify_mlflow_webhook(SECRET, headers, body, NOW + 10) == alias_created()


def test_our_signer_matches_mlflows() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    assert sign_mlflow_webhook("k", "d-1", "123", b'{"a": 1}') == _generate_hmac_signature("k", "d-1", "123",
                                                                                              '{"a": 1}')


def test_header_names_are_case_insensitive() -> None:
    headers, body = delivery(alias_created())
    lowered = {k.lower(): v for k, v in headers.items()}
    assert verify_mlflow_webhook(SECRET, lowered, body, NOW)["data"]["version"] == "3"


@pytest.mark.parametrize("tamper", ["wrong_secret", "altered_body", "missing_signature", "garbage_signature",
                                    "other_delivery_id", "unsigned_version"])
def test_bad_signatures_are_refused(tamper: str) -> None:
    headers, body = delivery(alias_created(), secret="other" if tamper == "wrong_secret" else SECRET)
    if tamper == "altered_body":
        body = body.replace(b'"3"', b'"4"')
    elif tamper == "missing_signature":
        del headers["X-MLflow-Signature"]
    elif tamper == "garbage_signature":
        headers["X-MLflow-Signature"] = "v1,@@@not-base64@@@"
    elif tamper == "other_delivery_id":
        headers["X-MLflow-Delivery-Id"] = str(uuid.uuid4())
    elif tamper == "unsigned_version":
        headers["X-MLflow-Signature"] = "v0," + headers["X-MLflow-Signature"].split(",", 1)[1]
    with pytest.raises(WebhookSignatureError) as info:
        verify_mlflow_webhook(SECRET, headers, body, NOW)
    assert info.value.status == 401


def test_one_matching_signature_among_several_is_enough() -> None:
    headers, body = delivery(alias_created())
    headers["X-MLflow-Signature"] = "v1,AAAA " + headers["X-MLflow-Signature"]
    assert verify_mlflow_webhook(SECRET, headers, body, NOW)["action"] == "created"


def test_no_secret_configured_refuses_everything() -> None:
    headers, body = delivery(alias_created())
    with pytest.raises(WebhookSignatureError, match="MLFLOW_WEBHOOK_SECRET"):
        verify_mlflow_webhook(None, headers, body, NOW)


@pytest.mark.parametrize("skew", [-301, 301, 3600])
def test_stale_or_future_timestamps_are_refused(skew: int) -> None:
    headers, body = delivery(alias_created(), timestamp=NOW + skew)
    with pytest.raises(WebhookTimestampError, match="tolerance"):
        verify_mlflow_webhook(SECRET, headers, body, NOW)


def test_timestamp_within_tolerance_and_custom_tolerance() -> None:
    headers, body = delivery(alias_created(), timestamp=NOW - 290)
    assert verify_mlflow_webhook(SECRET, headers, body, NOW)
    with pytest.raises(WebhookTimestampError):
        verify_mlflow_webhook(SECRET, headers, body, NOW, tolerance=60)


def test_malformed_timestamp_is_refused() -> None:
    headers, body = delivery(alias_created())
    headers["X-MLflow-Timestamp"] = "yesterday"
    with pytest.raises(WebhookTimestampError):
        verify_mlflow_webhook(SECRET, headers, body, NOW)


def test_signed_body_that_is_not_a_webhook_payload() -> None:
    stamp, delivery_id, body = str(int(NOW)), "d", b'["not", "an", "object"]'
    headers = {"X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": stamp,
               "X-MLflow-Signature": sign_mlflow_webhook(SECRET, delivery_id, stamp, body)}
    with pytest.raises(WebhookPayloadError) as info:
        verify_mlflow_webhook(SECRET, headers, body, NOW)
    assert info.value.status == 400


def test_real_clock_round_trip() -> None:
    headers, body = delivery(alias_created(), timestamp=time.time())
    assert verify_mlflow_webhook(SECRET, headers, body, time.time())


# --- mapping ----------------------------------------------------------------------------------------


def test_alias_created_is_a_promotion_of_that_version() -> None:
    assert event_from_webhook(alias_created("m", "champion", "7"), "m") == {
        "type": "promoted", "model_name": "m", "version": "7", "alias": "champion", "source": "webhook"}


def test_alias_deleted_is_a_reload_of_the_alias() -> None:
    payload = {"entity": "model_version_alias", "action": "deleted", "data": {"name": "m", "alias": "champion"}}
    assert event_from_webhook(payload, "m") == {"type": "reload", "model_name": "m", "version": None,
                                                "alias": "champion", "source": "webhook"}


def test_other_models_are_irrelevant() -> None:
    assert event_from_webhook(alias_created("other"), "m") is None
    assert event_from_webhook(alias_created("other"))["model_name"] == "other"  # type: ignore[index]


@pytest.mark.parametrize("entity,action,data", [
    ("model_version", "created", {"name": "m", "version": "4", "source": "models:/x", "run_id": "r"}),
    ("model_version_tag", "set", {"name": "m", "version": "4", "key": "k", "value": "v"}),
    ("model_version_tag", "deleted", {"name": "m", "version": "4", "key": "k"}),
    ("registered_model", "created", {"name": "m"}),
    ("prompt_alias", "created", {"name": "m", "alias": "champion", "version": "1"}),
    ("model_version_alias", "updated", {"name": "m", "alias": "champion", "version": "1"}),
])
def test_events_that_do_not_choose_a_version_map_to_none(entity: str, action: str, data: dict) -> None:
    assert event_from_webhook({"entity": entity, "action": action, "data": data}, "m") is None


def test_malformed_data_maps_to_none() -> None:
    assert event_from_webhook({"entity": "model_version_alias", "action": "created", "data": "x"}, "m") is None
    assert event_from_webhook({"entity": "model_version_alias", "action": "created",
                               "data": {"name": "m", "alias": ""}}, "m") is None


def test_example_payloads_mlflow_ships_are_mapped() -> None:
    from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent
    from mlflow.webhooks.types import get_example_payload_for_event

    data = get_example_payload_for_event(WebhookEvent(WebhookEntity.MODEL_VERSION_ALIAS, WebhookAction.CREATED))
    payload = {"entity": "model_version_alias", "action": "created", "timestamp": "t", "data": data}
    event = event_from_webhook(payload, data["name"])
    assert event is not None and event["version"] == str(data["version"]) and event["alias"] == data["alias"]
