"""The parent of ``housing-scorer --workers N``: starts the N worker processes, forwards a stop to them, restarts
one that ends unexpectedly (``policy.RestartPolicy``), and serves the one admin API (``http``).

Each worker is ``python -m consumer`` with the parent's own arguments plus ``--instance-id <id>-<n>`` (stable
across its restarts: its transactional.id is the same, so a restarted worker fences the zombie of the one it
replaces) and, when the parent serves the admin API, a loopback admin API of its own that the parent reaches.
Workers run in a process group of their own: Ctrl-C in a terminal reaches the parent only, which forwards one
SIGTERM to each (a second signal would make a starting worker give up instead of stopping cleanly).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consumer.supervisor.metrics import SupervisorMetrics
from consumer.supervisor.policy import Restart, RestartPolicy, Retire, StopAll, describe_exit
from consumer.supervisor.worker import read_report

logger = logging.getLogger(__name__)

STDERR_LINE_LIMIT = 1 << 20
TAIL_LINES = 40


@dataclass
class WorkerProcess:
    """One worker slot: its stable identity and the process that currently fills it."""

    index: int
    instance_id: str
    command: list[str]
    """The full command line (``sys.executable -m consumer ...``)."""
    report_path: Path | None
    """Where the worker writes its admin API's address (None: no admin API, the parent serves none)."""
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    failures: int = 0
    """Consecutive unexpected ends (reset by a run longer than the policy's ``stable_after``)."""
    restarts: int = 0
    state: str = "new"
    """new, running, restarting, stopped, failed."""
    last_exit: int | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    reported_url: str | None = None
    """The current process's admin API as it reported it (None until then, and again at each start)."""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def admin_url(self) -> str | None:
        """The worker's loopback admin API, once its current process reported it."""
        if self.reported_url is None and self.running and self.report_path is not None and self.process is not None:
            report = read_report(self.report_path)
            if report and report.get("pid") == self.process.pid and isinstance(report.get("url"), str):
                self.reported_url = str(report["url"])
        return self.reported_url if self.running else None

    def last_words(self) -> str:
        """The worker's own message about why it stopped ("housing-scorer: ..."), else its last stderr line."""
        for line in reversed(self.tail):
            if line.startswith("housing-scorer:"):
                return line
        return self.tail[-1] if self.tail else ""

    def view(self) -> dict[str, object]:
        return {"worker": self.index, "instance_id": self.instance_id, "state": self.state,
                "pid": self.process.pid if self.running and self.process else None,
                "restarts": self.restarts, "last_exit": self.last_exit, "admin_url": self.admin_url}


ServeFactory = Callable[["Supervisor"], Awaitable[Callable[[], Awaitable[None]]]]
"""Starts the parent's admin API for a supervisor; returns the coroutine function that stops it."""


