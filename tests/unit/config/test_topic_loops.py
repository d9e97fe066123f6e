"""Topic settings that feed the scorer's own output back into its input are refused at start-up (issue 12, item 9).

An input topic that is also the dead-letter topic re-dead-letters its own dead letters forever; one that is the
output topic scores its own predictions (each a dead letter: not a HousingRecord); one that is the control or the
status topic consumes the fleet's control plane. ``load_settings`` raises a SettingsError naming both settings, so
``housing-scorer`` exits 2 with ``bad configuration: ...`` before it reaches Kafka.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from config.settings import SettingsError, load_settings
from tests.conftest import PROJECT_ROOT

# (setting key, environment variable, flag) of every topic the input must not be.
OTHERS = [
    ("topics.dead_letter", "TOPIC_DEAD_LETTER", "--dlq-topic"),
    ("topics.predictions", "TOPIC_PREDICTIONS", "--output-topic"),
    ("topics.model_updates", "TOPIC_MODEL_UPDATES", "--control-topic"),
    ("topics.scorer_status", "TOPIC_SCORER_STATUS", "--status-topic"),
]


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return path


@pytest.mark.parametrize(("key", "env", "flag"), OTHERS, ids=[o[0] for o in OTHERS])
def test_input_topic_equal_to_another_topic_is_refused(tmp_path: Path, key: str, env: str, flag: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"topics.records": "loop", key: "loop"}, env={}, config_path=_empty(tmp_path))
    message = str(caught.value)
    assert "TOPIC_RECORDS" in message and "--input-topic" in message, message
    assert env in message and flag in message and "'loop'" in message, message


@pytest.mark.parametrize(("key", "env", "flag"), OTHERS, ids=[o[0] for o in OTHERS])
def test_the_same_loop_from_the_environment_is_refused(tmp_path: Path, key: str, env: str, flag: str) -> None:
    with pytest.raises(SettingsError, match=f"TOPIC_RECORDS .*and {env}"):
        load_settings(env={"TOPIC_RECORDS": "shared", env: "shared"}, config_path=_empty(tmp_path))


def test_replace_cannot_build_a_loop_either(tmp_path: Path) -> None:
    settings = load_settings(env={}, config_path=_empty(tmp_path))
    with pytest.raises(SettingsError, match="TOPIC_DEAD_LETTER"):
        settings.replace(**{"topics.dead_letter": settings.topics.records})


def test_control_and_status_topics_must_differ(tmp_path: Path) -> None:
    # Statuses read as model-update events (and events as statuses): both views fill with junk.
    with pytest.raises(SettingsError, match="TOPIC_MODEL_UPDATES .*TOPIC_SCORER_STATUS"):
        load_settings({"topics.model_updates": "ctl", "topics.scorer_status": "ctl"}, env={},
                      config_path=_empty(tmp_path))


def test_distinct_topics_are_accepted(tmp_path: Path) -> None:
    settings = load_settings({"topics.records": "in", "topics.predictions": "out", "topics.dead_letter": "dlq"},
                             env={}, config_path=_empty(tmp_path))
    assert (settings.topics.records, settings.topics.predictions, settings.topics.dead_letter) == ("in", "out", "dlq")


def test_housing_scorer_exits_2_naming_the_settings(tmp_path: Path) -> None:
    """The console script, as an operator runs it: refused before anything connects (no broker needed)."""
    script = Path(PROJECT_ROOT) / ".venv" / "bin" / "housing-scorer"
    if not script.exists():
        pytest.skip(f"{script} is not installed (make install)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOPIC_", "KAFKA_", "HOUSING_CONFIG"))}
    # An address nothing listens on: were the check to pass, start-up would fail differently (cannot start).
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"
    result = subprocess.run([str(script), "--input-topic", "orders", "--dlq-topic", "orders", "--no-admin-api"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "housing-scorer: bad configuration:" in result.stderr, result.stderr[-2000:]
    assert "TOPIC_RECORDS (--input-topic)" in result.stderr and "TOPIC_DEAD_LETTER (--dlq-topic)" in result.stderr
    assert "cannot start" not in result.stderr
