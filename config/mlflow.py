"""Does an MLflow tracking server answer? One GET of its ``/health``: the single probe of the project.

Used by the consumer, the admin API and training (is the configured registry reachable?) and by the dev stack
and bench (is the server up yet?). Standard library only, and imports nothing else of the project, so stack/
can use it without pulling in MLflow, numpy or the rest of consumer/.
"""

from __future__ import annotations

import urllib.error
import urllib.request


def mlflow_answers(tracking_uri: str, timeout: float = 2.0, *, local_store_answers: bool = False) -> bool:
    """True when the tracking server's ``/health`` answers 200 within ``timeout`` seconds.

    :param local_store_answers: count a non-HTTP URI (a local file or database store: there is no server to
        ask) as answering. The consumer side wants that; the dev stack, which needs a server, does not.
    """
    if local_store_answers and not tracking_uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
