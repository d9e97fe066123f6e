"""The promotion gate on hand-made snapshots: wait until enough pairs and minutes, promote past the margin,
roll back past the other margin or on a health threshold; and the decider takes each decision once."""

from __future__ import annotations

import json
from typing import Any

from config.settings import load_settings
from consumer.evaluation.decider import CanaryDecider, DeciderState, state_key
from consumer.evaluation.gates import GatePolicy, Health, confidence_better, decide, prediction_psi, table
from schemas.control import ModelUpdateEvent

MINUTE = 60_000


def entry(version: str, role: str, count: int, rmse: float, first_at: int = 0) -> dict[str, Any]:
    return {"model_version": version, "role": role, "first_pair_at": first_at,
            "window": {"sums": {"count": count, "sum_squared_error": rmse**2 * count}}}


def snapshot(canary_rmse: float, champion_rmse: float, *, canary_n: int = 3000, champion_n: int = 12000,
             minutes: float = 15) -> dict[str, Any]:
    return {"watermark": int(minutes * MINUTE), "window_start": 0,
            "versions": [entry("2", "canary", canary_n, canary_rmse), entry("1", "champion", champion_n, champion_rmse),
                         entry("2", "shadow", 99999, 1.0)]}


POLICY = GatePolicy.from_settings(load_settings(env={}, config_path=None).canary)  # the documented defaults


def test_promotes_a_canary_better_by_more_than_the_margin() -> None:
    decision = decide(snapshot(45_000, 50_000), canary_version="2", champion_version="1", policy=POLICY)
    assert decision.action == "promote" and decision.canary_rmse == 45_000 and decision.champion_rmse == 50_000
    assert decision.canary_count == 3000 and decision.champion_count == 12000
    assert abs(decision.relative_difference + 0.1) < 1e-12 and decision.confidence > 0.99  # type: ignore[operator]
    assert "PROMOTE" in table(decision)


def test_waits_within_the_margins_and_rolls_back_past_them() -> None:
    assert decide(snapshot(49_500, 50_000), canary_version="2", champion_version="1", policy=POLICY).action == "wait"
    assert decide(snapshot(50_900, 50_000), canary_version="2", champion_version="1", policy=POLICY).action == "wait"
    assert decide(snapshot(51_100, 50_000), canary_version="2", champion_version="1",
                  policy=POLICY).action == "rollback"


def test_waits_for_enough_pairs_and_minutes() -> None:
    few = decide(snapshot(10_000, 50_000, canary_n=1999), canary_version="2", champion_version="1", policy=POLICY)
    young = decide(snapshot(10_000, 50_000, minutes=9.9), canary_version="2", champion_version="1", policy=POLICY)
    unknown = decide(snapshot(10_000, 50_000), canary_version="3", champion_version="1", policy=POLICY)
    assert (few.action, young.action, unknown.action) == ("wait", "wait", "wait")
    assert "1999" in few.reason and "9.9" in young.reason


def test_health_thresholds_roll_back_at_once() -> None:
    early = snapshot(10_000, 50_000, canary_n=5, minutes=0.1)
    for health in (Health(error_rate=0.02), Health(non_finite=1), Health(drift_psi=1.1)):
        assert decide(early, canary_version="2", champion_version="1", policy=POLICY, health=health).action == \
            "rollback"
    assert decide(early, canary_version="2", champion_version="1", policy=POLICY,
                  health=Health(error_rate=0.005, non_finite=0, drift_psi=0.1)).action == "wait"


def test_confidence_and_psi() -> None:
    assert confidence_better(1.0, 1000, 1.0, 1000) == 0.5
    assert confidence_better(0.5, 1000, 1.0, 1000) > 0.999  # type: ignore[operator]
    assert prediction_psi([10, 10], [10, 10]) == 0.0 and prediction_psi([0, 0], [1, 1]) is None
    assert prediction_psi([90, 10], [10, 90]) > 1  # type: ignore[operator]


class Version:
    def __init__(self, version: str, tags: dict[str, str] | None = None) -> None:
        self.version, self.tags = version, tags or {}


