"""The restart policy of the workers' parent: pure, no processes, no clock of its own (times are handed in).

A worker that ends while the parent is not stopping is restarted after an exponential back-off (1 s, 2 s, 4 s,
... capped at 30 s); a worker that stayed up long enough starts the back-off afresh. A worker that exits with
the fatal exit code (2: a configuration or broker error that a restart cannot fix) is not restarted: the parent
stops the others and exits 2 with its message.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import NamedTuple

EXIT_FATAL = 2
"""The scorer's exit code for a fatal error (bad settings, broker or model unusable): restarting cannot help."""


class Restart(NamedTuple):
    """Start the worker again after ``delay`` seconds."""

    delay: float
    """Seconds to wait before the new process is started."""
    failures: int
    """Consecutive unexpected ends of this worker, this one included (1 for the first)."""


class StopAll(NamedTuple):
    """Stop every worker and exit the parent with ``exit_code``."""

    exit_code: int
    reason: str
    """What to tell the operator: which worker ended how."""


class Retire(NamedTuple):
    """The parent is stopping: this worker's end was asked for; do not start it again."""

    clean: bool
    """The worker exited 0, as a stop asks it to (or the SIGTERM ended it before it had started anything)."""


Decision = Restart | StopAll | Retire


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential back-off between restarts of one worker.

    :param initial_delay: seconds before the first restart.
    :param max_delay: the cap of the back-off.
    :param factor: each further consecutive failure multiplies the delay by this.
    :param stable_after: a worker that ran at least this many seconds before it ended counts as a first failure
        again (its back-off starts afresh).
    """

    initial_delay: float = 1.0
    max_delay: float = 30.0
    factor: float = 2.0
    stable_after: float = 60.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before restarting a worker that failed ``failures`` times in a row (1 = the first)."""
        if failures < 1:
            raise ValueError("failures counts from 1")
        # min() before the power: a worker failing for days must not overflow the float.
        exponent = min(failures - 1, 64)
        return min(self.max_delay, self.initial_delay * self.factor ** exponent)

    def decide(self, exit_code: int, *, stopping: bool, ran_for: float, failures_before: int,
               index: int, message: str = "") -> Decision:
        """What to do about worker ``index`` that ended with ``exit_code`` after running ``ran_for`` seconds.

        :param stopping: the parent is stopping (a signal): every end is expected.
        :param failures_before: the worker's consecutive failures before this end.
        :param message: the worker's last words (its last stderr line), for the fatal reason.
        """
        if stopping:
            # Killed by the forwarded SIGTERM itself: it came before the worker caught stop signals (still importing),
            # so before it touched Kafka; nothing was in flight.
            return Retire(clean=exit_code in (0, -signal.SIGTERM))
        if exit_code == EXIT_FATAL:
            reason = f"worker {index} exited {EXIT_FATAL} (fatal, not restarted)"
            return StopAll(EXIT_FATAL, f"{reason}: {message}" if message else reason)
        failures = 1 if ran_for >= self.stable_after else failures_before + 1
        return Restart(self.delay(failures), failures)


def describe_exit(exit_code: int) -> str:
    """``exit 1`` or ``killed by SIGKILL`` (asyncio reports a signal as a negative return code)."""
    if exit_code < 0:
        try:
            return f"killed by {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"killed by signal {-exit_code}"
    return f"exit {exit_code}"
