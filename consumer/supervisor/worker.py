"""The worker's side of ``--workers N``: tell the parent where its admin API listens, and stop with the parent.

A worker serves the full admin API on a loopback port the system picks (``--host 127.0.0.1 --port 0``); once
it listens, the service hands its bound URL to ``run_forever``'s ``on_admin_listening``, which writes
``{"index", "pid", "url"}`` to the file the parent named (``write_report``), atomically (write aside, rename), so
the parent never reads half a report.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path


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
