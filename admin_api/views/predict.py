"""``POST /api/predict``: score one record or a list with the model being served, off the event loop.

HTTP predictions are counted by the prediction logger (the original API's ``mlflow_logged``) but never enter
the drift window: that window describes the stream, and crafted rows sent to an open endpoint must not raise
drift alerts or turn /health degraded. Anonymous callers (no admin key) are held to
``ADMIN_PREDICT_RATE_LIMIT`` calls per minute each (429 with Retry-After beyond it).

Any flavour: the served handle gets the request's records as feature columns and builds what its model takes
(numpy for a fast path, one DataFrame of its signature's columns and dtypes for a pyfunc model).
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
from admin_api.guards import check_predict_rate
from admin_api.views.common import state_of
from consumer.core.features import to_columns
from consumer.core.handle import ModelHandle
from consumer.state import ScorerState

logger = logging.getLogger(__name__)


async def predict(request: web.Request) -> web.Response:
    check_predict_rate(request)  # before the body is even read
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
    logged = _log_predictions(state, handle, predictions, processing_ms)
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


def _log_predictions(state: ScorerState, handle: ModelHandle, predictions: np.ndarray, processing_ms: float) -> bool:
    """HTTP predictions count for prediction logging (never for drift: see the module doc); never fails the
    request."""
    prediction_logger = state.prediction_logger
    if prediction_logger is None:
        return False
    try:
        return bool(prediction_logger.add(predictions, handle, processing_ms))
    except Exception:
        logger.exception("logging an HTTP prediction failed")
        return False


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
