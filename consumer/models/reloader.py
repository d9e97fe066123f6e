"""Hot reload: one worker thread that resolves, loads, checks and swaps models, one request at a time.

Requests come from control-topic events, the registry poll and the admin API. Each becomes one
``ReloadResult`` (loaded / failed / ignored), recorded in the state (metrics, /health) and published as a
ScorerStatus. Loading and checking happen on the worker thread; the scoring thread only ever sees a
complete, checked handle, swapped in between two batches. A failed load keeps the current model.

What an event means (the decisions are pure functions below, unit-tested):

- Duplicates: an event id already handled is ignored.
- Alias/stage events (``promoted``/``reload`` naming an alias or stage): the registry is the truth. The
  scorer resolves the alias *now* and serves what it points at. An event whose version is older than the
  loaded one while the alias still points at the loaded version is stale (a replay, or a promotion that a
  later one superseded) and is ignored. If an operator deliberately moves the alias back to an older version,
  the registry says so and the scorer follows, exactly as the registry poll would.
- Version pins (a version with no alias or stage, from the admin API or an operator): load exactly that
  version, older or not; the operator asked for it.
- Rollback: back to the version named, or to the previous handle (kept in memory, so no download). A rollback
  sticks: the registry poll will not move the scorer forward to the version it rolled back from while the
  alias still points at it; any later event, or the alias moving to another version, ends that.
- Events for an alias the scorer does not serve are ignored; the shadow alias (``SHADOW_ALIAS``, when shadow
  scoring is on) refreshes the shadow model instead of the champion.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.errors import MlflowUnavailable, ModelError
from consumer.models.loader import ModelLoader, ResolvedVersion
from consumer.state import ReloadResult, ScorerState, ShadowLoad
from consumer.workers import Worker
from schemas.versions import version_from_uri, version_number

logger = logging.getLogger(__name__)

ReloadKind = Literal["reload", "promoted", "rollback"]
Slot = Literal["champion", "shadow"]
Action = Literal["load", "ignore", "swap_previous", "fail"]
SEEN_EVENT_IDS = 1000
"""Event ids remembered for idempotency (a bounded window: redeliveries arrive close together)."""


@dataclass(frozen=True)
class ReloadRequest:
    """One thing the worker is asked to do."""

    kind: ReloadKind = "reload"
    version: str | None = None
    alias: str | None = None
    stage: str | None = None
    event_id: str | None = None
    source: str = "api"
    """Who asked: an event's source (training, admin_api, webhook), ``poll`` or ``api``."""
    slot: Slot | None = None
    """Force the slot (``shadow`` for shadow refreshes); None: decided by ``classify``."""

    @property
    def pinned(self) -> bool:
        """An explicit version and nothing else: load exactly that version."""
        return self.version is not None and self.alias is None and self.stage is None

    def describe(self) -> str:
        what = f"v{self.version}" if self.version else ""
        via = f"@{self.alias}" if self.alias else (f"stage {self.stage}" if self.stage else "")
        return " ".join(p for p in (self.kind, what, via, f"from {self.source}") if p)


@dataclass(frozen=True)
class Decision:
    """What to do with a request, and why (the why becomes the ReloadResult detail)."""

    action: Action
    reason: str
    version: str | None = None




# --- pure decisions ----------------------------------------------------------------------------------


def classify(request: ReloadRequest, *, served_alias: str | None, served_stage: str | None,
             served_version: str | None, shadow_alias: str | None) -> Slot | None:
    """Which model a request concerns: the champion, the shadow, or neither (None: not served here).

    :param served_alias/served_stage/served_version: what this scorer is configured to serve.
    :param shadow_alias: the shadow alias when shadow scoring is on, else None.
    """
    if request.slot is not None:
        return request.slot
    if request.kind == "rollback" or request.pinned:
        return "champion"
    if request.alias is not None:
        if served_version is None and request.alias == served_alias:
            return "champion"
        if shadow_alias is not None and request.alias == shadow_alias:
            return "shadow"
        return None
    if request.stage is not None:
        if served_version is None and served_alias is None and request.stage == served_stage:
            return "champion"
        return None
    return "champion"  # a bare reload: resolve what the settings ask for


def precheck(request: ReloadRequest, *, seen: bool, loaded: ModelHandle | None) -> Decision | None:
    """Decisions that need no registry call: duplicates and versions already loaded; None: go on."""
    if seen:
        return Decision("ignore", f"duplicate event {request.event_id}")
    if (request.kind != "rollback" and request.version is not None and loaded is not None
            and loaded.source == "registry" and request.version == loaded.version):
        return Decision("ignore", f"v{request.version} is already loaded", request.version)
    return None


def decide(request: ReloadRequest, *, target: str, loaded: ModelHandle | None,
           rolled_back_from: str | None) -> Decision:
    """After resolution: load ``target`` unless it is what already serves (or a rollback holds it off)."""
    if loaded is not None and loaded.source == "registry" and target == loaded.version:
        if request.version is not None and version_number(request.version) < loaded.version_number:
            return Decision("ignore", f"stale event: it names v{request.version}, older than the loaded "
                                      f"v{loaded.version}, and the registry still points at v{loaded.version}",
                            request.version)
        return Decision("ignore", f"v{target} is already loaded", target)
    if request.source == "poll" and rolled_back_from is not None and target == rolled_back_from:
        return Decision("ignore", f"rolled back from v{target}: waiting for the alias to move on", target)
    return Decision("load", f"load v{target}", target)


