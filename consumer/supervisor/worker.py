"""The worker's side of ``--workers N``: tell the parent where its admin API listens, and stop with the parent.

A worker serves the full admin API on a loopback port the system picks (``--host 127.0.0.1 --port 0``); the
service logs the bound port ("admin API on ...", the line callers of ``PORT=0`` read). ``report_admin_address``
catches that record with a logger filter and writes ``{"index", "pid", "url"}`` to the file the parent named,
atomically (write aside, rename), so the parent never reads half a report.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path

SERVICE_LOGGER = "consumer.service"
ADMIN_API_LINE = "admin API on "
"""The start of the service's log line that names the admin API's bound address: scheme, host, port."""


def write_report(path: Path, *, index: int, url: str) -> None:
    """Write the worker's report for the parent atomically."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"index": index, "pid": os.getpid(), "url": url}))
    os.replace(partial, path)


def read_report(path: Path) -> dict[str, object] | None:
    """The report a worker wrote, or None while there is none (or it is not JSON: never, written atomically)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def report_admin_address(path: Path, index: int) -> None:
    """Write ``path`` once the service logs its admin API's bound address.

    The record is INFO; with ``LOG_LEVEL`` above INFO the logger is lowered to INFO for it and the filter drops
    every other record below the level the operator asked for, so the logs stay as configured.
    """
    service_logger = logging.getLogger(SERVICE_LOGGER)
    wanted = service_logger.getEffectiveLevel()

    def catch(record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(ADMIN_API_LINE) and len(record.args or ()) == 3:
            scheme, host, port = record.args  # type: ignore[misc]
            write_report(path, index=index, url=f"{scheme}://{host}:{port}")
        return record.levelno >= wanted

    if wanted > logging.INFO:
        service_logger.setLevel(logging.INFO)
    service_logger.addFilter(catch)


def stop_with_parent(interval: float = 1.0) -> threading.Thread:
    """SIGTERM this process once its parent is gone (killed with -9: no signal was forwarded): the worker then
    stops cleanly (batch committed, tombstone sent) instead of scoring on as an orphan nobody supervises."""
    parent = os.getppid()
    stopped = threading.Event()

    def watch() -> None:
        while not stopped.wait(interval):
            if os.getppid() != parent:
                logging.getLogger(__name__).warning("the parent process %d is gone: stopping", parent)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
