"""The canary end to end on the real broker and MLflow server: an in-process scorer routes 20 % of the keys (by key
hash, each key always to the same role) to the challenger, outcomes arrive for every record, housing-evaluate's
gate (AUTO_PROMOTE) promotes the truly better challenger (the registry's champion alias moved, the decision event
on the control topic, the evidence in the decision record and the version tag), and then rolls back a version
trained on a shuffled target (tagged rejected, alias removed, a rollback event with fraction 0, the scorer stops
routing to it). Inputs = predictions + dead letters throughout."""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from config.settings import Settings
from consumer.core.routing import routes_to_canary
from consumer.evaluation.decider import state_key
from consumer.evaluation.run import Evaluator
from consumer.kafka.control import publish_model_update
from consumer.kafka.evaluation_io import latest_values
from consumer.models.canary import PROMOTED_TAG, REJECTED_TAG
from consumer.service import ScorerService
from schemas.codecs import decode_prediction
from schemas.control import ModelUpdateEvent
from schemas.outcomes import Outcome
from tests.conftest import train_quick_model
from tests.evaluation_support import Writer, evaluation_topics
from tests.helpers import produce_records, read_to_end, wait_for
from training.data import DEFAULT_DATA_PATH, TARGET_COLUMN, load_housing
from training.register import TrainingConfig, train_and_register

pytestmark = pytest.mark.integration

FRACTION = 0.2


def shuffled_target_csv(path: Path) -> Path:
    """The dataset with its target column shuffled: a model trained on it has learnt nothing."""
    frame = pd.read_csv(DEFAULT_DATA_PATH)
    frame[TARGET_COLUMN] = frame[TARGET_COLUMN].sample(frac=1.0, random_state=3).to_numpy()
    frame.to_csv(path, index=False)
    return path


def train_on(tracking_uri: str, name: str, out: Path, data_path: Path) -> str:
    """A challenger (no promotion) trained on ``data_path``; its version."""
    config = TrainingConfig(tracking_uri=tracking_uri, model_name=name, models=("hist_gradient_boosting",),
                            promote=False, fallback_path=str(out / "model.pkl"), sample=2000, seed=11,
                            progress=False, data_path=str(data_path))
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        return str(train_and_register(config).version)
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(scope="module")
def canary_model(mlflow_tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """v1 linear regression (champion), v2 gradient boosting (challenger: truly better), v3 gradient boosting on
    a shuffled target (registered later as the bad challenger); the fallback is v1's."""
    name = f"canary_{uuid.uuid4().hex[:6]}"
    out = tmp_path_factory.mktemp("canary-model")
    first = train_quick_model(mlflow_tracking_uri, name, out / "v1", kinds=("linear_regression",), sample=2000)
    second = train_quick_model(mlflow_tracking_uri, name, out / "v2", kinds=("hist_gradient_boosting",),
                               sample=4000, seed=7, promote=False)
    return {"name": name, "v1": first.version, "v2": second.version, "fallback": first.fallback_path, "out": out}


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], stream_topics: dict[str, str],
             topic_factory: Callable[..., str], canary_model: dict[str, Any], group_id: str) -> Settings:
    topics = {**evaluation_topics(topic_factory), **stream_topics}  # the scorer's predictions topic is evaluated
    return settings_factory(topics, **{
        "model.name": canary_model["name"], "model.fallback_path": str(canary_model["fallback"]),
        "model.reload_interval": 300, "scorer.group_id": group_id, "scorer.batch_max_wait_ms": 20,
        "scorer.batch_max_records": 200, "canary.fraction": FRACTION,
        "evaluation.evaluator_id": f"ev-{uuid.uuid4().hex[:6]}", "evaluation.window_seconds": 600,
        "evaluation.checkpoint_seconds": 0.3, "evaluation.mlflow_seconds": 0.5, "evaluation.port": 0,
        "canary.auto_promote": True, "canary.min_matched": 100, "canary.min_minutes": 0.0,
        "canary.decide_seconds": 0.5})


