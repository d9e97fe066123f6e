"""Hot reload: one worker thread that resolves, loads, checks and swaps models, one request at a time.

Requests come from control-topic events, the registry poll and the admin API. Each becomes one
``ReloadResult`` (loaded / failed / ignored), recorded in the state (metrics, /health) and published as a
ScorerStatus. Loading and checking happen on the worker thread; the scoring thread only ever sees a
complete, checked handle, swapped in between two batches. A failed load keeps the current model.

What each request means is decided by the pure rules of ``consumer.core.decisions``.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import OrderedDict
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from typing import Protocol

from config.settings import Settings
from consumer.core.decisions import (
    Decision,
    ReloadKind,
    ReloadRequest,
    Slot,
    classify,
    decide,
    precheck,
    rollback_decision,
)
from consumer.errors import MlflowUnavailable, ModelError
from consumer.models.loader import ModelLoader, ResolvedVersion
from consumer.state import ReloadResult, ScorerState, ShadowLoad
from consumer.workers import Worker
from schemas.control import ModelUpdateEvent, ScorerStatus
from schemas.versions import version_from_uri

logger = logging.getLogger(__name__)

SEEN_EVENT_IDS = 1000
"""Event ids remembered for idempotency (a bounded window: redeliveries arrive close together)."""


def _answer(future: Future[ReloadResult], result: ReloadResult) -> None:
    """Resolve a running request's future; never raises (the worker thread must outlive every caller)."""
    try:
        future.set_result(result)
    except InvalidStateError:  # already resolved or cancelled: nobody waits for this answer
        logger.debug("reload answer %s dropped: its future was %s", result.result, future)


# --- the worker --------------------------------------------------------------------------------------


@dataclass
class _Item:
    request: ReloadRequest
    future: Future[ReloadResult]


class StatusSink(Protocol):
    """What the reloader publishes statuses to (``consumer.kafka.status.StatusPublisher`` has this shape)."""

    def publish(self, result: str, *, model_version: str | None, event_id: str | None = None,
                detail: str | None = None, load_seconds: float | None = None,
                model_name: str | None = None) -> ScorerStatus | None: ...


