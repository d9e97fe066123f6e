"""Health and readiness verdicts (pure over the state) and the monitor's Kafka outage and error-rate window."""

from __future__ import annotations

from typing import Any

import pytest

from admin_api.health import (
    ERROR_RATE_WINDOW_SECONDS,
    HealthMonitor,
    health_report,
    liveness_report,
    readiness_report,
)
from config.settings import load_settings
from consumer.core.handle import ModelHandle
from consumer.state import ReloadResult, ScorerState
from consumer.workers import Worker

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


class Crashes(Worker):
    """A background worker whose thread dies at once (as the reloader did on InvalidStateError)."""

    def _run(self) -> None:
        raise RuntimeError("boom")


class Waits(Worker):
    def _run(self) -> None:
        self.sleep(30)


def test_a_dead_background_worker_makes_the_scorer_unhealthy_and_is_named() -> None:
    state = healthy_state()
    alive = Waits("registry-poller").start()
    dead = Crashes("model-reloader").start()
    try:
        state.workers.extend([alive, dead, Waits("drift-monitor")])  # the last one never started
        assert dead.join(5)
        status, body = verdict(state)
        assert (status, body["status"]) == (503, "unhealthy"), body
        assert [r for r in body["reasons"] if "model-reloader" in r] == body["reasons"]
        assert len(body["reasons"]) == 1 and "no longer alive" in body["reasons"][0]
        assert body["workers"] == {"registry-poller": "alive", "model-reloader": "dead", "drift-monitor": "not_started"}
    finally:
        alive.stop()


def test_a_worker_stopped_on_purpose_is_not_a_failure() -> None:
    state = healthy_state()
    worker = Waits("control-listener").start()
    state.workers.append(worker)
    worker.stop()
    status, body = verdict(state)
    assert (status, body["status"], body["workers"]) == (200, "healthy", {"control-listener": "stopped"})


def test_error_rate_below_the_threshold_is_fine() -> None:
    assert verdict(healthy_state(), error_rate=1.0)[1]["status"] == "healthy"


# --- liveness ---------------------------------------------------------------------------------------------
def test_liveness_waits_out_outages_that_make_health_unhealthy() -> None:
    state = healthy_state()
    state.set_mlflow_reachable(False)
    state.kafka_connected = False
    assert verdict(state, kafka_down_for=600.0)[0] == 503  # /health: unhealthy after a long Kafka outage
    assert liveness_report(state) == (200, {"alive": True, "reasons": []})


def test_liveness_fails_for_a_stopped_loop_and_names_a_dead_worker() -> None:
    state = healthy_state()
    state.fatal_error = "topic deleted"
    status, body = liveness_report(state)
    assert (status, body["alive"], body["reasons"]) == (503, False, ["the scoring loop stopped: topic deleted"])
    state = healthy_state()
    dead = Crashes("model-reloader").start()
    stopped = Waits("drift-monitor").start()
    stopped.stop()
    state.workers.extend([dead, stopped])
    assert dead.join(5)
    assert liveness_report(state) == (503, {"alive": False,
                                            "reasons": ["background worker model-reloader is no longer alive"]})


# --- readiness ----------------------------------------------------------------------------------------------
def test_ready_needs_a_model_a_running_consumer_and_its_assignment() -> None:
    state = healthy_state()
    status, body = readiness_report(state)
    assert (status, body["ready"], body["model_version"]) == (503, False, "3")
    state.consumer_running = True
    state.set_assignment(frozenset({("housing.records", 0), ("housing.records", 1)}))
    status, body = readiness_report(state)
    assert (status, body["ready"], body["assigned_partitions"]) == (200, True, 2)
    assert readiness_report(ScorerState(SETTINGS))[1]["model_loaded"] is False


# --- the monitor's window -----------------------------------------------------------------------------------
def test_the_monitor_times_a_kafka_outage_only_while_a_consumer_is_expected() -> None:
    state = healthy_state()
    monitor = HealthMonitor(SETTINGS, state)
    state.kafka_connected = False
    monitor.observe(100.0)
    assert monitor.kafka_down_since is None  # no scoring loop here: nothing to be down
    state.consumer_running = True
    monitor.observe(100.0)
    monitor.observe(130.0)
    assert monitor.kafka_down_since == 100.0
    assert monitor.report(now=190.0)[1]["status"] == "unhealthy"
    state.kafka_connected = True
    monitor.observe(200.0)
    assert monitor.kafka_down_since is None and monitor.report()[1]["status"] == "healthy"


def test_the_error_rate_covers_the_last_minute_with_enough_records() -> None:
    state = healthy_state()
    monitor = HealthMonitor(SETTINGS, state)
    monitor.observe(0.0)
    state.add_counts(consumed=50, scored=45, dead_lettered=5)
    monitor.observe(10.0)
    assert monitor.error_rate_percent() is None  # 50 records: too few for a verdict
    state.add_counts(consumed=150, scored=150, dead_lettered=0)
    monitor.observe(20.0)
    assert monitor.error_rate_percent() == 2.5
    monitor.observe(20.0 + ERROR_RATE_WINDOW_SECONDS + 1)  # the older samples leave the window
    assert monitor.error_rate_percent() is None
