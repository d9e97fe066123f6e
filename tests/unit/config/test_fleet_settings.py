"""The fleet view's settings: the heartbeat period and the stale limit (issue 12, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return path


def test_defaults_are_a_heartbeat_every_30_s_and_stale_after_3(tmp_path: Path) -> None:
    settings = load_settings(env={}, config_path=_empty(tmp_path))
    assert (settings.scorer.heartbeat_seconds, settings.admin.fleet_stale_after) == (30.0, 90.0)


def test_both_come_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(env={"SCORER_HEARTBEAT_SECONDS": "2", "FLEET_STALE_AFTER_SECONDS": "6.5"},
                             config_path=_empty(tmp_path))
    assert (settings.scorer.heartbeat_seconds, settings.admin.fleet_stale_after) == (2.0, 6.5)


@pytest.mark.parametrize("env", [{"SCORER_HEARTBEAT_SECONDS": "0"}, {"FLEET_STALE_AFTER_SECONDS": "-1"},
                                 {"SCORER_HEARTBEAT_SECONDS": "often"}])
def test_bad_values_name_the_setting(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        load_settings(env=env, config_path=_empty(tmp_path))


def test_a_stale_limit_within_one_heartbeat_is_refused(tmp_path: Path) -> None:
    # Every live instance would flap to stale between two beats.
    with pytest.raises(SettingsError,
                       match="FLEET_STALE_AFTER_SECONDS=30 must be more than SCORER_HEARTBEAT_SECONDS=30"):
        load_settings(env={"FLEET_STALE_AFTER_SECONDS": "30"}, config_path=_empty(tmp_path))
