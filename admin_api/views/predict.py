"""``POST /api/predict``: score one record or a list with the model being served, off the event loop.

HTTP predictions feed the prediction logger and the drift window like the stream's do.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from aiohttp import web

from admin_api.bodies import parse_predict, read_body
from admin_api.errors import ApiError, json_response, unavailable
from admin_api.views.common import state_of
from consumer.core.features import to_columns
from consumer.core.handle import ModelHandle
from consumer.state import ScorerState

logger = logging.getLogger(__name__)


async def predict(request: web.Request) -> web.Response:
    state = state_of(request)
    started = time.perf_counter()
    records, single = parse_predict(await read_body(request))
    handle = state.models.current
    if handle is None:
        raise unavailable("model_not_loaded", "no model is loaded yet")
    predictions = await asyncio.to_thread(_predict, handle, records)
    elapsed = time.perf_counter() - started
    processing_ms = round(elapsed * 1000, 3)
    state.metrics.api_predict_seconds.observe(elapsed)
    logged = _feed_monitors(state, handle, records, predictions, processing_ms)
    meta = {"model_version": handle.version, "model_name": handle.name, "model_alias": handle.alias,
            "model_source": handle.source, "timestamp": _now_iso(), "processing_time_ms": processing_ms,
            "mlflow_logged": logged}
    if single:
        return json_response({"prediction": float(predictions[0]), **meta})
    return json_response({"predictions": [float(p) for p in predictions], "count": len(records), **meta})


def _predict(handle: ModelHandle, records: list[dict[str, Any]]) -> np.ndarray:
    try:
        with np.errstate(all="ignore"):  # overflow shows up below as a non-finite prediction
            predictions = handle.predict(to_columns(records))
    except Exception as exc:
        logger.warning("model %s failed on an HTTP prediction: %s", handle.label, exc)
        raise ApiError(422, "predict_failed", f"the model could not score the record(s): {type(exc).__name__}: "
                       f"{exc}", reason="predict_failed") from None
    bad = [i for i, p in enumerate(predictions) if not math.isfinite(p)]
    if bad:
        raise ApiError(422, "non_finite_prediction", f"the model returned a non-finite value for record {bad[0]}",
                       reason="non_finite_prediction", index=bad[0])
    return predictions


def _feed_monitors(state: ScorerState, handle: ModelHandle, records: list[dict[str, Any]],
                   predictions: np.ndarray, processing_ms: float) -> bool:
    """HTTP predictions count for prediction logging and drift like the stream's; never fails the request."""
    logged = False
    try:
        prediction_logger = state.prediction_logger
        if prediction_logger is not None:
            logged = bool(prediction_logger.add(predictions, handle, processing_ms))
        drift = state.drift_monitor
        if drift is not None:
            drift.observe(to_columns(records))
    except Exception:
        logger.exception("feeding an HTTP prediction to the monitors failed")
    return logged


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
