"""training.tracking's pure parts: flat params, metrics, the skops allow-list, the tracking-server check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from consumer.core.features import to_frame
from schemas.examples import EXAMPLE_RECORD
from tests.helpers import unused_port
from training.pipeline import MODEL_KINDS, build_pipeline
from training.results import TrackingServerUnreachable
from training.tracking import (
    CHALLENGER_ALIAS,
    SKOPS_TRUSTED_TYPES,
    STAGING,
    Registration,
    check_tracking_server,
    flat_params,
    regression_metrics,
)


def _frame() -> pd.DataFrame:
    base = dict(EXAMPLE_RECORD)
    return to_frame([base, {**base, "total_bedrooms": None}, {**base, "ocean_proximity": "ON THE MOON"}])


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_fitted_pipelines_need_only_the_trusted_skops_types(kind: str, small_split: tuple) -> None:
    import skops.io

    X_train, _, y_train, _ = small_split
    fitted = build_pipeline(kind).fit(X_train, y_train)
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(fitted))
    assert set(untrusted) <= set(SKOPS_TRUSTED_TYPES)
    reloaded = skops.io.loads(skops.io.dumps(fitted), trusted=list(SKOPS_TRUSTED_TYPES))
    frame = _frame()
    np.testing.assert_array_equal(reloaded.predict(frame), fitted.predict(frame))


def test_flat_params_are_strings_with_sklearn_paths() -> None:
    params = flat_params(build_pipeline("random_forest", seed=3))
    assert params["model__n_estimators"] == "50"
    assert params["model__random_state"] == "3"
    assert params["preprocess__num__impute__strategy"] == "median"
    assert params["preprocess__cat__handle_unknown"] == "ignore"
    assert all(isinstance(v, str) for v in params.values())
    assert not any(v.startswith(("Pipeline(", "ColumnTransformer(")) for v in params.values())


def test_regression_metrics_on_known_values() -> None:
    metrics = regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 6.0])
    assert metrics["rmse"] == pytest.approx(1.0)
    assert metrics["mae"] == pytest.approx(0.5)
    assert metrics["r2"] == pytest.approx(1 - 4 / 5)


def test_unreachable_tracking_server_fails_fast_with_the_operator_message() -> None:
    with unused_port() as port, pytest.raises(TrackingServerUnreachable) as caught:
        uri = f"http://127.0.0.1:{port}"
        check_tracking_server(uri, timeout=2.0)
    assert str(caught.value) == (
        f"MLflow tracking server at {uri} is not reachable: start it with `housing-stack up` or set "
        "MLFLOW_TRACKING_URI"
    )
    check_tracking_server("sqlite:///tmp/x.db")  # no server to check: no error


def test_a_fresh_registration_has_archived_nothing() -> None:
    registration = Registration("3", STAGING, (CHALLENGER_ALIAS,))
    assert registration.archived == ()
    assert registration._replace(archived=("2",)).archived == ("2",)
