"""Drift monitor and prediction logger: windowing, PSI verdicts, summaries, the bounded queue, drops."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd
import pytest

from config.settings import Settings, load_settings
from consumer.core.features import NUMERIC_COLUMNS, OCEAN_PROXIMITY_CATEGORIES, FeatureColumns, to_columns
from consumer.core.handle import ModelHandle
from consumer.core.profile import build_profile
from consumer.core.scoring import BatchResult
from consumer.monitoring.drift import DriftMonitor
from consumer.monitoring.hooks import build_monitoring_hooks
from consumer.monitoring.prediction_log import PredictionLogger
from consumer.state import ScorerState
from tests.helpers import wait_for


def settings(**overrides: Any) -> Settings:
    return load_settings({"scorer.instance_id": "unit", **overrides}, env={}, config_path=None)


def rows(count: int, *, income_shift: float = 0.0, seed: int = 0) -> FeatureColumns:
    rng = np.random.default_rng(seed)
    records = [{
        "longitude": float(rng.uniform(-124, -115)), "latitude": float(rng.uniform(33, 41)),
        "housing_median_age": float(rng.integers(1, 52)), "total_rooms": float(rng.integers(100, 5000)),
        "total_bedrooms": float(rng.integers(20, 1000)), "population": float(rng.integers(50, 3000)),
        "households": float(rng.integers(20, 1000)), "median_income": float(rng.uniform(1, 10)) + income_shift,
        "ocean_proximity": OCEAN_PROXIMITY_CATEGORIES[int(rng.integers(0, 4))],
    } for _ in range(count)]
    return to_columns(records)


PROFILE = build_profile(rows(5000, seed=1), numeric_columns=NUMERIC_COLUMNS,
                        categorical_columns={"ocean_proximity": OCEAN_PROXIMITY_CATEGORIES})


def handle(version: str = "3", profile: Any = PROFILE) -> ModelHandle:
    return ModelHandle(model=None, name="m", version=version, reference_profile=profile)


def batch(frame: pd.DataFrame | None, predictions: np.ndarray | None = None) -> BatchResult:
    preds = predictions if predictions is not None else np.zeros(0 if frame is None else len(frame))
    return BatchResult([], [], frame, preds)


# --- drift ----------------------------------------------------------------------------------------------
def test_same_distribution_has_low_psi_and_no_alert() -> None:
    state = ScorerState(settings(), model=handle())
    monitor = DriftMonitor(settings(**{"monitoring.drift_window": 2000}), state, start=False)
    for seed in range(4):
        monitor(batch(rows(500, seed=10 + seed)), handle())
    psi = monitor.compute()
    assert psi is not None and set(psi) == set(PROFILE["features"])
    assert max(psi.values()) < 0.1
    snapshot = monitor.snapshot()
    assert snapshot["status"] == "ok" and snapshot["alerts"] == [] and snapshot["model_version"] == "3"
    assert state.drift == psi
    gauge = state.metrics.drift_psi.labels(feature="median_income")._value.get()
    assert gauge == pytest.approx(psi["median_income"])


def test_shifted_feature_is_flagged() -> None:
    state = ScorerState(settings(), model=handle())
    monitor = DriftMonitor(settings(), state, start=False)
    monitor.observe(rows(1000, income_shift=6.0, seed=3))
    psi = monitor.compute()
    assert psi is not None and psi["median_income"] > 0.25
    assert "median_income" in monitor.snapshot()["alerts"]
    assert psi["latitude"] < 0.1


def test_window_keeps_only_the_most_recent_rows() -> None:
    state = ScorerState(settings(), model=handle())
    monitor = DriftMonitor(settings(**{"monitoring.drift_window": 1000}), state, start=False)
    monitor.observe(rows(1000, income_shift=6.0))  # old, drifted
    for seed in range(3):
        monitor.observe(rows(500, seed=seed))  # recent, normal
    assert monitor.snapshot()["window_rows"] == 1000
    psi = monitor.compute()
    assert psi is not None and psi["median_income"] < 0.1
    assert monitor.snapshot()["rows_seen"] == 2500


def test_no_verdict_without_enough_rows_or_without_a_profile() -> None:
    state = ScorerState(settings(), model=handle())
    monitor = DriftMonitor(settings(), state, start=False)
    monitor.observe(rows(50))
    assert monitor.compute() is None and monitor.status == "warming_up"
    no_profile = ScorerState(settings(), model=handle(profile=None))
    monitor = DriftMonitor(settings(), no_profile, start=False)
    monitor.observe(rows(500))
    assert monitor.compute() is None and monitor.status == "no_reference_profile"
    monitor(batch(None), handle())  # an all-rejected batch has no frame: ignored
    assert monitor.snapshot()["window_rows"] == 500


def test_background_thread_computes_when_rows_arrive() -> None:
    state = ScorerState(settings(), model=handle())
    monitor = DriftMonitor(settings(), state, interval=0.05)
    try:
        monitor.observe(rows(400))
        assert wait_for(lambda: monitor.status == "ok", 10)
        assert state.drift
    finally:
        monitor.stop()


# --- prediction logging ----------------------------------------------------------------------------------
class FakeMlflow:
    """Records what the logger sends; can be told to fail or to block."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, dict[str, float], int, dict[str, str]]] = []
        self.fail = False
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.terminated: list[str] = []
        self.params: dict[str, Any] = {}

    def get_experiment_by_name(self, name: str) -> Any:
        return None

    def create_experiment(self, name: str) -> str:
        return "exp-1"

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> Any:
        class Info:
            run_id = "run-1"

        class Run:
            info = Info()

        self.run_name, self.tags = run_name, tags
        return Run()

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.params[key] = value

    def log_batch(self, run_id: str, metrics: list[Any], tags: list[Any]) -> None:
        self.entered.set()
        self.gate.wait(10)
        if self.fail:
            raise ConnectionError("MLflow is down")
        steps = {m.step for m in metrics}
        assert len(steps) == 1
        self.batches.append((run_id, {m.key: m.value for m in metrics}, steps.pop(), {t.key: t.value for t in tags}))

    def set_terminated(self, run_id: str) -> None:
        self.terminated.append(run_id)


