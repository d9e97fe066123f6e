"""The one shape of every background thread of the scorer (reloader, registry poll, control listener, shadow,
drift, prediction logger): a named daemon thread, started once, stopped and joined, and asked whether it still
lives, so /health can say which worker died."""

from __future__ import annotations

import logging
import threading
from typing import Self

logger = logging.getLogger(__name__)


class Worker:
    """Subclasses implement ``_run`` (loop until ``stopping``, or until the sentinel ``_wake`` queued)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Start the thread (once; a second call does nothing)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish, wake it, and wait up to ``timeout`` seconds for it (0: do not wait)."""
        self._stop_requested.set()
        self._wake()
        if timeout > 0:
            self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has ended (or never started)."""
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%s did not stop within %.0fs", self.name, timeout or 0)
        return not self.alive

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set()

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def alive(self) -> bool:
        """The thread runs now: False before ``start()``, after it ended, or when it died."""
        return self._thread is not None and self._thread.is_alive()

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until ``stop()``; True when stopping."""
        return self._stop_requested.wait(seconds)

    def _wake(self) -> None:
        """Unblock ``_run`` after a stop request; workers that block on a queue put their sentinel here."""

    def _run(self) -> None:
        raise NotImplementedError
