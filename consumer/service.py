"""One ``housing-scorer`` process: the scoring loop on its own thread, the admin API on the asyncio loop.

Start-up order: settings -> logging -> model threads -> control topic end offsets -> model (registry, else
fallback) -> hot reload (status publisher, reloader, control listener from those offsets, registry poll, shadow
monitor, status heartbeat) -> scoring thread -> admin API. A fatal error on the scoring thread stops the process
with exit code 2 and a message saying what to fix; SIGTERM/SIGINT finish the batch in flight, commit it, close
the clients, remove this instance from the fleet view and exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from config.mlflow import mlflow_answers
from config.runtime import limit_thread_pools
from config.settings import Settings
from consumer.core.handle import ModelHandle
from consumer.core.scoring import BatchHook
from consumer.errors import ScorerFatalError
from consumer.kafka.control import ControlListener
from consumer.kafka.loop import ScoringLoop
from consumer.kafka.preflight import check_kafka_topics
from consumer.kafka.status import StatusHeartbeat, StatusPublisher
from consumer.kafka.topic_reader import control_start_offsets
from consumer.models.canary import CanaryWorker
from consumer.models.loader import ModelLoader, load_startup_model
from consumer.models.poller import RegistryPoller
from consumer.models.reloader import Reloader
from consumer.monitoring.hooks import build_monitoring_hooks
from consumer.monitoring.shadow import ShadowMonitor
from consumer.state import ReloadResult, ScorerState
from schemas.control import ModelUpdateEvent

logger = logging.getLogger(__name__)

EXIT_FATAL = 2


class Stoppable(Protocol):
    """A started helper of the service (worker threads, the status publisher): stopped in reverse start order."""

    def stop(self) -> None: ...


@dataclass(frozen=True)
class AdminApp:
    """The admin API as the service serves it: the aiohttp application and its TLS context (None: plain HTTP)."""

    app: web.Application
    ssl_context: ssl.SSLContext | None = None


AppFactory = Callable[["ScorerService"], AdminApp]



class ScorerService:
    """Owns the state, the scoring thread and (optionally) the admin API of one scorer."""

    def __init__(self, settings: Settings, *, model: ModelHandle | None = None,
                 extra_hooks: tuple[BatchHook, ...] = ()) -> None:
        self.settings = settings
        self.state = ScorerState(settings)
        self._initial_model = model
        self._extra_hooks = extra_hooks
        self.loop: ScoringLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.components: list[Stoppable] = []
        """Started helpers with a ``stop()`` (control listener, pollers, loggers), stopped in reverse order."""
        self.on_stop: list[Callable[[], None]] = []
        self.reloader: Reloader | None = None
        """Hot reload: ``service.reloader.request(...)`` (admin API); set by ``start()``."""
        self.listener: ControlListener | None = None
        self.poller: RegistryPoller | None = None
        self.canary: CanaryWorker | None = None
        self._stop_signalled = threading.Event()

    def catch_stop_signals(self) -> None:
        """From now until ``run_forever`` takes over, SIGTERM/SIGINT ask for a stop instead of killing the
        process: a pod deleted while its model loads still stops cleanly (batch committed, tombstone sent) once
        started. A second signal while starting gives up at once (Ctrl-C twice on a start that hangs)."""
        def requested(signum: int, _frame: object) -> None:
            if self._stop_signalled.is_set():
                raise KeyboardInterrupt
            logger.info("%s while starting: stopping once started", signal.Signals(signum).name)
            self._stop_signalled.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, requested)

    # --- start / stop --------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the model and start the scoring thread. Raises ModelUnavailable / ScorerFatalError."""
        limit_thread_pools(self.settings.scorer.model_threads)
        check_kafka_topics(self.settings)  # before anything waits on Kafka: a wrong address fails in seconds
        self.state.kafka_connected = True
        # The control topic's end, taken BEFORE the registry is asked: an event published while this instance
        # resolves and loads its model is then read by the listener, not missed.
        control_offsets = control_start_offsets(self.settings)
        loader = ModelLoader(self.settings) if self.settings.mlflow.enabled else None
        handle = self._initial_model or load_startup_model(self.settings, loader)
        self.state.on_model_loaded(handle)
        self.state.set_mlflow_reachable(handle.source == "registry" or mlflow_answers(
            self.settings.mlflow.tracking_uri, 3.0, local_store_answers=True))
        self.state.record_reload(ReloadResult("started", handle.version, detail=handle.label,
                                              load_seconds=handle.load_seconds))
        logger.info("model %s loaded in %.2fs from %s", handle.label, handle.load_seconds, handle.uri)
        hooks = self._start_control_plane(handle, loader, control_offsets)
        # Drift monitor and prediction logger (consumer/monitoring/): their work runs on their own threads.
        monitoring = build_monitoring_hooks(self.settings, self.state)
        self.components.extend(monitoring)
        self.state.workers.extend(monitoring)
        self.loop = ScoringLoop(self.settings, self.state, hooks=(*self._extra_hooks, *hooks, *monitoring))
        # MLflow, scikit-learn and pandas leave about a million long-lived objects; a full garbage collection
        # walking them all stalls every thread for tens of ms. Frozen, later collections skip them.
        gc.collect()
        gc.freeze()
        self._thread = threading.Thread(target=self._run_loop, name="scoring-loop", daemon=True)
        self._thread.start()

    def _start_control_plane(self, handle: ModelHandle, loader: ModelLoader | None,
                             control_offsets: list[Any] | None) -> list[BatchHook]:
        """Status publisher, reloader, control listener, registry poll and shadow monitor (hot reload)."""
        settings = self.settings
        status = StatusPublisher(settings)
        status.final_status = lambda: _final_status(self.state)
        self.components.append(status)
        self.reloader = Reloader(settings, self.state, loader=loader, status=status).start()
        self.components.append(self.reloader)
        self.state.workers.append(self.reloader)  # /health names any of these whose thread died
        hooks: list[BatchHook] = []
        if settings.scorer.shadow_enabled:
            monitor = ShadowMonitor(self.state, schema_registry_url=settings.schema_registry_url).start()
            self.components.append(monitor)
            self.state.workers.append(monitor)
            hooks.append(monitor.hook)
            if settings.mlflow.enabled:
                try:  # before the first batch, so shadow predictions start with it; a failure is reported only
                    self.reloader.refresh_shadow(source="start-up").result(timeout=60)
                except TimeoutError:
                    logger.warning("shadow model still loading after 60 s; scoring starts without it")
        on_event: Callable[[ModelUpdateEvent], object] = self.reloader.on_event
        if loader is not None:  # the canary follows the registry like the champion (consumer/models/canary.py)
            self.canary = CanaryWorker(settings, self.state, loader).start()
            self.components.append(self.canary)
            self.state.workers.append(self.canary)
            on_event = _both(self.reloader.on_event, self.canary.on_event)
        self.listener = ControlListener(settings, on_event, start_offsets=control_offsets).start()
        self.components.append(self.listener)
        self.state.workers.append(self.listener)
        if settings.mlflow.enabled:
            self.poller = RegistryPoller(settings, self.state, self.reloader, loader=loader).start()
            self.components.append(self.poller)
            self.state.workers.append(self.poller)
        status.publish("started", model_version=handle.version, detail=handle.label,
                       load_seconds=handle.load_seconds, model_name=handle.name)
        # Repeats the latest status: an instance that stops beating turns stale in /api/fleet (stopped first).
        heartbeat = StatusHeartbeat(status, settings.scorer.heartbeat_seconds).start()
        self.components.append(heartbeat)
        self.state.workers.append(heartbeat)
        return hooks

    def _run_loop(self) -> None:
        assert self.loop is not None
        try:
            self.loop.run()
        except ScorerFatalError as exc:
            self.state.fatal_error = str(exc)
            logger.critical("%s", exc)
        except Exception as exc:  # a bug: report it as fatal rather than leave a silent dead thread
            self.state.fatal_error = f"scoring loop crashed: {type(exc).__name__}: {exc}"
            logger.critical("scoring loop crashed", exc_info=True)
        finally:
            self._stopped.set()

    def stop(self, timeout: float | None = None) -> None:
        """Finish the batch in flight, commit, close. Safe to call twice."""
        timeout = timeout or self.settings.scorer.shutdown_timeout + 20
        # First nothing new may ask for a reload; then the batch in flight finishes (its hooks still run);
        # then the rest stops in reverse start order, so the monitors flush and the status publisher goes last
        # (a tombstone after a clean stop: the instance leaves the fleet view; after a fatal error, 'stopped').
        triggers: list[Stoppable] = [c for c in (self.listener, self.poller) if c is not None]
        for trigger in triggers:
            self._stop_component(trigger)
        if self.loop is not None:
            self.loop.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("scoring thread did not stop within %.0fs", timeout)
        for component in reversed(self.components):
            if component not in triggers:
                self._stop_component(component)
        self.components.clear()
        for callback in self.on_stop:
            try:
                callback()
            except Exception:
                logger.exception("on_stop callback failed")
        self.on_stop.clear()

    @staticmethod
    def _stop_component(component: Stoppable) -> None:
        try:
            component.stop()
        except Exception:
            logger.exception("stopping %r", component)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # --- the process ---------------------------------------------------------------------------------
    def run_forever(self, admin_app: AppFactory | None = None, *,
                    on_admin_listening: Callable[[str], None] | None = None) -> int:
        """Serve until a signal or a fatal error; returns the exit code.

        :param admin_app: builds the admin API's aiohttp application for this service (``consumer/__main__.py``
            hands in ``admin_api.app.create_app``: the scorer does not import the admin API); None: no API.
        :param on_admin_listening: called with the admin API's bound URL once it listens (with ``PORT=0`` the
            system picks the port: a worker of ``--workers N`` tells its parent this way).
        """
        return asyncio.run(self._serve(admin_app, on_admin_listening))

    async def _serve(self, admin_app: AppFactory | None, on_admin_listening: Callable[[str], None] | None) -> int:
        stop_requested = asyncio.Event()
        aio_loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            aio_loop.add_signal_handler(sig, stop_requested.set)
        if self._stop_signalled.is_set():  # signalled during start (catch_stop_signals)
            stop_requested.set()
        runner = None
        if admin_app is not None and self.settings.admin.enabled:
            runner, url = await self._start_admin_api(admin_app(self))
            if on_admin_listening is not None:
                on_admin_listening(url)
        stopped_task = asyncio.ensure_future(asyncio.to_thread(self._stopped.wait))
        signal_task = asyncio.ensure_future(stop_requested.wait())
        await asyncio.wait({stopped_task, signal_task}, return_when=asyncio.FIRST_COMPLETED)
        logger.info("stopping: %s", "signal" if stop_requested.is_set() else "scoring loop ended")
        await asyncio.to_thread(self.stop)
        self._stopped.set()
        for task in (stopped_task, signal_task):
            task.cancel()
        if runner is not None:
            await runner.cleanup()
        if self.state.fatal_error:
            return EXIT_FATAL
        return 0

    async def _start_admin_api(self, api: AdminApp) -> tuple[web.AppRunner, str]:
        """The started runner and the URL it listens on."""
        runner = web.AppRunner(api.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.admin.host, self.settings.admin.port, ssl_context=api.ssl_context)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            self.state.fatal_error = (f"admin API cannot listen on {self.settings.admin.host}:"
                                      f"{self.settings.admin.port}: {exc.strerror} (set PORT or --port)")
            self._stopped.set()
            raise ScorerFatalError(self.state.fatal_error) from exc
        # The bound port, not the setting: with PORT=0 the system picked it, and this line is how operators learn it.
        bound = [address[1] for address in runner.addresses if isinstance(address, tuple)]
        url = (f"{'https' if self.settings.admin.tls_cert else 'http'}://{self.settings.admin.host}:"
               f"{bound[0] if bound else self.settings.admin.port}")
        logger.info("admin API on %s", url)
        return runner, url


def _final_status(state: ScorerState) -> dict[str, Any] | None:
    """None after a clean stop (the publisher's tombstone removes this instance from the fleet view); after a fatal
    error, the fields of the ``stopped`` status that stays in the view, with the error."""
    if not state.fatal_error:
        return None
    current = state.models.current
    return {"model_version": current.version if current else None,
            "model_name": current.name if current else None,
            "detail": f"stopped after a fatal error: {state.fatal_error}"}


def _both(first: Callable[[ModelUpdateEvent], object],
          second: Callable[[ModelUpdateEvent], object]) -> Callable[[ModelUpdateEvent], object]:
    """One control-listener callback that hands each event to the reloader, then to the canary worker."""
    def handle(event: ModelUpdateEvent) -> object:
        try:
            return first(event)
        finally:
            second(event)
    return handle


def loader_for(settings: Settings) -> ModelLoader:
    return ModelLoader(settings)