def test_predictions_are_summarised_per_batch_size_and_logged_as_steps() -> None:
    state = ScorerState(settings())
    fake = FakeMlflow()
    logger = PredictionLogger(settings(**{"experiment.batch_size": 10, "experiment.min_seconds": 0}), state,
                              client=fake)
    try:
        for _ in range(5):
            logger(batch(None, np.array([100.0, 200.0, 300.0, 400.0])), handle("3"))
        assert wait_for(lambda: len(fake.batches) == 1, 10), fake.batches
    finally:
        logger.stop()
    (run_id, first, step0, tags), (_, second, step1, _) = fake.batches
    assert run_id == "run-1" and (step0, step1) == (0, 1) and tags == {"model_version": "3"}
    assert first["prediction_count"] == 12 and first["prediction_mean"] == pytest.approx(250.0)
    assert first["prediction_min"] == 100.0 and first["prediction_max"] == 400.0
    assert first["prediction_std"] == pytest.approx(np.std([100, 200, 300, 400]))
    assert first["model_version"] == 3.0 and "processing_time_ms_mean" not in first
    # stop() flushed the remaining 8 and ended the run.
    assert [b[1]["prediction_count"] for b in fake.batches] == [12, 8]
    assert fake.terminated == ["run-1"] and fake.run_name == "scorer-unit"
    assert state.metrics.mlflow_batch_logs._value.get() == 2
    assert state.metrics.predictions_logged._value.get() == 20


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_summary_is_logged_only_once_it_spans_the_minimum_interval() -> None:
    clock = FakeClock()
    logger = PredictionLogger(settings(**{"experiment.batch_size": 10, "experiment.min_seconds": 5}),
                              ScorerState(settings()), client=FakeMlflow(), start=False, clock=clock)
    for _ in range(30):  # three batch sizes within the same instant: still one summary being filled
        logger.add(np.array([1.0, 2.0, 3.0, 4.0]), handle())
    assert logger._queue.empty()
    clock.now += 4.9
    logger.add(np.array([5.0]), handle())
    assert logger._queue.empty()
    clock.now += 0.1
    logger.add(np.array([6.0]), handle())
    summary = logger._queue.get_nowait()
    assert summary.count == 122 and summary.last_at - summary.first_at == pytest.approx(5.0)
    clock.now += 60
    logger.add(np.array([7.0] * 9), handle())  # a new summary: under the batch size however long it took
    assert logger._queue.empty()


