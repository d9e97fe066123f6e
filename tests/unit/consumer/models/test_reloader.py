"""The Reloader worker driven by a fake registry, and the shadow metrics: nothing running."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from config.settings import load_settings
from consumer.core.handle import ModelHandle
from consumer.errors import FlavourLibraryMissing, ModelError, SignatureRefused
from consumer.models.loader import ResolvedVersion
from consumer.models.reloader import Reloader
from consumer.state import ScorerState
from schemas.control import ModelUpdateEvent
from tests.unit.consumer.handles import handle

# --- the worker with a fake registry ----------------------------------------------------------------


class FakeLoader:
    """Aliases and versions in a dict; versions in ``broken`` fail to load."""

    def __init__(self) -> None:
        self.aliases = {"champion": "1"}
        self.versions = {"1", "2", "3"}
        self.broken: set[str] = set()
        self.refusals: dict[str, ModelError] = {}
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
        if resolved.version in self.refusals:
            raise self.refusals[resolved.version]
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
    result = reloader.on_event(ModelUpdateEvent.new(event_id="e1", type="promoted", model_name="m", version="2",
                                                    alias="champion", source="training")).result(5)
    assert result.result == "loaded" and result.version == "2" and result.event_id == "e1"
    assert state.models.current.version == "2" and state.models.previous.version == "1"
    assert statuses.published[-1]["result"] == "loaded" and statuses.published[-1]["model_version"] == "2"
    assert state.last_reload == result


def test_duplicate_event_is_ignored_without_touching_the_registry(rig: Any) -> None:
    state, loader, statuses, reloader = rig
    loader.aliases["champion"] = "2"
    event = ModelUpdateEvent.new(event_id="same", type="promoted", model_name="m", version="2", alias="champion",
                                 source="t")
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


@pytest.mark.parametrize(("error", "reason"), [
    (SignatureRefused("models:/m/2 does not fit the housing record: input column 'rooms_per_household' ..."),
     "signature_mismatch"),
    (FlavourLibraryMissing("models:/m/2 is a lightgbm model ...: pip install lightgbm", "lightgbm"),
     "flavour_library_missing"),
    (ModelError("could not load models:/m/2: garbage"), "load_failed"),
])
def test_a_refused_version_is_failed_with_its_reason_everywhere(rig: Any, error: ModelError, reason: str) -> None:
    state, loader, statuses, reloader = rig
    loader.aliases["champion"] = "2"
    loader.refusals["2"] = error
    result = reloader.request(alias="champion", kind="promoted", event_id="refused").result(5)
    assert (result.result, result.reason) == ("failed", reason)
    assert result.as_dict()["reason"] == reason
    assert state.models.current.version == "1"  # the old version keeps scoring
    assert state.metrics.reload_failures.labels(reason=reason)._value.get() == 1
    assert statuses.published[-1]["detail"].startswith(f"{reason}: ")


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


# --- a caller that gives up (issue 12, item 1) ----------------------------------------------------------


class GatedLoader(FakeLoader):
    """Loads wait at a gate until the test opens it; ``entered`` is set when a load has begun."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def load(self, resolved: ResolvedVersion, check: bool = True) -> ModelHandle:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().load(resolved, check)


@pytest.fixture
def gated() -> Any:
    settings = load_settings({"model.name": "m"}, env={})
    state = ScorerState(settings, model=handle("1"))
    loader = GatedLoader()
    reloader = Reloader(settings, state, loader=loader, status=Statuses()).start()  # type: ignore[arg-type]
    yield state, loader, reloader
    loader.gate.set()
    reloader.stop()


