"""A stop signal that arrives while the scorer starts (model loading, topics checked) stops it cleanly once
started, instead of killing it with Python's default SIGTERM action (exit -15: no commit, no tombstone)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator

import pytest

from config.settings import load_settings
from consumer.service import ScorerService


@pytest.fixture
def handlers_restored() -> Iterator[None]:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


def test_a_sigterm_while_starting_is_kept_and_ends_the_serve_at_once(
        handlers_restored: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="consumer.service")
    service = ScorerService(load_settings(env={}))
    service.catch_stop_signals()

    os.kill(os.getpid(), signal.SIGTERM)  # the process is still here: the handler only noted it

    # Nothing started: without the remembered signal the serve would wait; the deadline ends it as a loop end.
    deadline = threading.Timer(10, service._stopped.set)
    deadline.start()
    try:
        assert service.run_forever(None) == 0
    finally:
        deadline.cancel()
    assert "stopping: signal" in caplog.messages


def test_a_second_stop_signal_while_starting_gives_up(handlers_restored: None) -> None:
    service = ScorerService(load_settings(env={}))
    service.catch_stop_signals()
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
