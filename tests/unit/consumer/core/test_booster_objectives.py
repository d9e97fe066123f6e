"""LightGBM's booster is called directly for every identity-link regression objective, and left to the sklearn API
for a link function or an unfitted model (each objective of the allow-list pinned: mutation testing found a
dropped one unnoticed, since the sklearn path then gives the same numbers, only slower)."""

from __future__ import annotations

import numpy as np
import pytest

lightgbm = pytest.importorskip("lightgbm")

from consumer.core.fastpath import booster_predictor  # noqa: E402

RNG = np.random.default_rng(5)
X = RNG.uniform(0, 1, size=(200, 3))
Y = X @ np.array([1.0, 2.0, 3.0]) + 0.5


def _fitted(objective: str) -> object:
    return lightgbm.LGBMRegressor(objective=objective, n_estimators=3, verbose=-1).fit(X, Y)


@pytest.mark.parametrize("objective", ["regression", "regression_l2", "l2", "mse", "huber", "fair", "regression_l1",
                                       "l1", "quantile", "mape"])
def test_identity_link_objectives_use_the_booster(objective: str) -> None:
    model = _fitted(objective)
    predict = booster_predictor(model)
    assert predict is not None
    np.testing.assert_array_equal(predict(X[:10]), model.predict(X[:10]))  # type: ignore[attr-defined]
    assert predict(X[:10]).dtype == np.float64


@pytest.mark.parametrize("objective", ["poisson", "gamma", "tweedie"])
def test_a_link_function_is_left_to_sklearn(objective: str) -> None:
    assert booster_predictor(lightgbm.LGBMRegressor(objective=objective, n_estimators=3, verbose=-1)
                             .fit(X, np.abs(Y))) is None


def test_a_bare_booster_and_an_unfitted_regressor() -> None:
    booster = lightgbm.train({"objective": "regression", "verbose": -1}, lightgbm.Dataset(X, Y), num_boost_round=3)
    predict = booster_predictor(booster)
    assert predict is not None
    np.testing.assert_array_equal(predict(X[:5]), booster.predict(X[:5]))
    assert booster_predictor(lightgbm.LGBMRegressor()) is None
    assert booster_predictor(object()) is None