class Reloader(Worker):
    """One worker thread; ``request(...)`` returns a Future of the ReloadResult."""

    def __init__(self, settings: Settings, state: ScorerState, *, loader: ModelLoader | None = None,
                 status: StatusSink | None = None) -> None:
        super().__init__("model-reloader")
        self.settings = settings
        self.state = state
        self._loader = loader
        self.status = status
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self.rolled_back_from: str | None = None

    @property
    def loader(self) -> ModelLoader:
        if self._loader is None:
            self._loader = ModelLoader(self.settings)
        return self._loader

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the request in progress, drop the rest (their futures get an 'ignored' result)."""
        super().stop(timeout)

    def _wake(self) -> None:
        self._queue.put(None)

    # --- asking -------------------------------------------------------------------------------------
    def request(self, version: str | None = None, alias: str | None = None, stage: str | None = None,
                event_id: str | None = None, kind: ReloadKind = "reload", source: str = "api",
                model_uri: str | None = None) -> Future[ReloadResult]:
        """Queue a reload; the Future resolves to its ReloadResult (never raises for a failed load).

        :param version: load exactly this version (a pin), or the version an alias event names.
        :param alias/stage: resolve this alias / stage in the registry (the registry's answer wins).
        :param kind: ``reload``, ``promoted`` or ``rollback`` (to ``version``, or the previous handle).
        :param model_uri: a ``models:/name/N`` URI stands for version N when no version is given.
        """
        if version is None:
            version = version_from_uri(model_uri)
        return self.submit(ReloadRequest(kind=kind, version=None if version is None else str(version),
                                         alias=alias, stage=stage, event_id=event_id, source=source))

    def refresh_shadow(self, source: str = "api") -> Future[ReloadResult]:
        """Load the shadow alias's current version as the shadow model (if it changed)."""
        return self.submit(ReloadRequest(kind="reload", alias=self.settings.scorer.shadow_alias, source=source,
                                         slot="shadow"))

    def on_event(self, event: ModelUpdateEvent) -> Future[ReloadResult]:
        """ControlListener callback: one ModelUpdateEvent -> one request (a canary event is the canary worker's)."""
        if event.type == "canary":
            done: Future[ReloadResult] = Future()
            done.set_result(ReloadResult("ignored", event.version, "a canary event: the canary worker's",
                                         event.event_id))
            return done
        return self.request(version=event.version, alias=event.alias, stage=event.stage, event_id=event.event_id,
                            kind=event.type, source=event.source or "event", model_uri=event.model_uri)

    def submit(self, request: ReloadRequest) -> Future[ReloadResult]:
        future: Future[ReloadResult] = Future()
        if self.stopping:
            future.set_result(ReloadResult("ignored", request.version, "the scorer is stopping",
                                           request.event_id))
            return future
        self._queue.put(_Item(request, future))
        return future

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    # --- the worker ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            # Running from here on: a caller that gives up now (an HTTP timeout, a client gone) cannot cancel the
            # future any more. One that gave up while the request was queued has cancelled it: skip it.
            if not item.future.set_running_or_notify_cancel():
                logger.info("reload %s skipped: its caller gave up before it started", item.request.label())
                continue
            if self.stopping:
                _answer(item.future, ReloadResult("ignored", item.request.version, "the scorer is stopping",
                                                  item.request.event_id))
                continue
            _answer(item.future, self._attempt(item.request))
        # Anything still queued after the sentinel is answered, so no caller waits forever.
        while True:
            try:
                leftover = self._queue.get_nowait()
            except queue.Empty:
                break
            if leftover is not None and leftover.future.set_running_or_notify_cancel():
                _answer(leftover.future, ReloadResult("ignored", leftover.request.version,
                                                      "the scorer is stopping", leftover.request.event_id))

    def _attempt(self, request: ReloadRequest) -> ReloadResult:
        """``_handle``, with a bug in it (or in reporting) turned into a failed result: the worker lives on."""
        try:
            return self._handle(request)
        except Exception as exc:  # a bug, not a bad model: keep the worker alive and say so
            logger.exception("reload %s crashed", request.label())
            result = ReloadResult("failed", request.version, f"internal error: {exc}", request.event_id,
                                  reason="internal_error")
            try:
                self._report(request, result, slot="champion")
            except Exception:
                logger.exception("reporting the crashed reload %s failed too", request.label())
            return result

    def _remember(self, event_id: str | None) -> None:
        if event_id is None:
            return
        self._seen[event_id] = None
        while len(self._seen) > SEEN_EVENT_IDS:
            self._seen.popitem(last=False)

    def _handle(self, request: ReloadRequest) -> ReloadResult:
        started = time.perf_counter()
        model = self.settings.model
        scorer = self.settings.scorer
        seen = request.event_id is not None and request.event_id in self._seen
        self._remember(request.event_id)
        if seen:
            result = ReloadResult("ignored", request.version, f"duplicate event {request.event_id}",
                                  request.event_id)
            return self._report(request, result, slot="champion")
        # A rollback naming an alias or stage (the admin API's: it moved that alias first) concerns the scorers
        # serving it, as a promotion would; a bare rollback event concerns every scorer.
        scoped = request if request.kind != "rollback" or (request.alias is None and request.stage is None) \
            else replace(request, kind="promoted")
        slot = classify(scoped, served_alias=None if model.version else model.alias,
                        served_stage=None if model.version or model.alias else model.stage,
                        served_version=model.version,
                        shadow_alias=scorer.shadow_alias if scorer.shadow_enabled else None)
        if slot is None:
            served = f"v{model.version}" if model.version else (f"@{model.alias}" if model.alias
                                                                 else f"stage {model.stage}")
            result = ReloadResult("ignored", request.version,
                                  f"{request.label()}: this scorer serves {served}", request.event_id)
            return self._report(request, result, slot="champion")
        if slot == "shadow":
            return self._handle_shadow(request, started)
        current = self.state.models.current
        if request.kind == "rollback":
            decision = rollback_decision(request, loaded=current, previous=self.state.models.previous)
            return self._execute(request, decision, None, started, rollback=True)
        early = precheck(request, seen=False, loaded=current)
        if early is not None:
            return self._report(request, ReloadResult("ignored", early.version, early.reason, request.event_id),
                                slot="champion")
        try:
            resolved = self._resolve(request)
        except ModelError as exc:
            self.state.set_mlflow_reachable(self.loader.reachable())
            return self._fail(request, request.version, f"could not resolve {request.label()}: {exc}", started,
                              registry_down=isinstance(exc, MlflowUnavailable), reason=exc.reason)
        decision = decide(request, target=resolved.version, loaded=current, rolled_back_from=self.rolled_back_from)
        return self._execute(request, decision, resolved, started, rollback=False)

    def _resolve(self, request: ReloadRequest) -> ResolvedVersion:
        if request.pinned:
            return self.loader.resolve(version=request.version)
        if request.alias is not None:
            return self.loader.resolve(alias=request.alias)
        if request.stage is not None:
            return self.loader.resolve(stage=request.stage)
        return self.loader.resolve_configured()

    def _execute(self, request: ReloadRequest, decision: Decision, resolved: ResolvedVersion | None,
                 started: float, *, rollback: bool) -> ReloadResult:
        current = self.state.models.current
        if decision.action == "ignore":
            return self._report(request, ReloadResult("ignored", decision.version, decision.reason,
                                                      request.event_id), slot="champion")
        if decision.action == "fail":
            return self._fail(request, decision.version, decision.reason, started, reason="nothing_to_roll_back")
        if decision.action == "swap_previous":
            previous = self.state.models.previous
            assert previous is not None
            handle = previous
        else:
            try:
                if resolved is None:  # a rollback to a version not in memory
                    resolved = self.loader.resolve(version=decision.version)
                handle = self.loader.load(resolved)  # downloads, loads and checks; raises on any problem
            except ModelError as exc:
                return self._fail(request, decision.version, str(exc), started,
                                  registry_down=isinstance(exc, MlflowUnavailable), reason=exc.reason)
        self.state.on_model_loaded(handle)
        if rollback and current is not None:
            self.rolled_back_from = self._held_against_the_registry(current.version)
        elif request.source != "poll" or (self.rolled_back_from is not None
                                          and handle.version != self.rolled_back_from):
            self.rolled_back_from = None
        self.state.set_mlflow_reachable(True)
        self.state.last_reload_failure = None
        seconds = time.perf_counter() - started
        was = f" (was v{current.version})" if current is not None else ""
        logger.info("model %s now serving%s: %s in %.2fs", handle.label, was, request.label(), seconds)
        result = ReloadResult("loaded", handle.version, f"{decision.reason}{was}", request.event_id, seconds)
        return self._report(request, result, slot="champion")

    def _held_against_the_registry(self, rolled_back_from: str) -> str | None:
        """After a rollback: the version to hold the poll off, or None when the registry agrees already.

        The admin API's rollback moves the alias before it announces, so the registry resolves to the version
        rolled back to and nothing needs holding: a later move of the alias, even back to ``rolled_back_from``,
        is an operator's decision the poll must follow. A bare rollback event moved nothing: while the
        registry still points at ``rolled_back_from``, the poll must not undo the rollback.
        """
        try:
            resolved = self.loader.resolve_configured()
        except ModelError:
            return rolled_back_from  # the registry cannot say: keep the rollback
        return rolled_back_from if resolved.version == rolled_back_from else None

    def registry_moved_on(self, resolved_version: str) -> None:
        """The poll found the configured target on ``resolved_version``: a rollback held off the version it rolled
        back from only while the registry pointed there."""
        if self.rolled_back_from is not None and resolved_version != self.rolled_back_from:
            logger.info("registry moved on from v%s: the rollback no longer holds the poll off", self.rolled_back_from)
            self.rolled_back_from = None

    def _fail(self, request: ReloadRequest, version: str | None, why: str, started: float, *,
              registry_down: bool = False, reason: str | None = None) -> ReloadResult:
        current = self.state.models.current
        keeps = f"; still serving {current.label}" if current is not None else ""
        logger.error("reload %s failed (%s): %s%s", request.label(), reason, why, keeps)
        result = ReloadResult("failed", version, f"{why}{keeps}", request.event_id,
                              time.perf_counter() - started, reason=reason)
        # The poll backs off a version that failed to load (a corrupt artifact stays corrupt). An unreachable
        # registry says nothing about the version: once MLflow is back, the next poll must load it.
        if registry_down:
            self.state.set_mlflow_reachable(False)
        else:
            self.state.last_reload_failure = result
        return self._report(request, result, slot="champion")

    def _report(self, request: ReloadRequest, result: ReloadResult, *, slot: Slot) -> ReloadResult:
        if result.result == "ignored":
            logger.info("reload %s ignored: %s", request.label(), result.detail)
        self.state.record_reload(result)
        # The fleet view shows what each instance runs and its last real load: a no-op (duplicate event, a poll
        # that finds the version already loaded) is logged and counted, not published over it.
        if self.status is not None and result.result != "ignored":
            current = self.state.models.current
            # The status schema has no reason field: a failure's detail starts with its reason code.
            detail = f"{result.reason}: {result.detail}" if result.reason else result.detail
            self.status.publish(result.result, model_version=current.version if current else None,
                                event_id=result.event_id, detail=detail, load_seconds=result.load_seconds,
                                model_name=current.name if current else None)
        return result

    # --- shadow -------------------------------------------------------------------------------------
    def _handle_shadow(self, request: ReloadRequest, started: float) -> ReloadResult:
        """Load the shadow alias's version as the shadow model. Never touches the champion."""
        alias = self.settings.scorer.shadow_alias
        shadow = self.state.models.shadow
        target: str | None = request.version
        try:
            resolved = self.loader.resolve(alias=alias)
            target = resolved.version
            if shadow is not None and shadow.version == resolved.version:
                result = ReloadResult("ignored", resolved.version, f"shadow v{resolved.version} already loaded",
                                      request.event_id)
            else:
                handle = self.loader.load(resolved)
                self.state.models.set_shadow(handle)
                result = ReloadResult("loaded", handle.version, f"shadow @{alias} v{handle.version}",
                                      request.event_id, time.perf_counter() - started)
                logger.info("shadow model %s loaded in %.2fs", handle.label, result.load_seconds or 0.0)
        except ModelError as exc:
            keeps = f"; shadow stays v{shadow.version}" if shadow is not None else "; no shadow model"
            result = ReloadResult("failed", target, f"shadow @{alias}: {exc}{keeps}", request.event_id,
                                  time.perf_counter() - started, reason=exc.reason)
            logger.warning("shadow load failed: %s", result.detail)
        # Shadow loads are reported beside, not as, the champion's reloads: the fleet view shows champions.
        serving = self.state.models.shadow
        self.state.shadow_load = ShadowLoad(result, alias, serving.version if serving is not None else None)
        return result