@pytest.fixture
def evaluator(settings: Settings) -> Iterator[Evaluator]:
    running = Evaluator(settings)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            running.run()
        except BaseException as exc:  # surfaced by the test
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert wait_for(lambda: running.snapshot is not None or failures, 60), "no first checkpoint"
    assert not failures, failures
    yield running
    running.stopping.set()
    thread.join(60)
    assert not thread.is_alive() and not failures, failures


class Actuals:
    """The true value (the dataset's target) of each record produced, by record id."""

    def __init__(self) -> None:
        self.targets = load_housing()[TARGET_COLUMN].to_numpy()

    def outcomes(self, produced_keys: list[str], start: int, observed_at: int) -> list[Outcome]:
        return [Outcome(key, float(self.targets[(start + i) % len(self.targets)]), observed_at + i)
                for i, key in enumerate(produced_keys)]


def stream(service: ScorerService, writer: Writer, actuals: Actuals, count: int, start: int) -> list[str]:
    """``count`` good records from dataset row ``start`` on, and once all are scored (so the gate decides after
    the whole phase is routed) each one's outcome; their keys."""
    settings = service.settings
    produced = produce_records(settings, count, start=start)
    assert len(produced.good_keys) == count
    assert wait_for(lambda: service.state.counts["scored"] >= start + count, 60), service.state.counts
    outcomes = actuals.outcomes(produced.good_keys, start, int(time.time() * 1000))
    random.Random(start).shuffle(outcomes)  # outcomes arrive in any order
    writer.outcomes(outcomes)
    return produced.good_keys


def events(settings: Settings) -> list[ModelUpdateEvent]:
    return [ModelUpdateEvent.from_bytes(m.value)
            for m in read_to_end(settings.kafka.bootstrap_servers, settings.topics.model_updates)]


