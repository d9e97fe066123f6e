"""The pure scoring core: a batch of Kafka messages in, predictions and dead letters out.

No Kafka and no MLflow here: consumer/kafka/loop.py hands in plain ``Incoming`` tuples, and its commit
strategy (consumer/kafka/commit.py) produces the returned ``Scored`` values to the predictions topic and
``Rejected`` values to the dead-letter topic. Per record the work is decode + validate (cheap, plain
Python); the model is called once per batch on the batch's feature columns (no DataFrame unless the model
needs one). Only if that call raises is the batch re-predicted record by record, to find and reject the
records the model cannot score without losing the others. A prediction too large to produce (it keeps its
input's key, which can be huge) is not produced: its input is a dead letter (``output_too_large``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from consumer.core.batch_decode import decode_validate
from consumer.core.features import FeatureColumns, row_count, take_rows
from consumer.core.handle import ModelHandle
from consumer.core.routing import ROLE_CANARY, ROLE_CHAMPION, canary_mask
from schemas import clock, topics
from schemas.codecs import PredictionEncoder, PredictionJsonWriter, RecordDecoder, WireFormat
from schemas.errors import MAX_MESSAGE_CHARS, PREDICT, PRODUCE
from schemas.validation import MAX_RECORD_ID_CHARS

logger = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
Position = tuple[str, int, int]
"""Where a record was consumed: topic, partition, offset."""

KEY_DIGEST_PREFIX = "key-sha256:"
"""A key longer than ``MAX_RECORD_ID_CHARS`` stands in record ids (and too-large dead letters' keys) as this prefix
and the key's SHA-256 in hex: stable, so the same key always gives the same id."""
OUTPUT_TOO_LARGE = "output_too_large"


class Incoming(NamedTuple):
    """One consumed message, as the loop sees it."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    """Broker/producer timestamp, if any."""
    headers: tuple[tuple[str, bytes], ...] = ()


class Scored(NamedTuple):
    """A prediction ready to produce to the predictions topic."""

    key: bytes | None
    """The input's key, unchanged."""
    value: bytes
    """Prediction encoded in the input's wire format."""
    headers: Headers
    """model_name, model_version and format."""
    source: Incoming
    record_id: str
    prediction: float
    role: str = ROLE_CHAMPION
    """``champion``, or ``canary`` when the canary scored it (its version is in the headers and the value)."""


class Rejected(NamedTuple):
    """A record for the dead-letter topic."""

    key: bytes | None
    """The input's key, unchanged."""
    value: bytes
    """The ORIGINAL bytes (b"" when the value was null)."""
    headers: Headers
    """dlq.reason, dlq.message, dlq.stage, dlq.source.topic/partition/offset."""
    source: Incoming
    reason: str
    """A code from schemas.errors.REASONS."""
    stage: str
    """decode, validate or predict."""
    message: str


class BatchResult(NamedTuple):
    """What one batch produced; each list follows input order."""

    scored: list[Scored]
    rejected: list[Rejected]
    features: FeatureColumns | None
    """Feature columns of the scored records (row i is scored[i]), for drift monitoring; None if none."""
    predictions: np.ndarray
    """float64 predictions of the scored records (predictions[i] is scored[i].prediction)."""
    predict_seconds: float = 0.0
    """Time spent in the model's predict call(s) for this batch."""


BatchHook = Callable[[BatchResult, ModelHandle], None]
"""Called by the scoring loop after each committed batch (drift monitor, prediction logger, shadow monitor).
It runs on the scoring thread: it must be quick (hand work to a queue) and never raise."""



def key_digest(key: bytes) -> str:
    """``key-sha256:<hex>``: the id that stands for a key too long to be one."""
    return KEY_DIGEST_PREFIX + hashlib.sha256(key).hexdigest()


def _record_id(record: dict[str, Any], msg: Incoming) -> str:
    """The record's ``record_id``; else its key (UTF-8), bounded like the field itself: a key over 256 characters
    becomes ``key-sha256:<hex>``; else its position ``topic-partition-offset``."""
    record_id = record["record_id"]
    if record_id:
        return str(record_id)
    if msg.key:
        try:
            text = msg.key.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return text if len(text) <= MAX_RECORD_ID_CHARS else key_digest(msg.key)
    return f"{msg.topic}-{msg.partition}-{msg.offset}"


def output_size(key: bytes | None, value: bytes, headers: Headers) -> int:
    """Bytes of a message as the producer counts them against ``message.max.bytes``: key, value and headers."""
    return len(key or b"") + len(value) + sum(len(name) + len(data) for name, data in headers)


def _too_large(msg: Incoming, message: str, model: ModelHandle) -> Rejected:
    """The dead letter of a record whose prediction cannot be produced. Its key is the input's, unless that key
    is over 256 bytes (the usual cause): then ``key-sha256:<hex>``, which keeps the dead letter small enough to
    be produced; ``dlq.source.*`` still point at the original message."""
    rejected = _reject(msg, OUTPUT_TOO_LARGE, PRODUCE, message[:MAX_MESSAGE_CHARS], model)
    if msg.key is not None and len(msg.key) > MAX_RECORD_ID_CHARS:
        rejected = rejected._replace(key=key_digest(msg.key).encode())
    return rejected


def _reject(msg: Incoming, reason: str, stage: str, message: str, model: ModelHandle | None = None) -> Rejected:
    headers: Headers = [
        (topics.HEADER_DLQ_REASON, reason.encode()),
        (topics.HEADER_DLQ_MESSAGE, message.encode("utf-8", "replace")),
        (topics.HEADER_DLQ_STAGE, stage.encode()),
        (topics.HEADER_DLQ_SOURCE_TOPIC, msg.topic.encode("utf-8", "replace")),
        (topics.HEADER_DLQ_SOURCE_PARTITION, str(msg.partition).encode()),
        (topics.HEADER_DLQ_SOURCE_OFFSET, str(msg.offset).encode()),
    ]
    if model is not None:  # a predict-stage failure names the model that failed
        headers.append((topics.HEADER_MODEL_NAME, model.name.encode()))
        headers.append((topics.HEADER_MODEL_VERSION, model.version.encode()))
    return Rejected(msg.key, msg.value or b"", headers, msg, reason, stage, message)


def _output_too_large(msg: Incoming, value: bytes, headers: Headers, max_output_bytes: int | None,
                      refused: Mapping[Position, str] | None) -> str | None:
    """Why this prediction cannot be produced, or None (the usual case: two cheap checks)."""
    if refused and (why := refused.get((msg.topic, msg.partition, msg.offset))) is not None:
        return why
    if max_output_bytes is not None and (size := output_size(msg.key, value, headers)) > max_output_bytes:
        return (f"the prediction is {size:,} bytes (key {len(msg.key or b''):,}), over the producer's "
                f"message.max.bytes {max_output_bytes:,}")
    return None


def _predict_all(model: ModelHandle, features: FeatureColumns) -> np.ndarray:
    predictions = model.predict(features)
    rows = row_count(features)
    if predictions.shape != (rows,):
        raise ValueError(f"model returned {predictions.shape} predictions for {rows} rows")
    return predictions


def _predict_isolated(model: ModelHandle, features: FeatureColumns) -> list[float | Exception]:
    """Error path only: predict row by row so one bad row does not sink the batch."""
    out: list[float | Exception] = []
    for i in range(row_count(features)):
        try:
            out.append(float(_predict_all(model, take_rows(features, slice(i, i + 1)))[0]))
        except Exception as exc:
            out.append(exc)
    return out


def _predict_guarded(model: ModelHandle, features: FeatureColumns) -> np.ndarray | list[float | Exception]:
    """One call for the rows; only if it raises, row by row (the failing rows become dead letters)."""
    try:
        return _predict_all(model, features)
    except Exception as exc:
        logger.warning("model %s version %s failed on a batch of %d (%s); predicting record by record",
                       model.name, model.version, row_count(features), exc)
        return _predict_isolated(model, features)


def _predict_routed(model: ModelHandle, canary: ModelHandle, features: FeatureColumns,
                    on_canary: np.ndarray) -> list[float | Exception]:
    """Champion rows and canary rows, each predicted once by its own model, merged back in row order."""
    merged: list[float | Exception] = [0.0] * len(on_canary)
    for handle, rows in ((model, np.flatnonzero(~on_canary)), (canary, np.flatnonzero(on_canary))):
        if rows.size:
            for row, outcome in zip(rows.tolist(), _predict_guarded(handle, take_rows(features, rows)), strict=True):
                merged[row] = outcome
    return merged


def _shadow_predictions(shadow: ModelHandle, features: FeatureColumns) -> np.ndarray | None:
    try:
        return _predict_all(shadow, features)
    except Exception:
        # The shadow never affects the main prediction: log once per batch and carry on.
        logger.warning(
            "shadow model %s version %s failed on a batch of %d; shadow fields left null",
            shadow.name,
            shadow.version,
            row_count(features),
            exc_info=True,
        )
        return None


_new_scored = partial(tuple.__new__, Scored)
"""A Scored from a 7-tuple of its fields, without a Python call per record."""


def _headers(model: ModelHandle, fmt: WireFormat) -> Headers:
    return [(topics.HEADER_MODEL_NAME, model.name.encode()), (topics.HEADER_MODEL_VERSION, model.version.encode()),
            (topics.HEADER_FORMAT, fmt.value.encode())]


def _scored_json_batch(valid: Sequence[tuple[int, Incoming, dict[str, Any], WireFormat]],
                       outcomes: np.ndarray | list[float | Exception], on_canary: np.ndarray | None,
                       shadow_out: np.ndarray | None, writers: Mapping[str, PredictionJsonWriter],
                       handles: Mapping[str, ModelHandle],
                       max_output_bytes: int | None) -> tuple[list[Scored], np.ndarray] | None:
    """The common batch in one pass per role: every record JSON, every prediction a finite float and every
    output certainly under ``max_output_bytes``. None when the batch is not that: the per-record path decides.
    The outputs are the per-record path's, byte for byte (tests/unit/consumer/core/test_scoring_outputs.py)."""
    if any(type(outcome) is not float and not isinstance(outcome, np.floating) for outcome in outcomes) \
            if isinstance(outcomes, list) else outcomes.dtype.kind != "f":
        return None  # a row the model failed on: dead letters, record by record
    predictions = np.asarray(outcomes, dtype=np.float64)
    if not np.isfinite(predictions).all() or any(fmt is not WireFormat.JSON for _, _, _, fmt in valid):
        return None
    shadow_values: list[float | None] | None = None
    if shadow_out is not None:
        shadow_values = shadow_out.astype(np.float64).tolist()
        if not np.isfinite(shadow_out).all():
            shadow_values = [value if math.isfinite(value) else None for value in shadow_values]  # type: ignore[arg-type]
    groups: list[tuple[str, list[int] | None]] = [(ROLE_CHAMPION, None)]
    if on_canary is not None:
        groups = [(ROLE_CHAMPION, np.flatnonzero(~on_canary).tolist()),
                  (ROLE_CANARY, np.flatnonzero(on_canary).tolist())]
    values_all = predictions.tolist()
    merged: list[Scored] = []
    order: list[int] = []
    for role, rows in groups:
        entries = valid if rows is None else [valid[row] for row in rows]
        if not entries:
            continue
        values = values_all if rows is None else [values_all[row] for row in rows]
        shadows = shadow_values if shadow_values is None or rows is None else [shadow_values[row] for row in rows]
        messages = [msg for _, msg, _, _ in entries]
        record_ids = [rid if type(rid := record["record_id"]) is str and rid else _record_id(record, msg)
                      for _, msg, record, _ in entries]
        outputs = writers[role].write_many(record_ids, values, [msg.topic for msg in messages],
                                           [msg.partition for msg in messages], [msg.offset for msg in messages],
                                           [record["event_time"] for _, _, record, _ in entries], shadows)
        headers = _headers(handles[role], WireFormat.JSON)
        if max_output_bytes is not None:
            header_bytes = sum(len(name) + len(data) for name, data in headers)
            if max(map(len, outputs)) + max(len(msg.key or b"") for msg in messages) + header_bytes > max_output_bytes:
                return None  # some output may be too large: the per-record path names which
        # a fresh header list per message: producers may append their own headers
        count = len(entries)
        merged.extend(map(_new_scored, zip([msg.key for msg in messages], outputs, map(list, repeat(headers, count)),
                                           messages, record_ids, values, repeat(role, count), strict=True)))
        order.extend(range(len(entries)) if rows is None else rows)
    if on_canary is not None:
        merged = [scored for _, scored in sorted(zip(order, merged, strict=True), key=itemgetter(0))]
    return merged, predictions


def score_batch(
    batch: Sequence[Incoming],
    model: ModelHandle,
    *,
    decoder: RecordDecoder,
    encoder: PredictionEncoder,
    shadow: ModelHandle | None = None,
    canary: ModelHandle | None = None,
    canary_fraction: float = 0.0,
    now_ms: Callable[[], int] = clock.now_ms,
    max_output_bytes: int | None = None,
    refused: Mapping[Position, str] | None = None,
) -> BatchResult:
    """Decode, validate, predict and encode one batch.

    :param batch: messages in consumption order.
    :param model: the current model handle; called once for the whole batch.
    :param decoder: decodes record values (its registry resolves Confluent ids).
    :param encoder: encodes predictions in each input's wire format.
    :param shadow: optional second model scored on the same columns; its failures are swallowed.
    :param canary: optional model that scores, instead of the champion, the records whose key falls in the
        first ``canary_fraction`` of the key space (``consumer.core.routing``); its predictions are outputs with
        its version and ``role: canary``, its failures dead letters naming it.
    :param now_ms: clock for ``scored_at`` (read once per batch).
    :param max_output_bytes: a prediction larger than this (key + value + headers; the producer's
        ``message.max.bytes``) is not produced: its input is dead-lettered as ``output_too_large``.
    :param refused: inputs whose prediction the broker refused as too large when their batch was produced
        before (position -> why): dead-lettered as ``output_too_large`` now.
    :returns: scored and rejected messages, each in input order, plus the scored records' feature columns.
    :raises RegistryUnavailableError: the schema registry could not be asked; nothing should be
        committed for this batch.
    """
    # decode + validate: column-wise for clean JSON, record by record for the rest (consumer/core/batch_decode.py)
    valid, rejected, decoded_columns = decode_validate(batch, decoder, _reject)
    if not valid or decoded_columns is None:
        return BatchResult([], [r for _, r in rejected], None, np.empty(0, dtype=np.float64))

    columns: FeatureColumns = decoded_columns
    outcomes: np.ndarray | list[float | Exception]
    # Canary routing: one key hash per record, one predict call per model for its share of the batch.
    on_canary = canary_mask([msg.key for _, msg, _, _ in valid], canary_fraction) if canary is not None else None
    predict_started = time.perf_counter()
    if canary is None or on_canary is None or not on_canary.any():
        on_canary = None
        outcomes = _predict_guarded(model, columns)
    else:
        outcomes = _predict_routed(model, canary, columns, on_canary)
    predict_seconds = time.perf_counter() - predict_started
    shadow_out = _shadow_predictions(shadow, columns) if shadow is not None else None
    shadow_version = shadow.version if shadow is not None and shadow_out is not None else None

    scored_at = now_ms()
    writers = {role: PredictionJsonWriter(model_name=handle.name, model_version=handle.version,
                                          model_alias=handle.alias, model_stage=handle.stage, scored_at=scored_at,
                                          shadow_model_version=shadow_version, role=role)
               for role, handle in ((ROLE_CHAMPION, model), (ROLE_CANARY, canary)) if handle is not None}
    if not refused:
        fast = _scored_json_batch(valid, outcomes, on_canary, shadow_out, writers,
                                  {ROLE_CHAMPION: model, **({ROLE_CANARY: canary} if canary is not None else {})},
                                  max_output_bytes)
        if fast is not None:
            return BatchResult(fast[0], [r for _, r in rejected], columns, fast[1], predict_seconds)
    champion = model
    scored: list[Scored] = []
    kept_rows: list[int] = []
    headers: dict[tuple[WireFormat, str], Headers] = {}
    for row, ((index, msg, record, fmt), outcome) in enumerate(zip(valid, outcomes, strict=True)):
        role = ROLE_CANARY if on_canary is not None and on_canary[row] else ROLE_CHAMPION
        model = canary if role == ROLE_CANARY and canary is not None else champion
        if isinstance(outcome, Exception):
            message = f"model {model.name} v{model.version} failed: {type(outcome).__name__}: {outcome}"
            rejected.append((index, _reject(msg, "predict_failed", PREDICT, message[:300], model)))
            continue
        prediction = float(outcome)
        if not math.isfinite(prediction):
            message = f"model {model.name} v{model.version} predicted {prediction!r}"
            rejected.append((index, _reject(msg, "non_finite_prediction", PREDICT, message, model)))
            continue
        shadow_prediction: float | None = None
        if shadow_out is not None:
            shadow_prediction = float(shadow_out[row])
            if not math.isfinite(shadow_prediction):
                shadow_prediction = None
        record_id = _record_id(record, msg)
        if fmt is WireFormat.JSON:  # the common case, formatted without building a dict
            value = writers[role].write(record_id, prediction, msg.topic, msg.partition, msg.offset,
                                      record["event_time"], shadow_prediction)
        else:
            value = encoder.encode(
                {
                    "record_id": record_id,
                    "prediction": prediction,
                    "model_name": model.name,
                    "model_version": model.version,
                    "model_alias": model.alias,
                    "model_stage": model.stage,
                    "scored_at": scored_at,
                    "source_topic": msg.topic,
                    "source_partition": msg.partition,
                    "source_offset": msg.offset,
                    "event_time": record["event_time"],
                    "shadow_prediction": shadow_prediction,
                    "shadow_model_version": shadow_version,
                    "role": role,
                },
                fmt,
            )
        if (fmt, role) not in headers:
            headers[(fmt, role)] = [
                (topics.HEADER_MODEL_NAME, model.name.encode()),
                (topics.HEADER_MODEL_VERSION, model.version.encode()),
                (topics.HEADER_FORMAT, fmt.value.encode()),
            ]
        message_headers = headers[(fmt, role)]
        too_large = _output_too_large(msg, value, message_headers, max_output_bytes, refused)
        if too_large is not None:
            rejected.append((index, _too_large(msg, too_large, model)))
            continue
        # a fresh list per message: producers may append their own headers
        scored.append(Scored(msg.key, value, list(message_headers), msg, record_id, prediction, role))
        kept_rows.append(row)

    if len(kept_rows) == len(valid):
        features: FeatureColumns | None = columns
    elif kept_rows:
        features = take_rows(columns, np.asarray(kept_rows))
    else:
        features = None
    predictions = np.fromiter((s.prediction for s in scored), dtype=np.float64, count=len(scored))
    rejected.sort(key=lambda item: item[0])
    return BatchResult(scored, [r for _, r in rejected], features, predictions, predict_seconds)
