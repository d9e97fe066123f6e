"""Model history, the pure part: the serving timeline derived from the control topic's events."""

from __future__ import annotations

from typing import Any

import pytest

from admin_api.history import derive_timeline, history_body


# --- when: the serving timeline -----------------------------------------------------------------------------
def event(at: int, kind: str, version: str | None, *, alias: str | None = None, stage: str | None = None,
          source: str = "admin_api", model: str = "m") -> dict[str, Any]:
    return {"event_id": f"e{at}", "issued_at": at, "type": kind, "model_name": model, "version": version,
            "alias": alias, "stage": stage, "model_uri": None, "source": source}


def spans(periods: list[Any]) -> list[tuple[str, int, int | None]]:
    return [(p.version, p.start, p.end) for p in periods]


def test_champion_timeline_from_promotions_rollback_and_alias_delete() -> None:
    events = [
        event(100, "promoted", "1", alias="champion", stage="Production", source="training"),
        event(200, "promoted", "2", alias="champion", stage="Production", source="training"),
        event(250, "promoted", "2", alias="champion"),       # announced again: no new period
        event(260, "promoted", "7", alias="challenger"),     # another alias: not the champion
        event(300, "rollback", None),                        # back to the version before
        event(400, "promoted", "3", alias="champion"),
        event(500, "reload", None, alias="champion"),        # alias deleted
    ]
    timeline = derive_timeline(list(reversed(events)), alias="champion")  # order does not matter
    assert spans(timeline) == [("1", 100, 200), ("2", 200, 300), ("1", 300, 400), ("3", 400, 500)]
    assert timeline[0].source == "training" and timeline[0].target == "@champion"


def test_production_timeline_ends_when_the_serving_version_leaves_the_stage() -> None:
    events = [
        event(100, "promoted", "1", stage="Production"),
        event(200, "promoted", "2", stage="Staging"),
        event(300, "promoted", "2", stage="Production"),
        event(400, "rollback", "1", stage="Production"),
        event(500, "reload", "1", stage="Archived"),
        event(600, "promoted", "4", stage="Production"),
    ]
    timeline = derive_timeline(events, stage="Production")
    assert spans(timeline) == [("1", 100, 300), ("2", 300, 400), ("1", 400, 500), ("4", 600, None)]
    assert timeline[-1].as_dict()["to_iso"] is None and timeline[-1].target == "stage Production"


def test_derive_timeline_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError):
        derive_timeline([], alias="champion", stage="Production")
    with pytest.raises(ValueError):
        derive_timeline([])


def test_history_body_keeps_one_model_and_lists_both_targets() -> None:
    events = [event(1_700_000_000_000, "promoted", "1", alias="champion", stage="Production", source="training"),
              event(1_700_000_001_000, "promoted", "9", alias="champion", model="other")]
    body = history_body(events, model_name="m", alias="champion", stage="Production", topic="t")
    assert body["count"] == 1 and body["events"][0]["issued_at_iso"] == "2023-11-14T22:13:20.000Z"
    assert [(p["target"], p["version"], p["to"]) for p in body["timeline"]] == [
        ("@champion", "1", None), ("stage Production", "1", None)]
