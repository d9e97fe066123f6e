"""scripts/demo.py without the stack (issue 12, "a new user's first run"): the stream it sends must not raise a
drift alarm, its numbers are formatted, and MLflow's own chatter stays out of its output."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from config.settings import load_settings
from consumer.core.features import to_columns
from consumer.core.profile import build_profile, psi_by_feature
from producer.records import csv_records
from tests.conftest import PROJECT_ROOT
from training import data as training_data


def _load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_script", PROJECT_ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("demo_script", module)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()

DRIFT_WINDOW = 5000
"""The scorer's default DRIFT_WINDOW: /health judges drift on each scorer's last 5,000 records."""


@pytest.fixture(scope="module")
def reference_profile() -> dict[str, object]:
    """The profile housing-train logs with the model: the training split of the CSV."""
    x_train, _, _, _ = training_data.split(training_data.load_housing(PROJECT_ROOT / "data" / "housing.csv"))
    return build_profile(x_train)


def test_what_the_demo_streams_raises_no_drift_alarm(tmp_path: Path, reference_profile: dict[str, object]) -> None:
    """The CSV is sorted by location: streamed in file order, the last 5,000 records (all around the Bay Area and
    the north) are far from the training distribution, and /health says ``degraded`` right after ``make demo``."""
    threshold = load_settings(env={}, config_path=None).monitoring.alert_thresholds["drift_psi"]
    records = list(csv_records(demo.demo_stream_csv(tmp_path)))
    # Step 4 streams 20,000 records, step 6 12,000 more: after either, each of the two scorers' windows holds
    # its share (about every other record) of the last records sent.
    for sent in (demo.STREAM_COUNT, demo.CHALLENGER_STREAM_COUNT):
        last = records[:sent][-2 * DRIFT_WINDOW:]
        for window in (last[-DRIFT_WINDOW:], last[0::2], last[1::2]):
            psi = psi_by_feature(reference_profile, to_columns(window))
            worst = max(psi, key=lambda name: psi[name])
            assert psi[worst] < threshold / 2, f"after {sent:,} records, PSI of {worst} is {psi[worst]:.3f}"


def test_the_demo_stream_is_the_whole_dataset_and_stays_the_same(tmp_path: Path) -> None:
    first = demo.demo_stream_csv(tmp_path)
    rows = first.read_text().splitlines()
    original = (PROJECT_ROOT / "data" / "housing.csv").read_text().splitlines()
    assert rows[0] == original[0] and sorted(rows[1:]) == sorted(original[1:])
    assert demo.demo_stream_csv(tmp_path).read_text() == first.read_text()  # seeded: every demo sends the same


def test_the_fleet_table_formats_its_numbers() -> None:
    rows = demo.fleet_rows([
        {"instance_id": "demo-scorer-1", "model_version": "2", "result": "loaded", "load_seconds": 1.1262712749999935,
         "state": "serving"},
        {"instance_id": "demo-scorer-2", "model_version": "2", "result": "started", "load_seconds": None,
         "state": "serving"},
    ])
    assert rows == [["demo-scorer-1", "2", "loaded", "serving", "1.13"], ["demo-scorer-2", "2", "started",
                                                                          "serving", "-"]]


@pytest.mark.parametrize(("value", "text"), [(20000, "20,000"), (7, "7"), (1234567, "1,234,567")])
def test_counts_have_thousands_separators(value: int, text: str) -> None:
    assert demo.fmt_count(value) == text


def test_training_runs_with_mlflow_quiet() -> None:
    env = demo.training_env({"PATH": "/bin", "MLFLOW_LOGGING_LEVEL": "DEBUG"})
    assert env["PATH"] == "/bin"
    assert env["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"  # the "View run ... at" links
    assert env["MLFLOW_LOGGING_LEVEL"] == "WARNING"


def test_mlflow_lines_are_filtered_out_of_the_training_output_and_the_bar_kept() -> None:
    chatter = demo.ChatterFilter()
    shown = "".join([
        chatter.feed("\rtraining:   0%|          | 0/4 [00:00<?, ?model/s, linear_regression]"),
        chatter.feed("🏃 View run linear_regression at: http://127.0.0.1:5000/#/experiments/1/runs/ab\n"
                     "🧪 View experiment at: http://127.0.0.1:5000/#/experiments/1\n"),
        chatter.feed("\rtraining:  25%|██▌       | 1/4 [00:01<00:03, decision_tree]"),
        chatter.feed("\r                                                                   \r"),
        chatter.feed("Successfully registered model 'california_housing_best_model'.\n"),
        chatter.feed("Registered model 'california_housing_best_model' already exists. Creating a new version of "
                     "this model...\nCreated version '5' of model "),
        chatter.feed("'california_housing_best_model'.\n"),
        chatter.feed("housing-train: a real problem\n"),
        chatter.feed("WARNING last words"),
        chatter.close(),
    ])
    assert "View run" not in shown and "View experiment" not in shown and "registered model" not in shown
    assert "Created version" not in shown and "already exists" not in shown
    assert "\rtraining:   0%" in shown and "\rtraining:  25%" in shown
    assert "housing-train: a real problem\n" in shown and shown.endswith("WARNING last words")


def test_the_bad_canary_is_trained_on_the_same_rows_with_the_target_shuffled(tmp_path: Path) -> None:
    source = PROJECT_ROOT / "data" / "housing.csv"
    header, *rows = source.read_text().splitlines()
    out_header, *out_rows = demo.shuffled_target_csv(source, tmp_path).read_text().splitlines()
    column = header.split(",").index("median_house_value")

    def without_target(line: str) -> list[str]:
        return line.split(",")[:column] + line.split(",")[column + 1:]

    assert out_header == header and len(out_rows) == len(rows)
    assert [without_target(r) for r in out_rows] == [without_target(r) for r in rows]  # the features unchanged
    targets, shuffled = ([r.split(",")[column] for r in lines] for lines in (rows, out_rows))
    assert sorted(shuffled) == sorted(targets) and shuffled != targets


def test_the_evidence_table_is_the_gates_table_of_the_tagged_evidence() -> None:
    evidence = {"decision_id": "d-1", "action": "promote", "reason": "canary RMSE 30,000 is 25.0% below",
                "canary_version": "4", "champion_version": "3", "canary_rmse": 30000.0, "champion_rmse": 40000.0,
                "canary_count": 1200, "champion_count": 4800, "relative_difference": -0.25, "confidence": 0.999,
                "canary_minutes": 0.4, "window_start": 1, "watermark": 2, "error_rate": None, "non_finite": None,
                "drift_psi": None}
    text = demo.evidence_table(evidence)
    assert "v4" in text and "v3" in text and "30,000" in text and "40,000" in text and "1200" in text
    assert "decision: PROMOTE" in text and "-25.0%" in text
