"""Shared by the evaluator's integration and e2e tests: its topics per test, predictions and outcomes written
straight to them (known values and times), and the direct computation the evaluator must agree with."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import Producer

from config.settings import Settings
from schemas.codecs import PredictionEncoder, WireFormat
from schemas.outcomes import Outcome, OutcomeEncoder

CHECKPOINT_TOPIC_CONFIG = {"cleanup.policy": "compact", "max.message.bytes": str(16 * 1024 * 1024)}


def evaluation_topics(topic_factory: Callable[..., str], partitions: int = 3) -> dict[str, str]:
    """Fresh predictions, outcomes, outcomes DLQ, evaluation and checkpoint topics (Settings.topics names)."""
    return {
        "predictions": topic_factory(partitions, "predictions"),
        "outcomes": topic_factory(partitions, "outcomes"),
        "outcomes_dead_letter": topic_factory(partitions, "outcomes-dlq"),
        "evaluation": topic_factory(1, "evaluation", {"cleanup.policy": "compact"}),
        "evaluator_checkpoints": topic_factory(1, "checkpoints", CHECKPOINT_TOPIC_CONFIG),
    }


@dataclass(frozen=True)
class Pred:
    record_id: str
    value: float
    version: str
    scored_at: int
    role: str = "champion"
    shadow: float | None = None
    shadow_version: str | None = None


def prediction_bytes(p: Pred) -> bytes:
    fields: dict[str, Any] = {
        "record_id": p.record_id, "prediction": p.value, "model_name": "m", "model_version": p.version,
        "model_alias": "champion", "model_stage": None, "scored_at": p.scored_at, "source_topic": "records",
        "source_partition": 0, "source_offset": 0, "event_time": None, "shadow_prediction": p.shadow,
        "shadow_model_version": p.shadow_version}
    value = PredictionEncoder().encode(fields, WireFormat.JSON)
    if p.role != "champion":  # what a canary's prediction will carry (issue 14 item 4)
        value = json.dumps({**json.loads(value), "role": p.role}).encode()
    return value


class Writer:
    """Produces predictions and outcomes (idempotent, flushed on each call)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer({**settings.kafka.client_config(), "enable.idempotence": True, "linger.ms": 5})

    def predictions(self, rows: Iterable[Pred]) -> None:
        for p in rows:
            self.producer.produce(self.settings.topics.predictions, prediction_bytes(p), p.record_id.encode())
        assert self.producer.flush(30) == 0

    def outcomes(self, rows: Iterable[Outcome], fmt: WireFormat = WireFormat.JSON) -> None:
        encoder = OutcomeEncoder()
        for o in rows:
            self.producer.produce(self.settings.topics.outcomes, encoder.encode(o, fmt), o.record_id.encode())
        assert self.producer.flush(30) == 0

    def raw_outcomes(self, values: Mapping[str, bytes]) -> None:
        for key, value in values.items():
            self.producer.produce(self.settings.topics.outcomes, value, key.encode())
        assert self.producer.flush(30) == 0


def direct_metrics(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """count, rmse, mae, bias, mape over (prediction, actual) pairs, computed directly."""
    predictions, actuals = (np.array(c, dtype=float) for c in zip(*pairs, strict=True))
    errors = predictions - actuals
    usable = actuals >= 1.0
    return {"count": len(pairs), "rmse": float(np.sqrt(np.mean(errors ** 2))), "mae": float(np.mean(np.abs(errors))),
            "bias": float(np.mean(errors)),
            "mape": float(100 * np.mean(np.abs(errors[usable]) / actuals[usable])) if usable.any() else math.nan}


def entry(snapshot: Mapping[str, Any], version: str, role: str) -> dict[str, Any]:
    found = [v for v in snapshot["versions"] if v["model_version"] == version and v["role"] == role]
    assert len(found) == 1, (version, role, snapshot["versions"])
    return found[0]
