"""The registry poll: the safety net under the control topic.

Every ``MLFLOW_RELOAD_INTERVAL`` seconds: is MLflow reachable (the health metric and /health), what does the
configured alias/stage/version resolve to now, and does that differ from what serves? If so, ask the
reloader. This catches what sends no event: aliases moved straight in the MLflow UI or with MlflowClient
when no webhook is configured or a delivery was lost (webhooks are not durable), and stage transitions
(which send no webhook at all). It also moves a scorer that started on the fallback file (MLflow was down)
to the registry's model once MLflow answers again. With shadow scoring on, it refreshes the shadow model
when the shadow alias moves.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future

from config.settings import Settings
from consumer.core.decisions import poll_wants_reload
from consumer.errors import ModelError
from consumer.models.loader import ModelLoader
from consumer.models.reloader import Reloader
from consumer.state import ReloadResult, ScorerState
from consumer.workers import Worker

logger = logging.getLogger(__name__)

RETRY_FAILED_AFTER = 60.0
"""Seconds before the poll asks again for a version whose load failed (a corrupt artifact stays corrupt)."""


class RegistryPoller(Worker):
    """A thread that polls the registry and asks the reloader when the served version should change."""

    def __init__(self, settings: Settings, state: ScorerState, reloader: Reloader, *,
                 loader: ModelLoader | None = None, interval: float | None = None) -> None:
        super().__init__("registry-poller")
        self.settings = settings
        self.state = state
        self.reloader = reloader
        self._loader = loader
        self.interval = interval if interval is not None else settings.model.reload_interval
        self._pending: Future[ReloadResult] | None = None
        self._pending_shadow: Future[ReloadResult] | None = None
        self._last_problem: str | None = None
        self.polls = 0

    @property
    def loader(self) -> ModelLoader:
        if self._loader is None:
            self._loader = ModelLoader(self.settings)
        return self._loader

    def _run(self) -> None:
        while not self.sleep(self.interval):
            try:
                self.poll_once()
            except Exception:  # keep polling: one odd answer must not end the safety net
                logger.exception("registry poll failed")

    def poll_once(self) -> Future[ReloadResult] | None:
        """One poll; returns the reload it requested, if any."""
        self.polls += 1
        reachable = self.loader.reachable()
        self.state.set_mlflow_reachable(reachable)
        if not reachable:
            self._problem(f"MLflow at {self.settings.mlflow.tracking_uri} is not reachable")
            return None
        requested = self._poll_champion()
        if self.settings.scorer.shadow_enabled:
            self._poll_shadow()
        return requested

    def _poll_champion(self) -> Future[ReloadResult] | None:
        try:
            resolved = self.loader.resolve_configured()
        except ModelError as exc:
            self._problem(f"cannot resolve the configured model: {exc}")
            return None
        self._last_problem = None
        self.reloader.registry_moved_on(resolved.version)
        current = self.state.models.current
        if not poll_wants_reload(resolved.version, current, self.reloader.rolled_back_from):
            return None
        if self._pending is not None and not self._pending.done():
            return None  # the last one is still loading; do not pile up requests
        failure = self.state.last_reload_failure
        recently = failure is not None and time.time() - failure.at < RETRY_FAILED_AFTER
        if recently and failure is not None and failure.version == resolved.version:
            return None  # that version just failed (reported); retry later, not every poll
        model = self.settings.model
        logger.info("registry poll: %s resolves to v%s but v%s (%s) serves: reloading",
                    f"v{model.version}" if model.version else (f"@{model.alias}" if model.alias
                                                               else f"stage {model.stage}"),
                    resolved.version, current.version if current else None,
                    current.source if current else "nothing")
        if model.version:
            self._pending = self.reloader.request(version=resolved.version, source="poll")
        else:
            self._pending = self.reloader.request(version=resolved.version, alias=model.alias,
                                                  stage=None if model.alias else model.stage, source="poll")
        return self._pending

    def _poll_shadow(self) -> None:
        alias = self.settings.scorer.shadow_alias
        try:
            resolved = self.loader.resolve(alias=alias)
        except ModelError as exc:
            logger.debug("shadow alias @%s: %s", alias, exc)
            return
        shadow = self.state.models.shadow
        last = self.state.shadow_load
        if shadow is not None and shadow.version == resolved.version:
            return
        if last is not None and last.result.result == "failed" and last.result.version == resolved.version:
            return  # that version already failed to load; wait for the alias to move
        if self._pending_shadow is None or self._pending_shadow.done():
            self._pending_shadow = self.reloader.refresh_shadow(source="poll")

    def _problem(self, text: str) -> None:
        if text != self._last_problem:
            logger.warning("registry poll: %s (keeping the current model)", text)
            self._last_problem = text