def test_a_caller_that_cancels_during_the_load_does_not_kill_the_worker(gated: Any) -> None:
    state, loader, reloader = gated
    first = reloader.request(version="2", source="admin_api")
    assert loader.entered.wait(5)
    # What asyncio.wait_for does to a wrapped future on timeout: cancel it (the HTTP caller gave up).
    first.cancel()
    loader.gate.set()
    # The worker lives on and answers the next request (it used to die of InvalidStateError in set_result).
    assert reloader.request(version="3").result(5).result == "loaded"
    assert reloader.alive and state.models.current.version == "3"
    # A request being worked on is running: the caller's cancel did not take, the load's result is there.
    assert not first.cancelled() and first.result(0).result == "loaded" and first.result(0).version == "2"


def test_a_request_cancelled_while_queued_is_skipped_and_the_worker_lives_on(gated: Any) -> None:
    state, loader, reloader = gated
    busy = reloader.request(version="2")
    assert loader.entered.wait(5)
    queued = reloader.request(version="3")
    assert queued.cancel()  # still in the queue: the caller may give up
    loader.gate.set()
    assert busy.result(5).result == "loaded"
    after = reloader.request(version="1", source="admin_api").result(5)
    assert after.result == "loaded" and state.models.current.version == "1"
    assert loader.loads == ["2", "1"]  # the cancelled request was never loaded
    assert reloader.alive and queued.cancelled()


# --- a rollback that moved the registry (issue 12, item 7) ----------------------------------------------


def test_a_rollback_the_registry_agrees_with_does_not_hold_the_poll_off(rig: Any) -> None:
    state, loader, _, reloader = rig
    loader.aliases["champion"] = "2"
    reloader.request(alias="champion", kind="promoted").result(5)
    loader.aliases["champion"] = "1"  # the admin API's rollback moves the alias first, then announces
    back = reloader.request(kind="rollback", version="1", alias="champion", event_id="rb").result(5)
    assert back.result == "loaded" and state.models.current.version == "1"
    assert reloader.rolled_back_from is None
    # An operator moves the alias back to v2 later: the poll follows the registry.
    loader.aliases["champion"] = "2"
    assert reloader.request(alias="champion", version="2", source="poll").result(5).result == "loaded"
    assert state.models.current.version == "2"


def test_a_bare_rollback_holds_until_the_registry_moves_on(rig: Any) -> None:
    state, loader, _, reloader = rig
    loader.aliases["champion"] = "2"
    reloader.request(alias="champion", kind="promoted").result(5)
    assert reloader.request(kind="rollback", event_id="rb").result(5).result == "loaded"
    assert reloader.rolled_back_from == "2"  # the registry still points at v2: hold the poll off
    reloader.registry_moved_on("2")
    assert reloader.rolled_back_from == "2"
    reloader.registry_moved_on("1")  # the poll sees the alias on what serves: the registry agrees now
    assert reloader.rolled_back_from is None
    assert reloader.request(alias="champion", version="2", source="poll").result(5).result == "loaded"


def test_any_later_load_other_than_the_poll_ends_a_rollback_hold(rig: Any) -> None:
    """After a rollback, an operator's or an event's load ends the hold: the poll follows the registry again."""
    state, loader, _, reloader = rig
    loader.aliases["champion"] = "2"
    reloader.request(alias="champion", kind="promoted").result(5)
    assert reloader.request(kind="rollback", event_id="rb").result(5).result == "loaded"
    assert reloader.rolled_back_from == "2"
    assert reloader.request(version="3", source="admin_api").result(5).result == "loaded"  # a pin, not the poll
    assert reloader.rolled_back_from is None
    # The registry still says v2: with the hold gone, the poll moves the scorer there.
    assert reloader.request(alias="champion", version="2", source="poll").result(5).result == "loaded"
    assert state.models.current.version == "2"


def test_a_rollback_of_another_alias_leaves_the_champion_alone(rig: Any) -> None:
    state, loader, _, reloader = rig
    loader.aliases["champion"] = "2"
    reloader.request(alias="champion", kind="promoted").result(5)
    other = reloader.request(kind="rollback", version="1", alias="canary", event_id="rb-canary").result(5)
    assert other.result == "ignored" and "serves @champion" in other.detail
    assert state.models.current.version == "2"
