"""The reload rules as a table: every branch of classify, precheck, decide and rollback_decision with the exact
Decision (action, reason, version) it returns, and the log label of a request. The reason becomes the
ReloadResult detail that /health, the status topic and the logs show, so its text is asserted too."""

from __future__ import annotations

import pytest

from consumer.core.decisions import Decision, ReloadRequest, classify, decide, precheck, rollback_decision
from tests.unit.consumer.handles import handle

ALIAS_SCORER = {"served_alias": "champion", "served_stage": None, "served_version": None, "shadow_alias": None}
STAGE_SCORER = {"served_alias": None, "served_stage": "Production", "served_version": None, "shadow_alias": None}


@pytest.mark.parametrize(("request_", "served", "slot"), [
    (ReloadRequest(kind="rollback", alias="challenger"), ALIAS_SCORER, "champion"),  # a rollback is the champion's
    (ReloadRequest(kind="promoted", alias="challenger", slot="shadow"), ALIAS_SCORER, "shadow"),  # forced slot
    (ReloadRequest(kind="promoted", alias="champion"), {**ALIAS_SCORER, "shadow_alias": "champion"}, "champion"),
    (ReloadRequest(kind="promoted", alias="other"), {**ALIAS_SCORER, "shadow_alias": "challenger"}, None),
    (ReloadRequest(kind="promoted", alias="challenger"), {**ALIAS_SCORER, "served_alias": None}, None),
    (ReloadRequest(kind="promoted", stage="Production"), STAGE_SCORER, "champion"),
    (ReloadRequest(kind="promoted", stage="Staging"), STAGE_SCORER, None),
    (ReloadRequest(kind="promoted", stage="Production"), {**STAGE_SCORER, "served_alias": "champion"}, None),
    (ReloadRequest(kind="promoted", stage="Production"), {**STAGE_SCORER, "served_version": "4"}, None),
    (ReloadRequest(kind="promoted", version="3", stage="Production"), STAGE_SCORER, "champion"),
], ids=["rollback", "forced-slot", "served-before-shadow", "neither-alias", "no-served-alias", "stage",
        "other-stage", "stage-but-alias-scorer", "stage-but-pinned-scorer", "stage-with-version"])
def test_classify(request_: ReloadRequest, served: dict[str, str | None], slot: str | None) -> None:
    assert classify(request_, **served) == slot  # type: ignore[arg-type]


def test_precheck_table() -> None:
    event = ReloadRequest(kind="promoted", version="3", alias="champion", event_id="e1")
    assert precheck(event, seen=True, loaded=None) == Decision("ignore", "duplicate event e1")
    assert precheck(event, seen=False, loaded=handle("3")) == Decision("ignore", "v3 is already loaded", "3")
    assert precheck(event, seen=False, loaded=None) is None
    # A rollback naming the loaded version goes on to rollback_decision (which says "already on").
    assert precheck(ReloadRequest(kind="rollback", version="3"), seen=False, loaded=handle("3")) is None
    assert precheck(ReloadRequest(kind="reload"), seen=False, loaded=handle("3")) is None


def test_decide_table() -> None:
    stale = ReloadRequest(kind="promoted", version="1", alias="champion")
    assert decide(stale, target="2", loaded=handle("2"), rolled_back_from=None) == Decision(
        "ignore", "stale event: it names v1, older than the loaded v2, and the registry still points at v2", "1")
    same = ReloadRequest(kind="promoted", version="2", alias="champion")
    assert decide(same, target="2", loaded=handle("2"), rolled_back_from=None) == Decision(
        "ignore", "v2 is already loaded", "2")
    newer = ReloadRequest(kind="promoted", version="3", alias="champion")  # the alias is back on the loaded v2
    assert decide(newer, target="2", loaded=handle("2"), rolled_back_from=None) == Decision(
        "ignore", "v2 is already loaded", "2")
    bare = ReloadRequest(kind="reload")
    assert decide(bare, target="2", loaded=handle("2"), rolled_back_from=None) == Decision(
        "ignore", "v2 is already loaded", "2")
    poll = ReloadRequest(kind="reload", source="poll")
    assert decide(poll, target="5", loaded=handle("4"), rolled_back_from="5") == Decision(
        "ignore", "rolled back from v5: waiting for the alias to move on", "5")
    assert decide(poll, target="6", loaded=handle("4"), rolled_back_from="5") == Decision("load", "load v6", "6")
    assert decide(bare, target="5", loaded=handle("4"), rolled_back_from="5") == Decision("load", "load v5", "5")
    assert decide(bare, target="2", loaded=handle("2", "fallback"), rolled_back_from=None) == Decision(
        "load", "load v2", "2")
    assert decide(bare, target="1", loaded=None, rolled_back_from=None) == Decision("load", "load v1", "1")


def test_rollback_decision_table() -> None:
    named = ReloadRequest(kind="rollback", version="2")
    assert rollback_decision(named, loaded=handle("2"), previous=None) == Decision("ignore", "already on v2", "2")
    assert rollback_decision(named, loaded=handle("3"), previous=handle("2")) == Decision(
        "swap_previous", "roll back to v2", "2")
    assert rollback_decision(named, loaded=handle("3"), previous=handle("1")) == Decision(
        "load", "roll back to v2", "2")
    assert rollback_decision(named, loaded=handle("2", "fallback"), previous=None) == Decision(
        "load", "roll back to v2", "2")
    bare = ReloadRequest(kind="rollback")
    assert rollback_decision(bare, loaded=handle("3"), previous=None) == Decision(
        "fail", "nothing to roll back to: no previous version in this process")
    assert rollback_decision(bare, loaded=handle("3"), previous=handle("2", "fallback")) == Decision(
        "swap_previous", "roll back to v2", "2")


@pytest.mark.parametrize(("request_", "label"), [
    (ReloadRequest(kind="promoted", version="7", alias="champion", source="training"),
     "promoted v7 @champion from training"),
    (ReloadRequest(kind="promoted", version="7", stage="Production", source="webhook"),
     "promoted v7 stage Production from webhook"),
    (ReloadRequest(kind="promoted", alias="champion", stage="Production"), "promoted @champion from api"),
    (ReloadRequest(kind="reload", source="poll"), "reload from poll"),
    (ReloadRequest(kind="rollback", version="3"), "rollback v3 from api"),
])
def test_request_label(request_: ReloadRequest, label: str) -> None:
    assert request_.label() == label