class FakeRegistry:
    """The MlflowClient calls the decider makes, on a dict of aliases and tags."""

    def __init__(self) -> None:
        self.aliases = {"champion": "1", "challenger": "2"}
        self.version_tags: dict[str, dict[str, str]] = {"1": {}, "2": {}}
        self.model_tags = {"canary.fraction": "0.2"}

    def get_registered_model(self, name: str) -> Any:
        return type("Registered", (), {"tags": self.model_tags})()

    def get_model_version_by_alias(self, name: str, alias: str) -> Version:
        from mlflow.exceptions import MlflowException

        if alias not in self.aliases:
            raise MlflowException(f"no alias {alias}")
        version = self.aliases[alias]
        return Version(version, self.version_tags[version])

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        del self.aliases[alias]

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.version_tags[version][key] = value


def _decider(registry: FakeRegistry, **env: str) -> CanaryDecider:
    settings = load_settings(env={"AUTO_PROMOTE": "true", "CANARY_MIN_MINUTES": "1", **env})
    return CanaryDecider(settings, lambda: registry, clock=lambda: 1e9)


def test_the_decider_decides_once_moves_the_registry_after_the_commit_and_announces_in_the_next() -> None:
    registry = FakeRegistry()
    decider = _decider(registry)
    first = decider.outputs(snapshot(45_000, 50_000))
    assert [topic for topic, _, _ in first] == ["housing.evaluator-checkpoints"]  # the decision, not yet announced
    assert registry.aliases == {"champion": "1", "challenger": "2"}  # nothing moves before the commit
    decider.committed()
    assert registry.aliases == {"champion": "2"} and "canary.promoted" in registry.version_tags["2"]
    second = decider.outputs(snapshot(45_000, 50_000))
    events = [ModelUpdateEvent.from_bytes(v) for t, _, v in second if t == "housing.model-updates"]
    assert len(events) == 1 and events[0].decision == "promote" and events[0].version == "2"
    assert events[0].event_id == decider.state.decisions[0].decision_id
    assert json.loads(events[0].evidence or "{}")["canary_rmse"] == 45_000
    decider.committed()
    assert not [t for t, _, _ in decider.outputs(snapshot(45_000, 50_000)) if t == "housing.model-updates"]


def test_a_restart_after_the_decision_committed_applies_and_announces_it_once_and_never_decides_again() -> None:
    registry = FakeRegistry()
    crashed = _decider(registry, CANARY_MIN_MATCHED="100")
    [(_, key, state)] = crashed.outputs(snapshot(60_000, 50_000))  # rollback decided; committed; then kill -9
    assert key == state_key("housing-evaluator").encode()
    restarted = _decider(registry, CANARY_MIN_MATCHED="100")
    restarted.restore(state)  # applies it in the registry again (idempotent)
    assert "challenger" not in registry.aliases and "canary.rejected" in registry.version_tags["2"]
    registry.aliases["challenger"] = "2"  # even if the alias came back, v2 is decided
    out = restarted.outputs(snapshot(60_000, 50_000))
    events = [ModelUpdateEvent.from_bytes(v) for t, _, v in out if t == "housing.model-updates"]
    assert [(e.type, e.decision, e.canary_fraction) for e in events] == [("canary", "rollback", 0.0)]
    restarted.committed()
    final = DeciderState.decode([v for t, _, v in out if t == "housing.evaluator-checkpoints"][0])
    assert [(d.action, d.announced) for d in final.decisions] == [("rollback", True)]


def test_a_decision_that_never_committed_is_taken_again_by_the_restart() -> None:
    registry = FakeRegistry()
    _decider(registry).outputs(snapshot(45_000, 50_000))  # killed before the commit: nothing happened
    restarted = _decider(registry)
    restarted.restore(None)
    assert [t for t, _, _ in restarted.outputs(snapshot(45_000, 50_000))] == ["housing.evaluator-checkpoints"]
    assert len(restarted.state.decisions) == 1


def test_dry_run_logs_and_takes_nothing() -> None:
    registry = FakeRegistry()
    decider = _decider(registry, AUTO_PROMOTE="false", CANARY_DRY_RUN="true")
    assert decider.outputs(snapshot(45_000, 50_000)) == []
    decider.committed()
    assert registry.aliases == {"champion": "1", "challenger": "2"} and decider.last is not None
    assert decider.last.action == "promote"
