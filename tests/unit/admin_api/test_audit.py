"""The audit trail, the pure parts: who (key names), what (audit records and their tags), the audit log."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from admin_api.audit import (
    AuditLog,
    AuditRecord,
    record_from_exchange,
    should_tag,
    tag_key,
    tag_value,
    utc_stamp,
)
from admin_api.auth import check_key, resolve_key_name
from admin_api.errors import ApiError
from config.settings import SettingsError, load_settings


# --- who: named keys ----------------------------------------------------------------------------------------
def test_named_keys_include_the_single_key_as_admin() -> None:
    settings = load_settings(env={"ADMIN_API_KEY": "k0", "ADMIN_API_KEYS": "alice:k1, bob : k2"})
    assert settings.admin.named_keys() == {"admin": "k0", "alice": "k1", "bob": "k2"}
    assert settings.as_dict()["admin.api_keys"] == "***"  # never shown in --show-config or logs
    assert load_settings(env={"ADMIN_API_KEYS": "ci:s3cret"}).admin.named_keys() == {"ci": "s3cret"}
    assert load_settings(env={}).admin.named_keys() == {}


@pytest.mark.parametrize("raw", ["alice", "alice:", ":k1", "alice:k1,alice:k2", "alice:k1,,bob:k2"])
def test_malformed_named_keys_fail_at_start_up_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="ADMIN_API_KEYS"):
        load_settings(env={"ADMIN_API_KEYS": raw})


def test_the_key_presented_resolves_to_its_name() -> None:
    keys = {"admin": "k0", "alice": "k1", "bob": "k2"}
    assert resolve_key_name(keys, "k1") == "alice"
    assert resolve_key_name(keys, "k0") == "admin"
    assert resolve_key_name(keys, "k3") is None
    assert resolve_key_name(keys, None) is None
    assert check_key(keys, "k2", mutating=True) == "bob"
    assert check_key("only", "only", mutating=True) == "admin"  # ADMIN_API_KEY alone keeps working
    with pytest.raises(ApiError) as wrong:
        check_key(keys, "K1", mutating=True)
    assert wrong.value.status_code == 401
    with pytest.raises(ApiError) as off:
        check_key({}, "k1", mutating=True)
    assert off.value.status_code == 403 and "ADMIN_API_KEYS" in off.value.message


# --- what: records and tags ---------------------------------------------------------------------------------
def test_a_successful_alias_change_is_recorded_with_who_what_and_result() -> None:
    answer = {"name": "m", "alias": "champion", "version": "4", "previous_version": "3", "announced": True,
              "event": {"event_id": "e1", "type": "promoted", "model_name": "m", "version": "4",
                        "alias": "champion"}}
    record = record_from_exchange("alias.set", who="alice", match={"name": "m", "alias": "champion"},
                                  request_body={"version": "4"}, response_body=answer, status=200, error=None,
                                  default_model="other", now=1_700_000_000.25)
    assert record == AuditRecord(at="2023-11-14T22:13:20.250000Z", who="alice", action="alias.set", model_name="m",
                                 version="4", alias="champion", stage=None, result="ok", status=200,
                                 detail="previous version 3", source="admin_api", event_id="e1")
    assert should_tag(record, answer)


def test_a_refused_call_is_recorded_with_its_error_and_not_tagged() -> None:
    error = ApiError(404, "not_found", "version 99 of 'm': not found")
    record = record_from_exchange("transition", who="bob", match={"name": "m"},
                                  request_body={"version": "99", "stage": "Production"}, response_body=None,
                                  status=404, error=error, default_model="m")
    assert (record.who, record.version, record.stage, record.result, record.status) == (
        "bob", "99", "Production", "not_found", 404)
    assert record.detail == "version 99 of 'm': not found"
    assert not should_tag(record, None)


def test_reloads_are_tagged_only_when_they_loaded_a_version() -> None:
    loaded = {"status": "loaded", "reload": {"result": "loaded", "version": "5", "detail": "v5 serving"}}
    ignored = {"status": "ignored", "reload": {"result": "ignored", "version": "5", "detail": "already"}}
    for body, tagged in ((loaded, True), (ignored, False)):
        record = record_from_exchange("reload", who="admin", match={}, request_body=None, response_body=body,
                                      status=200, error=None, default_model="m")
        assert record.model_name == "m" and record.version == "5"
        assert should_tag(record, body) is tagged


def test_tags_are_valid_mlflow_tag_keys_and_short_values() -> None:
    record = AuditRecord(at=utc_stamp(1_700_000_000.5), who="alice", action="alias.set", model_name="m",
                         version="4", detail="x" * 20_000)
    key = tag_key(record)
    assert key == "audit.20231114T221320.500000Z"
    assert re.match(r"^[/\w.\- ]*$", key)  # MLflow's tag-name rule (no colon, so it holds on every platform)
    value = tag_value(record)
    assert len(value) <= 4000
    parsed = json.loads(value)
    assert parsed["who"] == "alice" and parsed["detail"].endswith("...")
    short = AuditRecord(at=record.at, who="a", action="promote", model_name="m", version="1")
    assert json.loads(tag_value(short)) == {"at": record.at, "who": "a", "action": "promote", "model_name": "m",
                                            "version": "1", "result": "ok", "source": "admin_api"}


def test_the_audit_log_writes_json_lines_to_its_logger_and_file(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    tags: list[tuple[str, ...]] = []
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path), lambda *args: tags.append(args))
    record = AuditRecord(at=utc_stamp(), who="alice", action="alias.delete", model_name="m", version="3",
                         alias="champion")
    with caplog.at_level(logging.INFO, logger="housing.audit"):
        log.record(record)
        log.record(record, tag=False)
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [record.as_dict()] * 2
    assert [r.name for r in caplog.records] == ["housing.audit"] * 2
    assert json.loads(caplog.records[0].getMessage())["who"] == "alice"
    assert tags == [("m", "3", tag_key(record), tag_value(record))]


def test_a_failing_tag_or_file_never_fails_the_call(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(*_: Any) -> None:
        raise RuntimeError("registry said no")

    log = AuditLog(str(tmp_path / "missing-dir" / "audit.jsonl"), refuse)
    with caplog.at_level(logging.WARNING, logger="admin_api.audit"):
        log.record(AuditRecord(at=utc_stamp(), who="a", action="transition", model_name="m", version="1"))
    assert "AUDIT_LOG_PATH" in caplog.text and "registry said no" in caplog.text