def decision_records(settings: Settings) -> list[dict[str, Any]]:
    raw = latest_values(settings, settings.topics.evaluator_checkpoints).get(
        state_key(settings.evaluation.evaluator_id))
    return json.loads(raw)["decisions"] if raw else []


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def test_canary_promoted_when_better_and_rolled_back_when_worse(
        settings: Settings, canary_model: dict[str, Any], evaluator: Evaluator, mlflow_tracking_uri: str) -> None:
    name, v1, v2 = canary_model["name"], canary_model["v1"], canary_model["v2"]
    client = MlflowClient(mlflow_tracking_uri)
    writer, actuals = Writer(settings), Actuals()
    service = ScorerService(settings)
    service.start()
    try:
        assert service.state.models.current is not None and service.state.models.current.version == v1
        assert wait_for(lambda: service.state.canary_view.version == v2, 60), service.state.canary_view

        # Phase 1: v2 canaried at 20 % of the keys until the gate promotes it.
        keys = stream(service, writer, actuals, 1500, start=0)
        assert wait_for(lambda: alias_version(client, name, "champion") == v2, 120), \
            (evaluator.decider and evaluator.decider.last, evaluator.snapshot and evaluator.snapshot["matched"])
        # (the champion alias moves first, then the canary alias comes off: promote_canary's order)
        assert wait_for(lambda: alias_version(client, name, "challenger") is None, 30)
        assert wait_for(lambda: any(e.decision == "promote" for e in events(settings)), 60)
        promoted = next(e for e in events(settings) if e.decision == "promote")
        assert (promoted.type, promoted.version, promoted.alias, promoted.source) == ("promoted", v2, "champion",
                                                                                    "canary-gate")
        evidence = json.loads(promoted.evidence or "{}")
        assert evidence["action"] == "promote" and evidence["canary_version"] == v2
        assert evidence["champion_version"] == v1
        assert evidence["canary_count"] >= 100 and evidence["champion_count"] >= 100
        assert evidence["canary_rmse"] < evidence["champion_rmse"] * 0.98
        records = decision_records(settings)
        assert [(r["action"], r["canary_version"], r["decision_id"]) for r in records] == \
            [("promote", v2, promoted.event_id)]
        assert records[0]["evidence"] == evidence and records[0]["announced"]
        tagged = json.loads(client.get_model_version(name, v2).tags[PROMOTED_TAG])
        assert tagged["decision_id"] == promoted.event_id and tagged["canary_rmse"] == evidence["canary_rmse"]
        # the scorer follows the event: v2 is its champion, and no canary serves
        assert wait_for(lambda: (current := service.state.models.current) is not None and current.version == v2, 60)
        assert wait_for(lambda: service.state.canary_view.version is None, 60), service.state.canary_view

        # Phase 2: a version trained on a shuffled target is canaried, and rolled back by the gate.
        v3 = train_on(mlflow_tracking_uri, name, canary_model["out"] / "v3",
                      shuffled_target_csv(canary_model["out"] / "shuffled.csv"))
        assert alias_version(client, name, "challenger") == v3
        publish_model_update(settings, type="canary", model_name=name, version=v3, alias="challenger",
                             source="test")
        assert wait_for(lambda: service.state.canary_view.version == v3, 60), service.state.canary_view
        keys += stream(service, writer, actuals, 1500, start=1500)
        assert wait_for(lambda: REJECTED_TAG in (client.get_model_version(name, v3).tags or {}), 120), \
            evaluator.decider.last if evaluator.decider else None
        assert wait_for(lambda: alias_version(client, name, "challenger") is None, 30)  # tagged first, then off
        assert alias_version(client, name, "champion") == v2
        assert wait_for(lambda: any(e.decision == "rollback" for e in events(settings)), 60)
        rolled = next(e for e in events(settings) if e.decision == "rollback")
        assert (rolled.type, rolled.version, rolled.canary_fraction) == ("canary", v3, 0.0)
        rollback_evidence = json.loads(rolled.evidence or "{}")
        # worse by the margin, or (often first: its predictions are near the mean whatever the input) drifted
        drifted = (rollback_evidence["drift_psi"] or 0) > settings.canary.max_drift_psi
        assert drifted or rollback_evidence["canary_rmse"] > rollback_evidence["champion_rmse"] * 1.02, \
            rollback_evidence
        assert rollback_evidence["champion_version"] == v2
        assert [r["action"] for r in decision_records(settings)] == ["promote", "rollback"]
        assert wait_for(lambda: service.state.canary_view.version is None, 30), service.state.canary_view
        assert v3 in service.state.canary_view.rejected
        assert wait_for(lambda: service.state.counts["scored"] >= 3000, 60), service.state.counts
    finally:
        service.stop()

    # inputs = predictions + dead letters
    records_in = read_to_end(settings.kafka.bootstrap_servers, settings.topics.records)
    out = read_to_end(settings.kafka.bootstrap_servers, settings.topics.predictions)
    dead = read_to_end(settings.kafka.bootstrap_servers, settings.topics.dead_letter)
    assert len(records_in) == len(keys) == 3000
    assert len(out) + len(dead) == len(records_in) and not dead
    predictions = [decode_prediction(m.value) for m in out]
    assert sorted(p["record_id"] for p in predictions) == sorted(keys)

    # each key to the role its hash says (~20 %), in both phases; canary outputs carry the canary's version
    assert [m.header_map["model_version"].decode() for m in out] == [p["model_version"] for p in predictions]
    by_id = {p["record_id"]: p for p in predictions}
    for phase, canary_version, champion_version in ((keys[:1500], v2, v1), (keys[1500:], v3, v2)):
        routed = {key for key in phase if routes_to_canary(key.encode(), FRACTION)}
        assert 0.15 < len(routed) / len(phase) < 0.25, len(routed)
        for key in phase:
            p = by_id[key]
            if key in routed:
                assert (p.get("role"), p["model_version"]) == ("canary", canary_version), p
            else:
                assert (p.get("role"), p["model_version"]) == ("champion", champion_version), p
