"""Serving any flavour against the real broker and MLflow (issue 13): a LightGBM version and a custom pyfunc
version promoted in turn under a stream, and versions that do not fit the housing record refused while the old
one keeps scoring; a version using only some of the record's columns serves."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from admin_api.health import health_report
from consumer.kafka.control import publish_model_update
from consumer.kafka.topic_reader import read_fleet
from consumer.service import ScorerService
from examples.register_custom_pyfunc import register as register_custom_pyfunc
from schemas.features import CATEGORICAL_COLUMN, FEATURE_COLUMNS
from tests.conftest import train_quick_model
from tests.flavour_models import (
    SUBSET_COLUMNS,
    register_folder,
    save_lightgbm_subset,
    save_missing_library,
    save_signature_variant,
)
from tests.helpers import keys_of, read_to_end, wait_for
from tests.integration.reload_support import (
    PacedProducer,
    decoded,
    move_alias,
    scored_by,
    scorer_overrides,
    versions_by_partition,
)
from training import data as training_data

pytestmark = pytest.mark.integration


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...] = FEATURE_COLUMNS) -> pd.DataFrame:
    data = {c: (pd.Series([r[c] for r in rows], dtype=object) if c == CATEGORICAL_COLUMN
                else np.asarray([np.nan if r[c] is None else r[c] for r in rows], dtype=np.float64)) for c in columns}
    return pd.DataFrame(data, columns=list(columns))


def _pyfunc_predictions(tracking_uri: str, name: str, version: str, rows: list[dict[str, Any]],
                        columns: tuple[str, ...] = FEATURE_COLUMNS) -> np.ndarray:
    """What ``mlflow.pyfunc.load_model(uri).predict`` gives on the rows (not the scorer's code)."""
    import mlflow
    import mlflow.pyfunc

    mlflow.set_registry_uri(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return np.asarray(model.predict(_frame(rows, columns)), dtype=np.float64).reshape(-1)


def _in_order(sequence: list[str], order: list[str]) -> bool:
    """Each version only after the ones before it in ``order``: no going back, no interleaving."""
    ranks = [order.index(v) for v in sequence]
    return ranks == sorted(ranks)


def _promote(settings: Any, tracking_uri: str, name: str, version: str) -> Any:
    move_alias(tracking_uri, name, "champion", version)
    return publish_model_update(settings, type="promoted", model_name=name, version=version, alias="champion",
                                source="admin_api")


def _check_stream(settings: Any, sent: list[str], order: list[str]) -> list[dict[str, Any]]:
    predictions = read_to_end(settings.kafka.bootstrap_servers, settings.topics.predictions)
    dead = read_to_end(settings.kafka.bootstrap_servers, settings.topics.dead_letter)
    keys = keys_of(predictions)
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicates, duplicates[:5]
    assert set(keys) == set(sent) and len(keys) == len(sent), (len(keys), len(sent))
    assert dead == []
    by_partition = versions_by_partition(predictions)
    assert all(_in_order(seq, order) for seq in by_partition.values()), {
        p: Counter(seq) for p, seq in by_partition.items()}
    values = decoded(predictions)
    for message, value in zip(predictions, values, strict=True):  # every prediction names its version
        assert message.header_map["model_version"].decode() == value["model_version"]
    assert {v["model_version"] for v in values} == set(order)
    return values


def test_lightgbm_and_a_custom_pyfunc_serve_in_turn_under_a_stream(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str) -> None:
    name = f"flavours_{uuid.uuid4().hex[:8]}"
    v1 = train_quick_model(mlflow_tracking_uri, name, tmp_path / "v1", kinds=("linear_regression",), sample=600)
    v2 = train_quick_model(mlflow_tracking_uri, name, tmp_path / "v2", kinds=("lightgbm",), sample=600,
                           promote=False).version
    v3 = register_custom_pyfunc(mlflow_tracking_uri, name, v2)  # the example: v2's predictions, clipped
    settings = settings_factory(stream_topics, **scorer_overrides(name, v1.fallback_path, group_id))
    service = ScorerService(settings)
    service.start()
    producer = PacedProducer(settings, rate=300)
    handles: dict[str, Any] = {}
    try:
        assert service.state.models.current.version == v1.version
        producer.start()
        assert wait_for(scored_by(service, v1.version), 30), service.state.counts
        for version in (v2, v3):
            event = _promote(settings, mlflow_tracking_uri, name, version)
            assert wait_for(scored_by(service, version), 60), service.state.last_reload
            assert service.state.last_reload.event_id == event.event_id
            handles[version] = service.state.models.current
            served = len(producer.keys)
            assert wait_for(lambda: len(producer.keys) > served + 150, 10)  # noqa: B023 - read at once
        sent = producer.stop()
        assert wait_for(lambda: service.state.counts["consumed"] >= len(sent), 60), service.state.counts
    finally:
        producer.stop()
        service.stop()
    assert (handles[v2].flavour, handles[v2].predict_path) == ("lightgbm", "numpy fast path")
    assert (handles[v3].flavour, handles[v3].predict_path) == ("python_function", "dataframe")
    values = _check_stream(settings, sent, [v1.version, v2, v3])
    for version in (v1.version, v2, v3):
        mine = [v for v in values if v["model_version"] == version]
        assert mine, version
        expected = _pyfunc_predictions(mlflow_tracking_uri, name, version,
                                       [producer.row_of(v["record_id"]) for v in mine])
        np.testing.assert_allclose([v["prediction"] for v in mine], expected, rtol=1e-9)


REFUSED = {
    "extra_column": ("signature_mismatch", "'rooms_per_household' (double) is required"),
    "numeric_category": ("signature_mismatch", "'ocean_proximity' is typed double"),
    "two_columns": ("signature_mismatch", "returns 2 columns (low, high)"),
    "missing_library": ("flavour_library_missing", "pip install housing_flavour_that_is_not_installed"),
}


def test_versions_that_do_not_fit_are_refused_and_a_column_subset_serves(
        settings_factory: Any, stream_topics: dict[str, str], mlflow_tracking_uri: str, tmp_path: Path,
        group_id: str) -> None:
    name = f"flavours_refused_{uuid.uuid4().hex[:8]}"
    v1 = train_quick_model(mlflow_tracking_uri, name, tmp_path / "v1", kinds=("linear_regression",), sample=600)
    refused: dict[str, str] = {}
    for variant in REFUSED:
        folder = save_missing_library(tmp_path / variant) if variant == "missing_library" \
            else save_signature_variant(tmp_path / variant, variant)
        refused[variant] = register_folder(mlflow_tracking_uri, name, folder)
    train = training_data.sample_rows(training_data.load_housing(), 1500, 3)
    rows = [{c: (None if isinstance(v, float) and np.isnan(v) else v) for c, v in row.items()}
            for row in train[list(FEATURE_COLUMNS)].to_dict("records")]
    subset = register_folder(mlflow_tracking_uri, name, save_lightgbm_subset(
        tmp_path / "subset", rows, train[training_data.TARGET_COLUMN].tolist()))
    settings = settings_factory(stream_topics, **scorer_overrides(name, v1.fallback_path, group_id))
    service = ScorerService(settings)
    service.start()
    producer = PacedProducer(settings, rate=200)
    try:
        producer.start()
        assert wait_for(scored_by(service, v1.version), 30), service.state.counts
        for variant, version in refused.items():
            reason, named = REFUSED[variant]
            event = _promote(settings, mlflow_tracking_uri, name, version)
            assert wait_for(lambda: (service.state.last_reload is not None  # noqa: B023 - read at once
                                     and service.state.last_reload.event_id == event.event_id), 60)  # noqa: B023
            result = service.state.last_reload
            assert (result.result, result.version, result.reason) == ("failed", version, reason), result
            assert named in result.detail and f"still serving {name} v{v1.version}" in result.detail
            assert service.state.models.current.version == v1.version
            _, health = health_report(settings, service.state, kafka_down_for=None, consumer_expected=True,
                                      error_rate=None)
            assert any(f"reload failed ({reason})" in r for r in health["reasons"]), health["reasons"]
            status = read_fleet(settings)[settings.scorer.instance_id]
            assert (status.result, status.model_version) == ("failed", v1.version)
            assert status.detail is not None and status.detail.startswith(f"{reason}: ")
            scored = service.state.counts["scored"]  # the old version keeps scoring
            assert wait_for(lambda: service.state.counts["scored"] > scored + 50, 20)  # noqa: B023
        failures = service.state.metrics.reload_failures
        assert failures.labels(reason="signature_mismatch")._value.get() == 3
        assert failures.labels(reason="flavour_library_missing")._value.get() == 1
        _promote(settings, mlflow_tracking_uri, name, subset)
        assert wait_for(scored_by(service, subset), 60), service.state.last_reload
        handle = service.state.models.current
        assert (handle.flavour, handle.plan.columns) == ("lightgbm", SUBSET_COLUMNS)
        served = len(producer.keys)
        assert wait_for(lambda: len(producer.keys) > served + 100, 10)
        sent = producer.stop()
        assert wait_for(lambda: service.state.counts["consumed"] >= len(sent), 60), service.state.counts
    finally:
        producer.stop()
        service.stop()
    values = _check_stream(settings, sent, [v1.version, subset])
    mine = [v for v in values if v["model_version"] == subset]
    expected = _pyfunc_predictions(mlflow_tracking_uri, name, subset,
                                   [producer.row_of(v["record_id"]) for v in mine], SUBSET_COLUMNS)
    np.testing.assert_allclose([v["prediction"] for v in mine], expected, rtol=1e-9)
