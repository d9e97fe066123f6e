"""The canary: which version serves a share of the keys instead of the champion, kept in the registry.

The registry is the truth, as for the champion: the canary is the version ``CANARY_ALIAS`` (``challenger``)
names; its share of keys is ``CANARY_FRACTION``, or the registered model's tag ``canary.fraction`` once
``PUT /api/canary`` wrote it (so the whole fleet and every restarted instance agree); a version a gate rolled back
carries the version tag ``canary.rejected`` and is never canaried again. ``CanaryWorker`` (one thread per scorer)
resolves that on start-up, on every control event about the canary or the champion, and every
``MLFLOW_RELOAD_INTERVAL`` seconds; it loads and checks the version off the scoring thread, exactly as a champion
is loaded, and swaps ``state.models.canary`` as a whole. A canary that cannot be resolved, is rejected, is the
champion itself, or fails to load or check is not set: the champion serves its keys.

The registry moves of a gate's decision (``promote_canary``, ``reject_canary``) are here too: idempotent, so a
decision applied twice (after a crash between applying and announcing it) moves nothing the second time.
"""

from __future__ import annotations

import json
import logging
import queue
from collections.abc import Mapping
from typing import Any, Final

from config.settings import Settings
from consumer.errors import ModelError
from consumer.models.loader import ModelLoader
from consumer.state import CanaryRoute, CanaryView, ScorerState
from consumer.workers import Worker
from schemas.control import ModelUpdateEvent

logger = logging.getLogger(__name__)

FRACTION_TAG: Final = "canary.fraction"
"""Registered model tag: the fleet's canary share (written by PUT /api/canary; wins over CANARY_FRACTION)."""
ALIAS_TAG: Final = "canary.alias"
"""Registered model tag: the fleet's canary alias, when PUT /api/canary changed it."""
REJECTED_TAG: Final = "canary.rejected"
"""Model version tag: a gate rolled this version back as canary (value: the decision's JSON evidence)."""
PROMOTED_TAG: Final = "canary.promoted"
"""Model version tag: a gate promoted this canary to champion (value: the decision's JSON evidence)."""


def fleet_canary(client: Any, name: str, settings: Settings) -> tuple[str, float]:
    """The fleet's canary alias and share: the registered model's tags, else the settings."""
    tags: Mapping[str, str] = client.get_registered_model(name).tags or {}
    alias = tags.get(ALIAS_TAG) or settings.canary.alias
    try:
        fraction = float(tags[FRACTION_TAG]) if FRACTION_TAG in tags else settings.canary.fraction
    except ValueError:
        logger.warning("registered model %s: tag %s=%r is not a number; using CANARY_FRACTION", name, FRACTION_TAG,
                       tags[FRACTION_TAG])
        fraction = settings.canary.fraction
    return alias, min(1.0, max(0.0, fraction))


def set_fleet_canary(client: Any, name: str, *, fraction: float | None = None, alias: str | None = None) -> None:
    """Write the fleet's canary share and/or alias as registered model tags."""
    if fraction is not None:
        client.set_registered_model_tag(name, FRACTION_TAG, repr(float(fraction)))
    if alias is not None:
        client.set_registered_model_tag(name, ALIAS_TAG, alias)


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote_canary(client: Any, name: str, version: str, *, canary_alias: str, champion_alias: str,
                   evidence: Mapping[str, Any]) -> list[str]:
    """Make ``version`` the champion: the champion alias to it, the canary alias off it (it is no canary any
    more), the version tagged with the evidence. Idempotent; returns what it changed (for the log)."""
    changed = []
    if _alias_version(client, name, champion_alias) != version:
        client.set_registered_model_alias(name, champion_alias, version)
        changed.append(f"@{champion_alias} -> v{version}")
    if _alias_version(client, name, canary_alias) == version:
        client.delete_registered_model_alias(name, canary_alias)
        changed.append(f"@{canary_alias} removed")
    client.set_model_version_tag(name, version, PROMOTED_TAG, json.dumps(dict(evidence), sort_keys=True))
    return changed


def reject_canary(client: Any, name: str, version: str, *, canary_alias: str,
                  evidence: Mapping[str, Any]) -> list[str]:
    """Roll ``version`` back as canary: tagged rejected with the evidence, the canary alias off it. Idempotent."""
    changed = []
    client.set_model_version_tag(name, version, REJECTED_TAG, json.dumps(dict(evidence), sort_keys=True))
    if _alias_version(client, name, canary_alias) == version:
        client.delete_registered_model_alias(name, canary_alias)
        changed.append(f"@{canary_alias} removed")
    return changed


