"""Process set-up every console script shares: logging and the size of the model's thread pools."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

from threadpoolctl import threadpool_limits

DEFAULT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
THREADED_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s]: %(message)s"
NOISY_LOGGERS = ("urllib3", "mlflow", "alembic", "git")
"""Libraries whose INFO lines (connection pools, "View run at", migrations) drown the project's own."""


def configure_logging(level: str | int, *, fmt: str = DEFAULT_FORMAT,
                      quiet: Iterable[str] = NOISY_LOGGERS) -> None:
    """Log to stderr at ``level``; the ``quiet`` libraries only from WARNING (or ``level`` when higher)."""
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    floor = max(logging.WARNING, logging.getLogger().level)
    for name in quiet:
        logging.getLogger(name).setLevel(floor)


def pin_thread_pools(threads: int) -> None:
    """Size OpenMP/BLAS pools for every thread of the process, before scikit-learn loads them.

    OpenMP's thread count is per calling thread, so a limit set on the main thread does not reach the scoring
    thread; the environment does. On 2 cores HistGradientBoosting with 2 OpenMP threads runs 3-4x slower as
    soon as anything else (the broker, another scorer) wants a core.
    """
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))


def limit_thread_pools(threads: int) -> threadpool_limits:
    """Limit the loaded OpenMP/BLAS pools of the calling thread to ``threads`` now.

    Returns threadpoolctl's limiter: used as a context manager it restores the previous sizes on exit.
    """
    return threadpool_limits(limits=threads)
