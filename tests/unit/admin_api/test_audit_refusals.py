"""Refused calls in the audit trail: counted per client per minute, one record per client per minute, written
by a worker thread (never on the event loop), into a file with a size cap and rotation."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from admin_api.audit import AuditLog, AuditRecord, audit_log_of, refusal_record, utc_stamp
from admin_api.refusals import RefusalCounter
from config.settings import Settings, SettingsError, load_settings
from consumer.state import ScorerState

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
FLOOD = 60


def settings(path: Path, **overrides: Any) -> Settings:
    return load_settings({"scorer.instance_id": "unit", "mlflow.enabled": False, "monitoring.track_drift": False,
                          "admin.api_key": "unit-key", "admin.audit_log_path": str(path), **overrides},
                         env={}, config_path=None)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def refuse(client: TestClient[Any, Any], count: int) -> None:
    for i in range(count):
        if i % 2:
            response = await client.post("/api/model/reload", json={})
        else:
            response = await client.put("/api/mlflow/models/m/aliases/champion", json={"version": "1"},
                                        headers={"X-API-Key": "wrong"})
        assert response.status == 401


async def test_a_flood_of_refused_writes_is_one_audit_line_per_client_per_minute(
        aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    client = await aiohttp_client(create_app(settings(path), state=ScorerState(settings(path))))
    await refuse(client, FLOOD)
    await client.close()  # the app's cleanup writes what is still being counted
    written = lines(path)
    assert written, "the refusals were not recorded at all"
    # One record per client per minute (the flood may straddle one minute boundary), with the count.
    minutes = {(line.get("client"), line.get("since", line["at"])[:16]) for line in written}
    assert len(written) == len(minutes) <= 2, written[:3]
    assert sum(line.get("count", 1) for line in written) == FLOOD
    first = written[0]
    assert (first["who"], first["action"], first["result"], first["client"]) == (
        "unknown", "refused", "unauthorized", "127.0.0.1")
    assert "POST /api/model/reload" in first["detail"]
    assert "PUT /api/mlflow/models/{name}/aliases/{alias}" in first["detail"]


async def test_refusals_are_written_off_the_event_loop_thread(aiohttp_client: ClientFactory, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    writers: list[int] = []
    original = AuditLog.write

    def spy(self: AuditLog, record: AuditRecord) -> None:
        writers.append(threading.get_ident())
        original(self, record)

    monkeypatch.setattr(AuditLog, "write", spy)
    path = tmp_path / "audit.jsonl"
    client = await aiohttp_client(create_app(settings(path), state=ScorerState(settings(path))))
    await refuse(client, 5)
    await client.close()
    assert writers, "nothing was written"
    loop_thread = threading.get_ident()  # this test runs on the event loop's thread
    assert loop_thread not in writers


def test_the_counter_keeps_one_window_per_client_and_minute() -> None:
    counter = RefusalCounter(window=60.0, max_clients=1000)
    assert counter.add("10.0.0.1", "POST /api/model/reload", "unauthorized", 401, now=120.5) is True
    assert counter.add("10.0.0.1", "POST /api/model/reload", "unauthorized", 401, now=150.0) is False
    assert counter.add("10.0.0.1", "PUT /api/x", "forbidden", 403, now=170.0) is False
    assert counter.add("10.0.0.2", "POST /api/model/reload", "unauthorized", 401, now=171.0) is True
    assert counter.due(now=179.0) == []  # the minute 120..180 is still open
    assert counter.add("10.0.0.1", "POST /api/model/reload", "unauthorized", 401, now=185.0) is True  # next minute
    closed = counter.due(now=181.0)
    assert [(w.client, w.count, w.start) for w in closed] == [("10.0.0.1", 3, 120.0), ("10.0.0.2", 1, 120.0)]
    record = refusal_record(closed[0], model_name="m")
    assert (record.who, record.action, record.count, record.client, record.result, record.status) == (
        "unknown", "refused", 3, "10.0.0.1", "unauthorized", 401)
    assert record.since == utc_stamp(120.5) and record.at == utc_stamp(170.0)
    assert record.detail is not None and "POST /api/model/reload unauthorized x2" in record.detail
    assert [(w.client, w.count) for w in counter.due(now=181.0, everything=True)] == [("10.0.0.1", 1)]
    assert counter.due(now=1e9, everything=True) == []


def test_the_counter_holds_a_bounded_number_of_clients() -> None:
    counter = RefusalCounter(window=60.0, max_clients=10)
    for i in range(5000):
        counter.add(f"10.1.{i // 256}.{i % 256}", f"POST /p{i}", "unauthorized", 401, now=1.0)
    windows = counter.due(now=1.0, everything=True)
    assert len(windows) == 11  # ten clients and one window for every client beyond them
    assert sum(w.count for w in windows) == 5000
    overflow = [w for w in windows if w.client == RefusalCounter.OTHER_CLIENTS]
    assert overflow and overflow[0].count == 4990
    assert all(len(w.requests) <= RefusalCounter.MAX_REQUEST_KINDS + 1 for w in windows)


def test_the_audit_file_never_grows_past_its_cap(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), max_bytes=4096, backups=2)
    record = AuditRecord(at=utc_stamp(), who="alice", action="alias.set", model_name="m", version="3",
                         detail="d" * 300)
    try:
        for _ in range(200):
            log.write(record)
            assert path.stat().st_size <= 4096
    finally:
        log.close()
    rotated = sorted(p.name for p in tmp_path.iterdir())
    assert rotated == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]  # at most `backups` old files
    for name in rotated:
        assert all(json.loads(line)["who"] == "alice" for line in (tmp_path / name).read_text().splitlines())


def test_the_app_uses_the_configured_cap(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    config = settings(path, **{"admin.audit_log_max_bytes": 65536, "admin.audit_log_backups": 3})
    app = create_app(config, state=ScorerState(config))
    log = audit_log_of(app)
    assert (log.max_bytes, log.backups) == (65536, 3)
    assert settings(path).admin.audit_log_max_bytes == 10_000_000
    with pytest.raises(SettingsError, match="AUDIT_LOG_MAX_BYTES"):
        load_settings(env={"AUDIT_LOG_MAX_BYTES": "100"})


def test_a_capped_file_that_cannot_be_written_never_fails_the_call(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(str(tmp_path / "missing-dir" / "audit.jsonl"), max_bytes=4096)
    with caplog.at_level(logging.WARNING, logger="admin_api.audit"):
        log.write(AuditRecord(at=utc_stamp(), who="a", action="transition", model_name="m", version="1"))
        log.write(AuditRecord(at=utc_stamp(), who="a", action="transition", model_name="m", version="2"))
    log.close()
    assert caplog.text.count("AUDIT_LOG_PATH") == 2
