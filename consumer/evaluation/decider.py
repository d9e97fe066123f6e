"""The single decider: housing-evaluate runs the promotion gate and takes each canary decision exactly once.

Why the evaluator: it already holds the live stats of every version and role on the same window (a scorer sees
only its own partitions' predictions), it is one process for the fleet, and it is fenced by its transactional id
(``EVALUATOR_ID``: a second instance with the same id fences the first), so at most one instance decides without a
separate election. Its checkpoint transaction makes each decision atomic:

1. Every ``CANARY_DECIDE_SECONDS`` the gate (``consumer.evaluation.gates``) looks at the latest snapshot for the
   fleet's canary (the registry's canary alias) against the champion. ``CANARY_DRY_RUN`` logs what it would do
   and stops there. With ``AUTO_PROMOTE`` a promote or rollback becomes a decision record (id, action, versions,
   evidence) in the decider's state, written to the checkpoint topic (key ``<EVALUATOR_ID>.canary``) in the
   same transaction as the checkpoint: committed, it is taken; aborted (kill -9 before the commit), it never
   was, and the restarted evaluator decides again from its checkpoint.
2. After that commit the registry is moved (``consumer.models.canary.promote_canary`` / ``reject_canary``:
   idempotent), so the alias points where the event will say before anyone reads the event.
3. The next checkpoint's transaction publishes the decision's control event on ``housing.model-updates`` (its
   event id is the decision id) and marks the decision announced. Every scorer follows it.

A restart between 1 and 3 finds the decision taken but not announced: it moves the registry again (a no-op if it
had moved) and announces it. A canary version decided once is never decided again: no decision is taken twice,
and none is announced twice (scorers also drop a repeated event id).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from config.settings import Settings
from consumer.evaluation.gates import Decision, GatePolicy, Health, decide, table
from consumer.models.canary import fleet_canary, promote_canary, reject_canary
from schemas.control import ModelUpdateEvent

logger = logging.getLogger(__name__)

STATE_FORMAT: Final = 1
KEEP_DECISIONS: Final = 100
SOURCE: Final = "canary-gate"


def state_key(evaluator_id: str) -> str:
    """The decider's record on the checkpoint topic (beside the checkpoint, key ``<id>``)."""
    return f"{evaluator_id}.canary"


@dataclass
class DecisionRecord:
    """One decision taken: the audit record (with the evidence) and how far it got."""

    decision_id: str
    action: str
    canary_version: str
    champion_version: str
    decided_at: int
    evidence: dict[str, Any]
    announced: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"decision_id": self.decision_id, "action": self.action, "canary_version": self.canary_version,
                "champion_version": self.champion_version, "decided_at": self.decided_at,
                "evidence": self.evidence, "announced": self.announced}


