"""Talking to MLflow: the one health probe of the project, and the client's retry settings.

The probe is used by the consumer, the admin API and training (is the configured registry reachable?) and by
the dev stack and bench (is the server up yet?). Standard library only, so stack/ can use it without pulling
in MLflow, numpy or the scorer.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request


def tracking_server_problem(tracking_uri: str, timeout: float = 2.0) -> str | None:
    """Why the tracking server's ``/health`` did not answer 200 within ``timeout`` seconds; None when it did."""
    try:
        with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(exc)
    return None if status == 200 else f"HTTP {status}"


def has_server(tracking_uri: str) -> bool:
    """An http(s) URI names a server; a file or database URI is a local store with no server to ask."""
    return tracking_uri.startswith(("http://", "https://"))


def mlflow_answers(tracking_uri: str, timeout: float = 2.0, *, local_store_answers: bool = False) -> bool:
    """True when the tracking server's ``/health`` answers 200 within ``timeout`` seconds.

    :param local_store_answers: count a non-HTTP URI (a local file or database store: there is no server to
        ask) as answering. The consumer side wants that; the dev stack, which needs a server, does not.
    """
    if local_store_answers and not has_server(tracking_uri):
        return True
    return tracking_server_problem(tracking_uri, timeout) is None


def configure_mlflow_client() -> None:
    """Keep MLflow's HTTP retries short: a scorer must notice an unreachable registry in seconds, not minutes."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
