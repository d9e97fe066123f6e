"""MLflow registry webhooks: verify a delivery and map it to a model-update event (pure: no I/O).

MLflow (3.3+) signs each delivery the Standard-Webhooks way (``mlflow/webhooks/delivery.py``):

- headers ``X-MLflow-Delivery-Id`` (a UUID), ``X-MLflow-Timestamp`` (Unix seconds, as text) and, when the
  webhook has a secret, ``X-MLflow-Signature: v1,<base64 HMAC-SHA256>``;
- the HMAC key is the secret's UTF-8 bytes and the signed content is ``f"{delivery_id}.{timestamp}.{body}"``
  where body is the exact JSON text sent;
- the body is ``{"entity": ..., "action": ..., "timestamp": <ISO-8601>, "data": {...}}``.

We accept a delivery only when the signature matches and the timestamp is within ``tolerance`` seconds of
now (5 minutes, the Standard-Webhooks default), and only once: the receiver remembers each accepted delivery
id for as long as its timestamp stays acceptable (``DeliveryLog``) and answers a second delivery of the same id
409, so a captured delivery cannot be replayed inside the window either. MLflow makes a fresh id for every
event and retries (429/5xx answers only) with the same id, so a delivery the receiver failed to handle is
forgotten again and its retry goes through. The admin API's receiver (``admin_api.views.control.mlflow_webhook``)
answers at once and publishes the mapped event; the scorers do the slow part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300.0
MAX_REMEMBERED_DELIVERIES: Final = 10_000
WEBHOOK_SOURCE = "webhook"


class WebhookError(ValueError):
    """A delivery we refuse; ``status`` is the HTTP status to answer with."""

    status = 400


class WebhookSignatureError(WebhookError):
    """Missing or wrong signature (or no secret configured to check it with)."""

    status = 401


class WebhookTimestampError(WebhookError):
    """Timestamp missing, malformed, or outside the tolerance (a replay or a badly skewed clock)."""

    status = 401


class WebhookPayloadError(WebhookError):
    """The signed body is not the JSON object MLflow sends."""

    status = 400


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # HTTP header names are case-insensitive; aiohttp's CIMultiDict already is, a plain dict is not.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return candidate
    return value


def sign_mlflow_webhook(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow would send (for tests and for our own senders)."""
    signed = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


class Delivery(NamedTuple):
    """A verified delivery: its id and timestamp (both signed) and the parsed body."""

    delivery_id: str
    sent_at: int
    payload: dict[str, Any]


def verify_mlflow_webhook(secret: str | None, headers: Mapping[str, str], body: bytes, now: float, *,
                          tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> dict[str, Any]:
    """Check one delivery and return its parsed JSON body (``verify_delivery`` without the id)."""
    return verify_delivery(secret, headers, body, now, tolerance=tolerance).payload


def verify_delivery(secret: str | None, headers: Mapping[str, str], body: bytes, now: float, *,
                    tolerance: float = DEFAULT_TOLERANCE_SECONDS) -> Delivery:
    """Check one delivery and return its id, timestamp and parsed JSON body.

    :param secret: the webhook's secret (``MLFLOW_WEBHOOK_SECRET``); None refuses every delivery, since an
        unsigned hook would let anyone trigger reloads.
    :param headers: the request headers (any mapping; looked up case-insensitively).
    :param body: the raw request body, exactly as received (the signature covers these bytes).
    :param now: the current Unix time in seconds.
    :param tolerance: how far (either way) the delivery's timestamp may be from ``now``.
    :raises WebhookSignatureError: no secret configured, no signature, or none of the signatures match.
    :raises WebhookTimestampError: missing/malformed timestamp, or older/newer than the tolerance.
    :raises WebhookPayloadError: the body is not a JSON object with ``entity`` and ``action``.
    """
    if not secret:
        raise WebhookSignatureError("no webhook secret is configured (MLFLOW_WEBHOOK_SECRET): refusing unsigned "
                                    "deliveries")
    signature = _header(headers, SIGNATURE_HEADER)
    timestamp = _header(headers, TIMESTAMP_HEADER)
    delivery_id = _header(headers, DELIVERY_ID_HEADER)
    if not signature:
        raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} header")
    if not delivery_id:
        raise WebhookSignatureError(f"missing {DELIVERY_ID_HEADER} header")
    if not timestamp:
        raise WebhookTimestampError(f"missing {TIMESTAMP_HEADER} header")
    try:
        sent_at = int(timestamp.strip())
    except ValueError:
        raise WebhookTimestampError(f"{TIMESTAMP_HEADER} is not Unix seconds: {timestamp[:40]!r}") from None
    if abs(now - sent_at) > tolerance:
        raise WebhookTimestampError(f"delivery timestamp {sent_at} is {now - sent_at:+.0f}s from now "
                                    f"(tolerance {tolerance:.0f}s): stale or replayed")
    expected = sign_mlflow_webhook(secret, delivery_id.strip(), timestamp.strip(), body)
    expected_digest = base64.b64decode(expected.split(",", 1)[1])
    # Standard Webhooks allows several space-separated "v1,<sig>" entries (key rotation): any match will do.
    matched = False
    for candidate in signature.split():
        version, _, encoded = candidate.partition(",")
        if version != SIGNATURE_VERSION or not encoded:
            continue
        try:
            digest = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched = hmac.compare_digest(digest, expected_digest) or matched
    if not matched:
        raise WebhookSignatureError("signature does not match (wrong secret, or the body was altered)")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookPayloadError(f"body is not JSON: {exc}") from None
    if not isinstance(payload, dict) or "entity" not in payload or "action" not in payload:
        raise WebhookPayloadError("body is not an MLflow webhook payload (no entity/action)")
    return Delivery(delivery_id.strip(), sent_at, payload)