class CanaryWorker(Worker):
    """Keeps ``state.models.canary`` on what the registry says; ``refresh()`` asks for a look now."""

    def __init__(self, settings: Settings, state: ScorerState, loader: ModelLoader, *,
                 interval: float | None = None) -> None:
        super().__init__("canary")
        self.settings = settings
        self.state = state
        self.loader = loader
        self.interval = interval if interval is not None else settings.model.reload_interval
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._rejected: set[str] = set()
        self.refreshes = 0

    def refresh(self, why: str = "api") -> None:
        self._queue.put(why)

    def on_event(self, event: ModelUpdateEvent) -> None:
        """ControlListener callback: a canary event, or any move of an alias, asks for a refresh; a gate's rollback
        takes the version off at once (before the registry is asked)."""
        if event.type == "canary" and event.decision == "rollback" and event.version is not None:
            self._rejected.add(event.version)
            route = self.state.models.canary
            if route is not None and route.handle.version == event.version:
                self.state.models.set_canary(None)
                logger.info("canary v%s rolled back by %s: the champion serves its keys", event.version,
                            event.source)
        self.refresh(f"event {event.event_id}")

    def _wake(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        why: str | None = "start-up"
        while not self.stopping:
            if why is not None:
                try:
                    self.refresh_now()
                except Exception:  # keep watching: one odd answer must not end the canary
                    logger.exception("canary refresh (%s) failed", why)
            try:
                why = self._queue.get(timeout=self.interval)
            except queue.Empty:
                why = "poll"

    def refresh_now(self) -> CanaryView:
        """Resolve the fleet's canary and serve it (or none); returns what this instance now serves."""
        self.refreshes += 1
        name = self.settings.model.name
        try:
            alias, fraction = fleet_canary(self.loader.client, name, self.settings)
        except Exception as exc:  # MLflow away: keep what serves, the next poll asks again
            logger.debug("canary: registry unavailable: %s", exc)
            return self.state.canary_view
        if fraction <= 0.0:
            return self._serve(None, alias, fraction, "canary fraction is 0: off")
        try:
            resolved = self.loader.resolve(alias=alias)
            version = self.loader.client.get_model_version(name, resolved.version)
        except ModelError as exc:
            return self._serve(None, alias, fraction, f"no canary: {exc}")
        tags = getattr(version, "tags", None) or {}
        if REJECTED_TAG in tags or resolved.version in self._rejected:
            self._rejected.add(resolved.version)
            return self._serve(None, alias, fraction, f"v{resolved.version} was rolled back as canary")
        champion = self.state.models.current
        if champion is not None and champion.version == resolved.version:
            return self._serve(None, alias, fraction, f"@{alias} is v{resolved.version}, the champion itself")
        route = self.state.models.canary
        if route is not None and route.handle.version == resolved.version:
            return self._serve(route, alias, fraction, f"v{resolved.version} @{alias}")
        if route is not None:  # the alias moved on: the old canary stops at once, the new one serves once loaded
            self.state.models.set_canary(None)
        try:
            handle = self.loader.load(resolved)
        except ModelError as exc:
            logger.error("canary v%s @%s failed to load (%s): the champion serves its keys", resolved.version, alias,
                         exc)
            return self._serve(None, alias, fraction, f"v{resolved.version} failed to load ({exc.reason}): {exc}")
        logger.info("canary %s loaded in %.2fs: it scores %.1f%% of the keys", handle.label, handle.load_seconds,
                    fraction * 100)
        return self._serve(CanaryRoute(handle, fraction), alias, fraction, f"v{handle.version} @{alias}")

    def _serve(self, route: CanaryRoute | None, alias: str, fraction: float, detail: str) -> CanaryView:
        if route is not None and route.fraction != fraction:
            route = CanaryRoute(route.handle, fraction)
        self.state.models.set_canary(route)
        view = CanaryView(alias, fraction, route.handle.version if route else None, detail,
                          tuple(sorted(self._rejected)))
        if view.version != self.state.canary_view.version or view.detail != self.state.canary_view.detail:
            logger.info("canary: %s", detail)
        self.state.canary_view = view
        return view