@dataclass
class DeciderState:
    decisions: list[DecisionRecord] = field(default_factory=list)

    def encode(self) -> bytes:
        return json.dumps({"format": STATE_FORMAT, "decisions": [d.as_dict() for d in self.decisions]},
                          separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> DeciderState:
        if not raw:
            return cls()
        document = json.loads(raw)
        return cls([DecisionRecord(**d) for d in document.get("decisions", [])])

    def decided(self, canary_version: str) -> DecisionRecord | None:
        return next((d for d in self.decisions if d.canary_version == canary_version), None)


Output = tuple[str, bytes, bytes]
"""(topic, key, value) to produce inside the open transaction."""
HealthOf = Callable[[str, str], Health]
"""(canary version, champion version) -> the canary's health in the window (``HealthStats.health``)."""


class CanaryDecider:
    """The gate's driver inside the evaluator; ``outputs`` before each commit, ``committed`` after it."""

    def __init__(self, settings: Settings, client_factory: Callable[[], Any],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        canary = settings.canary
        self.policy = GatePolicy.from_settings(canary)
        self.enabled = canary.auto_promote or canary.dry_run
        self._client_factory = client_factory
        self._client: Any = None
        self._clock = clock
        self._next = 0.0
        self.state = DeciderState()
        self._dirty = False
        self._to_apply: list[DecisionRecord] = []
        self.last: Decision | None = None
        """The gate's latest answer (dry run included), for /performance and logs."""

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def restore(self, raw: bytes | None) -> None:
        """The decider's state from its record; decisions taken but not announced are applied again."""
        self.state = DeciderState.decode(raw)
        self._to_apply = [d for d in self.state.decisions if not d.announced]
        for record in self._to_apply:
            logger.info("canary decision %s (%s v%s) was taken but not announced before the restart: applying it "
                        "again and announcing it", record.decision_id, record.action, record.canary_version)
        self.apply_pending()

    def outputs(self, snapshot: Mapping[str, Any], health: HealthOf | None = None) -> list[Output]:
        """What this checkpoint's transaction carries for the decider: announcements of decisions applied since
        the last commit, a new decision, and the decider's state when it changed.

        :param health: the canary's failures, non-finite predictions and drift (None: not known)."""
        out: list[Output] = []
        topics, name = self.settings.topics, self.settings.model.name
        for record in self.state.decisions:
            if not record.announced and record not in self._to_apply:
                out.append((topics.model_updates, name.encode(), self.event(record).to_bytes()))
                record.announced = True
                self._dirty = True
        if self.enabled and self._clock() >= self._next:
            self._next = self._clock() + self.settings.canary.decide_seconds
            try:
                self._evaluate(snapshot, health)
            except Exception:  # the registry away, say: the gate waits for the next round
                logger.exception("canary gate: evaluation failed; trying again in %.0fs",
                                 self.settings.canary.decide_seconds)
        if self._dirty:
            self.state.decisions = self.state.decisions[-KEEP_DECISIONS:]
            out.append((topics.evaluator_checkpoints, state_key(self.settings.evaluation.evaluator_id).encode(),
                        self.state.encode()))
        return out

    def committed(self) -> None:
        """The transaction with ``outputs`` committed: a new decision is taken; move the registry now."""
        self._dirty = False
        self.apply_pending()

    def apply_pending(self) -> None:
        while self._to_apply:
            record = self._to_apply[0]
            try:
                self._apply(record)
            except Exception:
                logger.exception("canary decision %s: moving the registry failed; retrying at the next checkpoint",
                                 record.decision_id)
                return
            self._to_apply.pop(0)

    # --- the gate ------------------------------------------------------------------------------------------

    def _versions(self) -> tuple[str | None, str | None]:
        from mlflow.exceptions import MlflowException

        name = self.settings.model.name
        alias, fraction = fleet_canary(self.client, name, self.settings)
        try:
            champion = str(self.client.get_model_version_by_alias(name, self.settings.model.alias or "champion")
                           .version)
            canary_version = self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None, None
        if fraction <= 0 or "canary.rejected" in (canary_version.tags or {}):
            return None, champion
        return str(canary_version.version), champion

    def _evaluate(self, snapshot: Mapping[str, Any], health: HealthOf | None) -> None:
        canary, champion = self._versions()
        if canary is None or champion is None or canary == champion or self.state.decided(canary) is not None:
            return
        decision = decide(snapshot, canary_version=canary, champion_version=champion, policy=self.policy,
                          health=health(canary, champion) if health is not None else None)
        self.last = decision
        if decision.action == "wait":
            logger.debug("canary gate: wait (%s)", decision.reason)
            return
        if not self.settings.canary.auto_promote:
            logger.info("canary gate DRY RUN: would %s canary v%s\n%s", decision.action, canary, table(decision))
            return
        record = DecisionRecord(str(uuid.uuid4()), decision.action, canary, champion, int(time.time() * 1000),
                                decision.evidence())
        logger.info("canary gate: %s canary v%s (decision %s)\n%s", decision.action, canary, record.decision_id,
                    table(decision))
        self.state.decisions.append(record)
        self._to_apply.append(record)
        self._dirty = True

    def _apply(self, record: DecisionRecord) -> None:
        name = self.settings.model.name
        alias, _ = fleet_canary(self.client, name, self.settings)
        evidence = {"decision_id": record.decision_id, **record.evidence}
        if record.action == "promote":
            changed = promote_canary(self.client, name, record.canary_version, canary_alias=alias,
                                     champion_alias=self.settings.model.alias or "champion", evidence=evidence)
        else:
            changed = reject_canary(self.client, name, record.canary_version, canary_alias=alias, evidence=evidence)
        logger.info("canary decision %s applied in the registry: %s", record.decision_id,
                    ", ".join(changed) or "nothing left to move")

    def event(self, record: DecisionRecord) -> ModelUpdateEvent:
        """The decision's announcement: its id is the decision id."""
        name, evidence = self.settings.model.name, json.dumps(record.evidence, sort_keys=True)
        if record.action == "promote":
            return ModelUpdateEvent.new(type="promoted", model_name=name, version=record.canary_version,
                                        alias=self.settings.model.alias or "champion", source=SOURCE,
                                        event_id=record.decision_id, decision="promote", evidence=evidence)
        return ModelUpdateEvent.new(type="canary", model_name=name, version=record.canary_version,
                                    alias=self.settings.canary.alias, source=SOURCE, event_id=record.decision_id,
                                    canary_fraction=0.0, decision="rollback", evidence=evidence)