def _id_key(delivery_id: str) -> str:
    """The id itself (MLflow's are UUIDs), or its digest when it is long: memory per id stays small."""
    if len(delivery_id) <= 64:
        return delivery_id
    return "sha256:" + hashlib.sha256(delivery_id.encode("utf-8", "surrogateescape")).hexdigest()


class DeliveryLog:
    """The delivery ids accepted within the replay window, so a second delivery of one can be refused.

    An id is kept until its timestamp is older than ``window`` (from then on the timestamp check refuses the
    delivery anyway), and at most ``max_ids`` are kept: beyond that the oldest are forgotten first (only signed
    deliveries are remembered, so filling it takes that many real deliveries inside the window). Thread-safe.

    :param window: the timestamp tolerance of ``verify_delivery`` (seconds).
    """

    def __init__(self, window: float = DEFAULT_TOLERANCE_SECONDS, *,
                 max_ids: int = MAX_REMEMBERED_DELIVERIES) -> None:
        self.window = window
        self.max_ids = max_ids
        self._until: OrderedDict[str, float] = OrderedDict()
        """delivery id -> when its timestamp stops being acceptable; in the order accepted."""
        self._lock = threading.Lock()
        self._warned = False

    def claim(self, delivery_id: str, sent_at: float, now: float) -> bool:
        """Remember ``delivery_id``; False when it is already remembered (a replay)."""
        key = _id_key(delivery_id)
        with self._lock:
            self._forget_expired(now)
            if key in self._until:
                return False
            self._until[key] = sent_at + self.window
            while len(self._until) > self.max_ids:
                self._until.popitem(last=False)
                if not self._warned:
                    self._warned = True
                    logger.warning("more than %d webhook deliveries within %.0fs: the oldest ids are forgotten "
                                   "before their replay window ends", self.max_ids, self.window)
            return True

    def release(self, delivery_id: str) -> None:
        """Forget ``delivery_id`` (its handling failed: MLflow's retry of it must be accepted)."""
        with self._lock:
            self._until.pop(_id_key(delivery_id), None)

    def _forget_expired(self, now: float) -> None:
        # Accepted in about timestamp order, so the expired ones gather at the front; a stray later one is
        # dropped when the ones before it are.
        while self._until:
            oldest, until = next(iter(self._until.items()))
            if until >= now:
                return
            del self._until[oldest]

    def __contains__(self, delivery_id: object) -> bool:
        return isinstance(delivery_id, str) and _id_key(delivery_id) in self._until

    def __len__(self) -> int:
        return len(self._until)


def event_from_webhook(payload: Mapping[str, Any], model_name: str | None = None) -> dict[str, Any] | None:
    """Map a verified MLflow webhook payload to ModelUpdateEvent fields, or None when no scorer should act.

    - ``model_version_alias.created``: an alias now points at a version -> ``promoted`` (version + alias). The
      scorers act only if it is the alias they serve (or the shadow alias).
    - ``model_version_alias.deleted``: -> ``reload`` of that alias (the scorers re-resolve it; if it is gone
      they keep the current model and report why).
    - ``model_version.created``, ``model_version_tag.set/deleted``, ``registered_model.created``, prompts,
      budgets: None. A new version serves nothing until an alias points at it, and tags do not choose
      versions. (Stage transitions send no webhook at all: the registry poll covers them.)

    :param payload: the body returned by ``verify_mlflow_webhook``.
    :param model_name: only events for this registered model are relevant (None: any model).
    :returns: ``type, model_name, version, alias, source`` (no event_id / issued_at: the publisher adds them).
    """
    entity = str(payload.get("entity", ""))
    action = str(payload.get("action", ""))
    data = payload.get("data")
    if not isinstance(data, Mapping):
        return None
    name = data.get("name")
    if not isinstance(name, str) or not name or (model_name is not None and name != model_name):
        return None
    if entity != "model_version_alias":
        return None
    alias = data.get("alias")
    if not isinstance(alias, str) or not alias:
        return None
    if action == "created":
        version = data.get("version")
        return {"type": "promoted", "model_name": name, "version": None if version is None else str(version),
                "alias": alias, "source": WEBHOOK_SOURCE}
    if action == "deleted":
        return {"type": "reload", "model_name": name, "version": None, "alias": alias, "source": WEBHOOK_SOURCE}
    return None