def rollback_decision(request: ReloadRequest, *, loaded: ModelHandle | None,
                      previous: ModelHandle | None) -> Decision:
    """Rollback: to the named version, else to the previous handle."""
    if request.version is not None:
        if loaded is not None and loaded.version == request.version and loaded.source == "registry":
            return Decision("ignore", f"already on v{request.version}", request.version)
        if previous is not None and previous.version == request.version and previous.source == "registry":
            return Decision("swap_previous", f"roll back to v{request.version}", request.version)
        return Decision("load", f"roll back to v{request.version}", request.version)
    if previous is None:
        return Decision("fail", "nothing to roll back to: no previous version in this process")
    return Decision("swap_previous", f"roll back to v{previous.version}", previous.version)


def poll_wants_reload(resolved_version: str, current: ModelHandle | None, rolled_back_from: str | None) -> bool:
    """Should the registry poll ask for a reload? (Different version, or still on the fallback file.)"""
    if current is None or current.source != "registry":
        return True
    if resolved_version == current.version:
        return False
    return resolved_version != rolled_back_from


# --- the worker --------------------------------------------------------------------------------------


@dataclass
class _Item:
    request: ReloadRequest
    future: Future[ReloadResult]


class StatusSink(Protocol):
    """What the reloader publishes statuses to (``consumer.kafka.control.StatusPublisher`` has this shape)."""

    def publish(self, result: str, *, model_version: str | None, event_id: str | None = None,
                detail: str | None = None, load_seconds: float | None = None,
                model_name: str | None = None) -> dict[str, Any] | None: ...


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

    def on_event(self, event: dict[str, Any]) -> Future[ReloadResult]:
        """ControlListener callback: one ModelUpdateEvent -> one request."""
        return self.request(version=event.get("version"), alias=event.get("alias"), stage=event.get("stage"),
                            event_id=event.get("event_id"), kind=event.get("type") or "reload",
                            source=event.get("source") or "event", model_uri=event.get("model_uri"))

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
            if self.stopping:
                item.future.set_result(ReloadResult("ignored", item.request.version, "the scorer is stopping",
                                                    item.request.event_id))
                continue
            try:
                result = self._handle(item.request)
            except Exception as exc:  # a bug, not a bad model: keep the worker alive and say so
                logger.exception("reload %s crashed", item.request.describe())
                result = ReloadResult("failed", item.request.version, f"internal error: {exc}",
                                      item.request.event_id)
                self._report(item.request, result, slot="champion")
            item.future.set_result(result)
        # Anything still queued after the sentinel is answered, so no caller waits forever.
        while True:
            try:
                leftover = self._queue.get_nowait()
            except queue.Empty:
                break
            if leftover is not None:
                leftover.future.set_result(ReloadResult("ignored", leftover.request.version,
                                                        "the scorer is stopping", leftover.request.event_id))

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
        slot = classify(request, served_alias=None if model.version else model.alias,
                        served_stage=None if model.version or model.alias else model.stage,
                        served_version=model.version,
                        shadow_alias=scorer.shadow_alias if scorer.shadow_enabled else None)
        if slot is None:
            served = f"v{model.version}" if model.version else (f"@{model.alias}" if model.alias
                                                                 else f"stage {model.stage}")
            result = ReloadResult("ignored", request.version,
                                  f"{request.describe()}: this scorer serves {served}", request.event_id)
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
            return self._fail(request, request.version, f"could not resolve {request.describe()}: {exc}", started,
                              registry_down=isinstance(exc, MlflowUnavailable))
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
            return self._fail(request, decision.version, decision.reason, started)
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
                                  registry_down=isinstance(exc, MlflowUnavailable))
        self.state.on_model_loaded(handle)
        if rollback and current is not None:
            self.rolled_back_from = current.version
        elif request.source != "poll" or (self.rolled_back_from is not None
                                          and handle.version != self.rolled_back_from):
            self.rolled_back_from = None
        self.state.set_mlflow_reachable(True)
        self.state.last_reload_failure = None
        seconds = time.perf_counter() - started
        was = f" (was v{current.version})" if current is not None else ""
        logger.info("model %s now serving%s: %s in %.2fs", handle.label, was, request.describe(), seconds)
        result = ReloadResult("loaded", handle.version, f"{decision.reason}{was}", request.event_id, seconds)
        return self._report(request, result, slot="champion")

    def _fail(self, request: ReloadRequest, version: str | None, why: str, started: float, *,
              registry_down: bool = False) -> ReloadResult:
        current = self.state.models.current
        keeps = f"; still serving {current.label}" if current is not None else ""
        logger.error("reload %s failed: %s%s", request.describe(), why, keeps)
        result = ReloadResult("failed", version, f"{why}{keeps}", request.event_id,
                              time.perf_counter() - started)
        # The poll backs off a version that failed to load (a corrupt artifact stays corrupt). An unreachable
        # registry says nothing about the version: once MLflow is back, the next poll must load it.
        if registry_down:
            self.state.set_mlflow_reachable(False)
        else:
            self.state.last_reload_failure = result
        return self._report(request, result, slot="champion")

    def _report(self, request: ReloadRequest, result: ReloadResult, *, slot: Slot) -> ReloadResult:
        if result.result == "ignored":
            logger.info("reload %s ignored: %s", request.describe(), result.detail)
        self.state.record_reload(result)
        # The fleet view shows what each instance runs and its last real load: a no-op (duplicate event, a poll
        # that finds the version already loaded) is logged and counted, not published over it.
        if self.status is not None and result.result != "ignored":
            current = self.state.models.current
            self.status.publish(result.result, model_version=current.version if current else None,
                                event_id=result.event_id, detail=result.detail, load_seconds=result.load_seconds,
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
                                  time.perf_counter() - started)
            logger.warning("shadow load failed: %s", result.detail)
        # Shadow loads are reported beside, not as, the champion's reloads: the fleet view shows champions.
        serving = self.state.models.shadow
        self.state.shadow_load = ShadowLoad(result, alias, serving.version if serving is not None else None)
        return result
