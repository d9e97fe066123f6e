"""housing-train's announcement: nothing to say without a promotion; a silent broker is a warning only."""

from __future__ import annotations

import logging
import socket

import pytest

from config.settings import load_settings
from training.announce import announce_promotion
from training.results import TrainingResult


def result(promoted: bool) -> TrainingResult:
    return TrainingResult(
        model_name="m", version="4", model_uri="models:/m/4", run_id="r", best_kind="linear_regression",
        metrics={"rmse": 1.0}, aliases=("challenger",) + (("champion",) if promoted else ()),
        stage="Production" if promoted else "Staging", promoted=promoted, parent_run_id="p", experiment_id="1",
        tracking_uri="http://127.0.0.1:1", results=(), fallback_path="f", metadata_path="m", profile_path="p",
        trained_at="t", seconds=1.0)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_not_promoted_announces_nothing() -> None:
    settings = load_settings({"kafka.bootstrap_servers": f"127.0.0.1:{closed_port()}"}, env={})
    assert announce_promotion(settings, result(promoted=False)) is None


def test_unreachable_kafka_is_a_warning_not_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({"kafka.bootstrap_servers": f"127.0.0.1:{closed_port()}"}, env={})
    with caplog.at_level(logging.WARNING, logger="training.announce"):
        assert announce_promotion(settings, result(promoted=True)) is None
    assert "not announced" in caplog.text and "registry poll" in caplog.text