def test_a_full_summary_is_logged_when_its_interval_ends_even_if_no_prediction_follows() -> None:
    clock = FakeClock()
    fake = FakeMlflow()
    logger = PredictionLogger(settings(**{"experiment.batch_size": 10, "experiment.min_seconds": 5}),
                              ScorerState(settings()), client=fake, clock=clock)
    try:
        logger.add(np.array([1.0] * 12), handle())
        clock.now += 5  # the stream stops: the worker logs the full summary on its own
        assert wait_for(lambda: len(fake.batches) == 1, 10), fake.batches
        assert fake.batches[0][1]["prediction_count"] == 12
    finally:
        logger.stop()


def test_a_new_model_version_starts_a_new_summary() -> None:
    state = ScorerState(settings())
    fake = FakeMlflow()
    logger = PredictionLogger(settings(), state, client=fake)
    logger.add(np.array([1.0, 2.0]), handle("3"), processing_ms=4.0)
    logger.add(np.array([5.0]), handle("4"), processing_ms=2.0)
    logger.stop()
    assert [(b[3]["model_version"], b[1]["prediction_count"]) for b in fake.batches] == [("3", 2), ("4", 1)]
    assert fake.batches[0][1]["processing_time_ms_mean"] == 4.0


def test_full_queue_drops_and_counts_instead_of_blocking() -> None:
    state = ScorerState(settings())
    fake = FakeMlflow()
    fake.gate.clear()  # MLflow hangs
    logger = PredictionLogger(settings(**{"experiment.batch_size": 1, "experiment.min_seconds": 0}), state,
                              client=fake, queue_size=2)
    try:
        logger(batch(None, np.array([1.0])), handle())
        assert fake.entered.wait(5)  # the worker is stuck in MLflow with the first summary
        for _ in range(9):
            logger(batch(None, np.array([1.0])), handle())  # returns at once although MLflow hangs
        # One summary is stuck in the worker, two wait in the queue: the rest were dropped and counted.
        assert wait_for(lambda: logger.dropped == 7, 5), logger.dropped
        assert state.metrics.mlflow_logs_dropped._value.get() == 7
    finally:
        fake.gate.set()
        logger.stop()
    assert len(fake.batches) == 3


def test_mlflow_failure_drops_summaries_for_a_while() -> None:
    state = ScorerState(settings())
    fake = FakeMlflow()
    fake.fail = True
    logger = PredictionLogger(settings(**{"experiment.batch_size": 1, "experiment.min_seconds": 0}), state, client=fake)
    try:
        logger(batch(None, np.array([1.0])), handle())
        logger(batch(None, np.array([2.0])), handle())
        assert wait_for(lambda: logger.dropped == 2, 5)
        assert "MLflow is down" in (logger.last_error or "")
        assert logger.describe()["logged_batches"] == 0
    finally:
        logger.stop()


def test_non_finite_predictions_are_left_out_of_the_summary() -> None:
    fake = FakeMlflow()
    logger = PredictionLogger(settings(), ScorerState(settings()), client=fake, start=False)
    logger.add(np.array([1.0, np.nan, 3.0, np.inf]), handle())
    logger.flush()
    summary = logger._queue.get_nowait()
    assert summary.count == 2 and summary.mean == 2.0


def test_build_monitoring_hooks_follows_the_settings() -> None:
    state = ScorerState(settings())
    hooks = build_monitoring_hooks(settings(), state)
    try:
        assert [type(h).__name__ for h in hooks] == ["DriftMonitor", "PredictionLogger"]
        assert state.drift_monitor is hooks[0] and state.prediction_logger is hooks[1]
    finally:
        for hook in hooks:
            hook.stop()
    off = settings(**{"monitoring.track_drift": False, "mlflow.enabled": False})
    assert build_monitoring_hooks(off, ScorerState(off)) == []
