"""What ``GET /api/model/history`` answers: which version served when, rebuilt from the control topic (pure).

Every promotion, reload and rollback is a ModelUpdateEvent on ``housing.model-updates`` (training, the admin
API and the webhook receiver publish them), so the topic *is* the history. The handler
(``admin_api.views.model.model_history``) reads it from the beginning to its current end with a throwaway
consumer (``consumer.kafka.topic_reader.read_model_updates``); ``history_body`` keeps the events of one model and
derives a timeline per serving target (``@champion`` and ``stage Production``): "version 3 from t1 to t2,
version 4 from t2 until now".

Timeline rules (``derive_timeline``, pure):

- ``promoted`` naming the target's alias (or stage) and a version starts that version's period; the period
  before it ends at the same moment (a repeat of the serving version changes nothing);
- ``rollback`` with a version starts that version's period; without one, the version that served before the
  current one comes back (what every scorer does with its previous handle);
- the alias deleted (a ``reload`` naming the alias without a version), or the serving version moved to another
  stage, ends the current period with nothing after it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

logger = logging.getLogger(__name__)

EVENT_FIELDS: Final = ("event_id", "issued_at", "type", "model_name", "version", "alias", "stage", "source")


class Period(NamedTuple):
    """One version serving one target for a span of time."""

    target: str
    """``@champion`` (an alias) or ``stage Production``."""
    version: str
    start: int
    """issued_at (ms) of the event that made it serve."""
    end: int | None
    """issued_at (ms) of the event that ended it; None: it still serves."""
    event_id: str
    source: str
    """Who issued the starting event (training, admin_api, webhook, ...)."""

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "version": self.version, "from": self.start, "from_iso": iso(self.start),
                "to": self.end, "to_iso": None if self.end is None else iso(self.end),
                "event_id": self.event_id, "source": self.source}


def iso(ms: int) -> str | None:
    """``2026-11-26T07:50:12.123Z``; None for a time no calendar holds (a corrupt event)."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    except (OverflowError, OSError, ValueError):
        return None


def _applies(event: Mapping[str, Any], *, alias: str | None, stage: str | None) -> bool:
    if alias is not None:
        return event.get("alias") == alias
    return event.get("stage") == stage


def derive_timeline(events: Iterable[Mapping[str, Any]], *, alias: str | None = None,
                    stage: str | None = None) -> list[Period]:
    """The periods during which each version served the target ``@alias`` or ``stage`` (give one).

    :param events: ModelUpdateEvents of one model, in any order (sorted here by ``issued_at``).
    """
    if (alias is None) == (stage is None):
        raise ValueError("give exactly one of alias and stage")
    target = f"@{alias}" if alias is not None else f"stage {stage}"
    periods: list[Period] = []
    current: Period | None = None

    def close(at: int) -> None:
        nonlocal current
        if current is not None:
            periods.append(current._replace(end=at))
            current = None

    def start(version: str, event: Mapping[str, Any]) -> None:
        nonlocal current
        if current is not None and current.version == version:
            return  # announced again: it never stopped serving
        at = int(event["issued_at"])
        close(at)
        current = Period(target, version, at, None, str(event.get("event_id")), str(event.get("source")))

    for event in sorted(events, key=lambda e: (int(e.get("issued_at") or 0), str(e.get("event_id")))):
        kind, version = event.get("type"), event.get("version")
        version = None if version is None else str(version)
        named = _applies(event, alias=alias, stage=stage)
        if kind == "promoted" and named and version is not None:
            start(version, event)
        elif kind == "rollback" and (named or (event.get("alias") is None and event.get("stage") is None)):
            if version is not None:
                start(version, event)
            else:
                before = [p.version for p in periods if current is None or p.version != current.version]
                if before:
                    start(before[-1], event)
        elif kind == "reload" and alias is not None and named and version is None:
            close(int(event["issued_at"]))  # the alias was deleted
        elif (stage is not None and current is not None and version == current.version
              and event.get("stage") not in (None, stage)):
            close(int(event["issued_at"]))  # the serving version left the stage
    if current is not None:
        periods.append(current)
    return periods


def history_body(events: Sequence[Mapping[str, Any]], *, model_name: str, alias: str | None, stage: str | None,
                 topic: str) -> dict[str, Any]:
    """The /api/model/history answer for one model (pure)."""
    mine = [e for e in events if e.get("model_name") == model_name]
    listed = [{**{k: e.get(k) for k in EVENT_FIELDS}, "issued_at_iso": iso(int(e["issued_at"]))} for e in mine]
    timeline: list[Period] = []
    if alias:
        timeline += derive_timeline(mine, alias=alias)
    if stage:
        timeline += derive_timeline(mine, stage=stage)
    return {"model_name": model_name, "topic": topic, "events": listed, "count": len(listed),
            "timeline": [p.as_dict() for p in timeline]}