class Supervisor:
    """Runs the workers until a stop signal or a fatal worker end; ``run`` returns the parent's exit code.

    :param workers: the worker slots.
    :param policy: when and after how long a worker is started again.
    :param stop_timeout: seconds the workers get to stop cleanly after the SIGTERM; then they are killed.
    :param env: the workers' environment (default: the parent's).
    """

    def __init__(self, workers: Sequence[WorkerProcess], *, policy: RestartPolicy | None = None,
                 stop_timeout: float = 60.0, env: dict[str, str] | None = None) -> None:
        self.workers = list(workers)
        self.policy = policy or RestartPolicy()
        self.stop_timeout = stop_timeout
        self.env = env
        self.metrics = SupervisorMetrics(len(self.workers))
        self._stopping: asyncio.Event | None = None
        self._fatal: StopAll | None = None
        self._unclean: list[str] = []

    @property
    def fatal_reason(self) -> str | None:
        """Why the parent stopped everything (a worker's fatal end, the admin API not starting); None otherwise."""
        return self._fatal.reason if self._fatal else None

    @property
    def stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    def request_stop(self) -> None:
        if self._stopping is not None and not self._stopping.is_set():
            logger.info("stopping %d workers", len(self.workers))
            self._stopping.set()
            for worker in self.workers:
                self._signal(worker, signal.SIGTERM)

    def run(self, serve: ServeFactory | None = None) -> int:
        """Start the workers (and ``serve``, the admin API), supervise them until SIGTERM/SIGINT or a fatal end."""
        return asyncio.run(self.supervise(serve))

    async def supervise(self, serve: ServeFactory | None = None, *, catch_signals: bool = True) -> int:
        """``run`` on the running event loop; ``catch_signals=False`` leaves the signals alone (tests call
        ``request_stop``). Returns the exit code: 0 after a clean stop, 2 after a fatal worker end, else 1."""
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT) if catch_signals else ():
            loop.add_signal_handler(sig, self.request_stop)
        tasks = [asyncio.create_task(self._supervise(worker), name=f"supervise-{worker.index}")
                 for worker in self.workers]
        stop_api: Callable[[], Awaitable[None]] | None = None
        try:
            if serve is not None:
                stop_api = await serve(self)
        except Exception as exc:
            logger.critical("the admin API cannot start: %s", exc)
            self._fatal = StopAll(2, f"the admin API cannot start: {exc}")
            self.request_stop()
        await self._stopping.wait()
        finished, pending = await asyncio.wait(tasks, timeout=self.stop_timeout)
        if pending:
            for worker in self.workers:
                if worker.running:
                    logger.error("worker %d did not stop within %.0fs: killed", worker.index, self.stop_timeout)
                    self._unclean.append(f"worker {worker.index} killed after {self.stop_timeout:.0f}s")
                    self._signal(worker, signal.SIGKILL)
            await asyncio.wait(pending, timeout=10)
        for task in finished:
            if not task.cancelled() and task.exception() is not None:
                logger.error("supervising a worker failed", exc_info=task.exception())
                self._unclean.append("supervisor task failed")
        if stop_api is not None:
            await stop_api()
        if self._fatal is not None:
            print(f"housing-scorer: {self._fatal.reason}", file=sys.stderr)
            return self._fatal.exit_code
        if self._unclean:
            print(f"housing-scorer: stopped, not cleanly: {'; '.join(self._unclean)}", file=sys.stderr)
            return 1
        logger.info("all workers stopped cleanly")
        return 0

    async def _supervise(self, worker: WorkerProcess) -> None:
        assert self._stopping is not None
        while not self.stopping:
            process = await self._start(worker)
            copier = asyncio.create_task(self._copy_stderr(worker, process))
            code = await process.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(copier, 5)
            ran_for = time.monotonic() - worker.started_at
            worker.last_exit = code
            self.metrics.worker_up.labels(str(worker.index)).set(0)
            decision = self.policy.decide(code, stopping=self.stopping, ran_for=ran_for,
                                          failures_before=worker.failures, index=worker.index,
                                          message=worker.last_words())
            if isinstance(decision, Retire):
                worker.state = "stopped"
                if not decision.clean:
                    self._unclean.append(f"worker {worker.index} {describe_exit(code)}")
                logger.info("worker %d (%s) stopped: %s", worker.index, worker.instance_id, describe_exit(code))
                return
            if isinstance(decision, StopAll):
                worker.state = "failed"
                logger.critical("%s", decision.reason)
                if self._fatal is None:
                    self._fatal = decision
                self.request_stop()
                return
            assert isinstance(decision, Restart)
            worker.failures = decision.failures
            worker.state = "restarting"
            how = describe_exit(code)
            logger.warning("worker %d (%s) ended unexpectedly (%s after %.1fs): restart %d in %.1fs",
                           worker.index, worker.instance_id, how, ran_for, worker.restarts + 1, decision.delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), decision.delay)
            if self.stopping:
                worker.state = "stopped"
                return
            worker.restarts += 1
            self.metrics.restarts.labels(str(worker.index), how).inc()

    async def _start(self, worker: WorkerProcess) -> asyncio.subprocess.Process:
        if worker.report_path is not None:
            with contextlib.suppress(FileNotFoundError):
                worker.report_path.unlink()
        worker.reported_url = None
        worker.tail.clear()
        worker.process = await asyncio.create_subprocess_exec(
            *worker.command, env=self.env, stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            limit=STDERR_LINE_LIMIT, process_group=0)
        worker.started_at = time.monotonic()
        worker.state = "running"
        self.metrics.worker_up.labels(str(worker.index)).set(1)
        logger.info("worker %d (%s) started: pid %d", worker.index, worker.instance_id, worker.process.pid)
        if self.stopping:  # the stop came while it was being created: it gets its SIGTERM too
            self._signal(worker, signal.SIGTERM)
        return worker.process

    @staticmethod
    async def _copy_stderr(worker: WorkerProcess, process: asyncio.subprocess.Process) -> None:
        """The worker's log lines go on to the parent's stderr, each after ``[worker n] `` (two workers' lines are
        alike otherwise); the last few are kept for its message."""
        stream = process.stderr
        assert stream is not None
        out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
        prefix = f"[worker {worker.index}] "
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the limit: pass on what there is
                line = await stream.read(STDERR_LINE_LIMIT)
            if not line:
                return
            worker.tail.append(line.decode("utf-8", "replace").rstrip("\n"))
            if out is not None:
                out.write(prefix.encode() + line)
                out.flush()
            else:
                sys.stderr.write(prefix + line.decode("utf-8", "replace"))

    @staticmethod
    def _signal(worker: WorkerProcess, sig: signal.Signals) -> None:
        if worker.running and worker.process is not None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(sig)


def worker_slots(count: int, *, base_argv: Sequence[str], instance_id: str, report_dir: Path | None,
                 python: str = sys.executable) -> list[WorkerProcess]:
    """The N worker slots: ``<instance_id>-<n>`` each, the parent's arguments plus the worker's own flags.

    :param base_argv: the parent's arguments without ``--workers``; the worker's flags come after them (the last
        occurrence of a flag wins), so ``--instance-id`` and the admin API's loopback address override the parent's.
    :param report_dir: where the workers report their admin API's address; None: the workers serve no admin API.
    """
    slots = []
    for index in range(count):
        worker_id = f"{instance_id}-{index}"
        own = ["--instance-id", worker_id, "--worker-index", str(index)]
        report = None
        if report_dir is not None:
            report = report_dir / f"worker-{index}.json"
            own += ["--host", "127.0.0.1", "--port", "0", "--worker-report", str(report)]
        slots.append(WorkerProcess(index=index, instance_id=worker_id,
                                   command=[python, "-m", "consumer", *base_argv, *own], report_path=report))
    return slots

