"""The reload rules (pure): which model a request concerns and what to do with it."""

from __future__ import annotations

import pytest

from consumer.core.decisions import ReloadRequest, classify, decide, poll_wants_reload, precheck, rollback_decision
from tests.unit.consumer.handles import handle

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


def test_a_rollback_to_a_version_the_fallback_file_holds_loads_it_from_the_registry() -> None:
    # The fallback file is a copy from some time ago: a named rollback must serve the registry's version.
    from_file = rollback_decision(ReloadRequest(kind="rollback", version="1"), loaded=handle("2"),
                                  previous=handle("1", source="fallback"))
    assert (from_file.action, from_file.version) == ("load", "1")
    from_registry = rollback_decision(ReloadRequest(kind="rollback", version="1"), loaded=handle("2"),
                                      previous=handle("1"))
    assert (from_registry.action, from_registry.version) == ("swap_previous", "1")
    on_file = rollback_decision(ReloadRequest(kind="rollback", version="2"), loaded=handle("2", source="fallback"),
                                previous=None)
    assert on_file.action == "load"  # "already on v2" holds only for the registry's v2


def test_poll_wants_reload() -> None:
    assert poll_wants_reload("2", handle("1"), None)
    assert not poll_wants_reload("1", handle("1"), None)
    assert not poll_wants_reload("2", handle("1"), "2")  # rolled back from 2: hold
    assert poll_wants_reload("1", handle("1", "fallback"), None)
    assert poll_wants_reload("1", None, None)
