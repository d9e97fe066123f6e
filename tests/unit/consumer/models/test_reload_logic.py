"""Reload decisions (pure) and the Reloader worker driven by a fake registry: nothing running."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from config.settings import load_settings
from consumer.core.handle import ModelHandle
from consumer.errors import ModelError
from consumer.models.loader import ResolvedVersion
from consumer.models.reloader import (
    Reloader,
    ReloadRequest,
    classify,
    decide,
    poll_wants_reload,
    precheck,
    rollback_decision,
)
from consumer.state import ScorerState
from schemas.versions import version_from_uri


class Constant:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, frame: Any) -> np.ndarray:
        return np.full(len(frame), self.value)


def handle(version: str, source: str = "registry") -> ModelHandle:
    return ModelHandle(model=Constant(float(version)), name="m", version=version, alias="champion",
                       source=source)  # type: ignore[arg-type]


# --- pure decisions ----------------------------------------------------------------------------------

SERVED = {"served_alias": "champion", "served_stage": None, "served_version": None, "shadow_alias": None}


@pytest.mark.parametrize("request_,slot", [
    (ReloadRequest(kind="promoted", version="3", alias="champion"), "champion"),
    (ReloadRequest(kind="promoted", version="3", alias="challenger"), None),
    (ReloadRequest(kind="reload", version="3"), "champion"),          # a pin
    (ReloadRequest(kind="rollback"), "champion"),
    (ReloadRequest(kind="reload"), "champion"),                       # bare reload: the configured model
    (ReloadRequest(kind="promoted", version="3", stage="Production"), None),  # serves an alias, not a stage
])
def test_classify_by_what_this_scorer_serves(request_: ReloadRequest, slot: str | None) -> None:
    assert classify(request_, **SERVED) == slot  # type: ignore[arg-type]


def test_classify_shadow_and_stage_scorers() -> None:
    req = ReloadRequest(kind="promoted", version="3", alias="challenger")
    assert classify(req, **{**SERVED, "shadow_alias": "challenger"}) == "shadow"  # type: ignore[arg-type]
    stage_req = ReloadRequest(kind="promoted", version="3", stage="Production")
    assert classify(stage_req, served_alias=None, served_stage="Production", served_version=None,
                    shadow_alias=None) == "champion"
    # A scorer pinned to a version follows no alias.
    assert classify(ReloadRequest(alias="champion"), served_alias="champion", served_stage=None,
                    served_version="2", shadow_alias=None) is None


def test_precheck_duplicates_and_already_loaded() -> None:
    req = ReloadRequest(kind="promoted", version="3", alias="champion", event_id="e1")
    assert precheck(req, seen=True, loaded=handle("1")).reason == "duplicate event e1"  # type: ignore[union-attr]
    assert precheck(req, seen=False, loaded=handle("3")).action == "ignore"  # type: ignore[union-attr]
    assert precheck(req, seen=False, loaded=handle("2")) is None
    # The fallback file's "version 3" is not the registry's version 3: load it.
    assert precheck(req, seen=False, loaded=handle("3", "fallback")) is None


def test_decide_stale_event_is_ignored_when_the_registry_still_points_at_the_loaded_version() -> None:
    stale = ReloadRequest(kind="promoted", version="1", alias="champion")
    decision = decide(stale, target="2", loaded=handle("2"), rolled_back_from=None)
    assert decision.action == "ignore" and decision.reason.startswith("stale event")


def test_decide_follows_the_registry_when_the_alias_was_moved_back_on_purpose() -> None:
    back = ReloadRequest(kind="promoted", version="1", alias="champion")
    assert decide(back, target="1", loaded=handle("2"), rolled_back_from=None).action == "load"


def test_decide_superseded_event_loads_what_the_alias_points_at_now() -> None:
    old = ReloadRequest(kind="promoted", version="3", alias="champion")
    decision = decide(old, target="4", loaded=handle("2"), rolled_back_from=None)
    assert (decision.action, decision.version) == ("load", "4")


def test_decide_poll_respects_a_rollback_but_events_do_not() -> None:
    poll = ReloadRequest(kind="reload", version="2", alias="champion", source="poll")
    assert decide(poll, target="2", loaded=handle("1"), rolled_back_from="2").action == "ignore"
    assert decide(poll, target="3", loaded=handle("1"), rolled_back_from="2").action == "load"
    event = ReloadRequest(kind="promoted", version="2", alias="champion", source="admin_api")
    assert decide(event, target="2", loaded=handle("1"), rolled_back_from="2").action == "load"


def test_decide_moves_off_the_fallback_file() -> None:
    poll = ReloadRequest(kind="reload", alias="champion", source="poll")
    assert decide(poll, target="3", loaded=handle("3", "fallback"), rolled_back_from=None).action == "load"


def test_rollback_decisions() -> None:
    assert rollback_decision(ReloadRequest(kind="rollback"), loaded=handle("2"), previous=None).action == "fail"
    to_previous = rollback_decision(ReloadRequest(kind="rollback"), loaded=handle("2"), previous=handle("1"))
    assert (to_previous.action, to_previous.version) == ("swap_previous", "1")
    named = rollback_decision(ReloadRequest(kind="rollback", version="1"), loaded=handle("3"),
                              previous=handle("2"))
    assert (named.action, named.version) == ("load", "1")
    assert rollback_decision(ReloadRequest(kind="rollback", version="3"), loaded=handle("3"),
                             previous=handle("2")).action == "ignore"


def test_poll_wants_reload() -> None:
    assert poll_wants_reload("2", handle("1"), None)
    assert not poll_wants_reload("1", handle("1"), None)
    assert not poll_wants_reload("2", handle("1"), "2")  # rolled back from 2: hold
    assert poll_wants_reload("1", handle("1", "fallback"), None)
    assert poll_wants_reload("1", None, None)


def test_version_from_uri() -> None:
    assert version_from_uri("models:/m/7") == "7"
    assert version_from_uri("models:/m@champion") is None
    assert version_from_uri(None) is None


# --- the worker with a fake registry ----------------------------------------------------------------


class FakeLoader:
    """Aliases and versions in a dict; versions in ``broken`` fail to load."""

    def __init__(self) -> None:
        self.aliases = {"champion": "1"}
        self.versions = {"1", "2", "3"}
        self.broken: set[str] = set()
        self.loads: list[str] = []

    def reachable(self) -> bool:
        return True

    def resolve(self, *, version: str | None = None, alias: str | None = None,
                stage: str | None = None) -> ResolvedVersion:
        if version is None:
            if alias not in self.aliases:
                raise ModelError(f"no alias @{alias}")
            version = self.aliases[alias]
        if version not in self.versions:
            raise ModelError(f"no version {version}")
        return ResolvedVersion("m", version, alias, None, "run", "src")

    def resolve_configured(self) -> ResolvedVersion:
        return self.resolve(alias="champion")

    def load(self, resolved: ResolvedVersion, check: bool = True) -> ModelHandle:
        self.loads.append(resolved.version)
        if resolved.version in self.broken:
            raise ModelError(f"could not load models:/m/{resolved.version}: artifact is garbage")
        return handle(resolved.version)


class Statuses:
    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    def publish(self, result: str, **fields: Any) -> dict[str, Any]:
        self.published.append({"result": result, **fields})
        return self.published[-1]


@pytest.fixture
def rig() -> Any:
    settings = load_settings({"model.name": "m"}, env={})
    state = ScorerState(settings, model=handle("1"))
    loader, statuses = FakeLoader(), Statuses()
    reloader = Reloader(settings, state, loader=loader, status=statuses).start()  # type: ignore[arg-type]
    yield state, loader, statuses, reloader
    reloader.stop()


def test_promotion_loads_swaps_and_publishes(rig: Any) -> None:
    state, loader, statuses, reloader = rig
    loader.aliases["champion"] = "2"
    result = reloader.on_event({"event_id": "e1", "type": "promoted", "version": "2", "alias": "champion",
                                "source": "training"}).result(5)
    assert result.result == "loaded" and result.version == "2" and result.event_id == "e1"
    assert state.models.current.version == "2" and state.models.previous.version == "1"
    assert statuses.published[-1]["result"] == "loaded" and statuses.published[-1]["model_version"] == "2"
    assert state.last_reload == result


def test_duplicate_event_is_ignored_without_touching_the_registry(rig: Any) -> None:
    state, loader, statuses, reloader = rig
    loader.aliases["champion"] = "2"
    event = {"event_id": "same", "type": "promoted", "version": "2", "alias": "champion", "source": "t"}
    assert reloader.on_event(event).result(5).result == "loaded"
    loader.aliases["champion"] = "3"  # even if the registry moved, the same event id does nothing more
    again = reloader.on_event(event).result(5)
    assert again.result == "ignored" and "duplicate" in again.detail
    assert loader.loads == ["2"]


def test_stale_event_is_ignored(rig: Any) -> None:
    state, loader, _, reloader = rig
    loader.aliases["champion"] = "3"
    assert reloader.request(alias="champion", kind="promoted", version="3").result(5).result == "loaded"
    stale = reloader.request(alias="champion", kind="promoted", version="2", event_id="old").result(5)
    assert stale.result == "ignored" and "stale" in stale.detail
    assert state.models.current.version == "3"


def test_failed_load_keeps_the_current_model_and_reports(rig: Any) -> None:
    state, loader, statuses, reloader = rig
    loader.aliases["champion"] = "2"
    loader.broken.add("2")
    result = reloader.request(alias="champion", kind="promoted", event_id="bad").result(5)
    assert result.result == "failed" and "garbage" in result.detail and "still serving" in result.detail
    assert state.models.current.version == "1"
    assert statuses.published[-1]["result"] == "failed" and statuses.published[-1]["model_version"] == "1"
    assert state.last_reload_failure is not None and state.last_reload_failure.version == "2"
    assert state.metrics.reloads.labels(result="failed")._value.get() == 1


def test_rollback_returns_to_the_previous_handle_and_sticks_against_the_poll(rig: Any) -> None:
    state, loader, _, reloader = rig
    loader.aliases["champion"] = "2"
    reloader.request(alias="champion", kind="promoted").result(5)
    back = reloader.request(kind="rollback", event_id="rb").result(5)
    assert back.result == "loaded" and state.models.current.version == "1"
    assert loader.loads == ["2"]  # the previous handle was swapped back, not downloaded again
    held = reloader.request(alias="champion", version="2", source="poll").result(5)
    assert held.result == "ignored" and state.models.current.version == "1"
    loader.aliases["champion"] = "3"
    assert reloader.request(alias="champion", version="3", source="poll").result(5).result == "loaded"


def test_version_pin_loads_an_older_version(rig: Any) -> None:
    state, loader, _, reloader = rig
    loader.aliases["champion"] = "3"
    reloader.request(alias="champion").result(5)
    assert reloader.request(version="2", source="admin_api").result(5).result == "loaded"
    assert state.models.current.version == "2"


def test_unresolvable_request_fails_and_keeps_the_model(rig: Any) -> None:
    state, _, _, reloader = rig
    result = reloader.request(version="99").result(5)
    assert result.result == "failed" and "no version 99" in result.detail
    assert state.models.current.version == "1"


def test_events_for_other_aliases_are_ignored(rig: Any) -> None:
    _, loader, _, reloader = rig
    result = reloader.request(alias="challenger", kind="promoted", version="3").result(5)
    assert result.result == "ignored" and "serves @champion" in result.detail
    assert loader.loads == []


def test_requests_after_stop_are_answered(rig: Any) -> None:
    _, _, _, reloader = rig
    reloader.stop()
    assert reloader.request(version="2").result(1).result == "ignored"


# --- shadow metrics ----------------------------------------------------------------------------------


def test_mean_abs_difference_skips_rows_without_a_shadow_prediction() -> None:
    from consumer.monitoring.shadow import mean_abs_difference

    assert mean_abs_difference([(10.0, 12.0), (5.0, None), (1.0, -1.0)]) == pytest.approx(2.0)
    assert mean_abs_difference([(1.0, None)]) is None
    assert mean_abs_difference([]) is None


def test_shadow_monitor_observes_the_difference_and_counts_failures() -> None:
    from consumer.core.scoring import BatchResult, Incoming, Scored
    from consumer.monitoring.shadow import ShadowMonitor
    from schemas.codecs import PredictionEncoder, WireFormat

    settings = load_settings({"model.name": "m"}, env={})
    state = ScorerState(settings, model=handle("1"))
    encoder = PredictionEncoder(None)
    source = Incoming(b"k", b"{}", "t", 0, 0)

    def batch(pairs: list[tuple[float, float | None]]) -> BatchResult:
        scored = [Scored(b"k", encoder.encode({
            "record_id": f"r{i}", "prediction": p, "model_name": "m", "model_version": "1", "model_alias": None,
            "model_stage": None, "scored_at": 1, "source_topic": "t", "source_partition": 0, "source_offset": i,
            "event_time": None, "shadow_prediction": s, "shadow_model_version": None if s is None else "2"},
            WireFormat.JSON), [], source, f"r{i}", p) for i, (p, s) in enumerate(pairs)]
        return BatchResult(scored, [], None, np.array([p for p, _ in pairs]))

    monitor = ShadowMonitor(state).start()
    state.models.set_shadow(handle("2"))
    monitor.hook(batch([(100.0, 110.0), (200.0, 170.0)]), handle("1"))
    monitor.hook(batch([(100.0, None)]), handle("1"))  # a shadow was set but gave nothing: a failure
    monitor.stop()
    registry = state.metrics.registry
    assert registry.get_sample_value("housing_scorer_shadow_abs_difference_sum") == pytest.approx(20.0)
    assert registry.get_sample_value("housing_scorer_shadow_abs_difference_count") == 1
    assert registry.get_sample_value("housing_scorer_shadow_failures_total") == 1
    assert state.shadow_mean_abs_difference == pytest.approx(20.0)
