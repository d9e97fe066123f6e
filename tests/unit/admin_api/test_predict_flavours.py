"""``POST /api/predict`` with a model of any flavour: a pyfunc-style model taking some of the record's columns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pandas as pd
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from config.settings import load_settings
from consumer.core.handle import PYFUNC, ModelHandle
from consumer.core.signature import InputPlan
from consumer.state import ScorerState
from schemas.examples import EXAMPLE_RECORD

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class IncomeOnly:
    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        self.frames.append(frame)
        return pd.DataFrame({"value": 100_000.0 * frame["median_income"]})


async def test_http_predict_serves_a_pyfunc_model_its_own_columns(aiohttp_client: ClientFactory) -> None:
    config = load_settings({"scorer.instance_id": "unit", "mlflow.enabled": False, "monitoring.track_drift": False,
                            "admin.api_key": "unit-key"}, env={}, config_path=None)
    model = IncomeOnly()
    plan = InputPlan(("median_income",), ("float32",), "signature")
    state = ScorerState(config, model=ModelHandle(model=model, name="m", version="7", flavour=PYFUNC, plan=plan))
    client = await aiohttp_client(create_app(config, state=state))
    rows = [{**EXAMPLE_RECORD, "median_income": 2.5}, {**EXAMPLE_RECORD, "median_income": 4.0}]
    answer = await client.post("/api/predict", json=rows, headers={"Authorization": "Bearer unit-key"})
    assert answer.status == 200
    body = await answer.json()
    assert body["predictions"] == [250_000.0, 400_000.0] and body["model_version"] == "7"
    assert len(model.frames) == 1 and list(model.frames[0].columns) == ["median_income"]
    assert str(model.frames[0]["median_income"].dtype) == "float32"
