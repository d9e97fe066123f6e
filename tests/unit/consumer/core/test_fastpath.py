"""The numpy fast path predicts exactly what the trained pipeline predicts, and is refused for anything else."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from consumer.core.fastpath import compile_predictor, tree_sum_predictor, verified_predictor
from consumer.core.features import NUMERIC_COLUMNS, to_columns, to_frame
from consumer.core.handle import ModelHandle
from schemas.examples import EXAMPLE_RECORD
from training.data import features_frame, load_housing
from training.pipeline import MODEL_KINDS, build_pipeline

HOUSING = load_housing().sample(600, random_state=1)
TARGET = HOUSING["median_house_value"].to_numpy()


def scoring_frame() -> pd.DataFrame:
    """Real rows as the scorer builds them, plus missing bedrooms and a category the model never saw."""
    rows = features_frame(HOUSING.iloc[:200]).to_dict("records")
    rows += [{**EXAMPLE_RECORD, "total_bedrooms": None}, {**EXAMPLE_RECORD, "ocean_proximity": "MARS"}]
    return to_frame(rows)


@pytest.fixture(scope="module", params=MODEL_KINDS)
def trained(request: pytest.FixtureRequest) -> Pipeline:
    return build_pipeline(request.param).fit(features_frame(HOUSING), TARGET)


def test_every_trained_kind_gets_a_fast_path_with_identical_predictions(trained: Pipeline) -> None:
    fast = compile_predictor(trained)
    assert fast is not None
    frame = scoring_frame()
    np.testing.assert_array_equal(fast(frame), trained.predict(frame))
    handle = ModelHandle(model=trained, name="m", version="1", source="memory")
    assert handle.fast_path
    np.testing.assert_array_equal(handle.predict(frame), trained.predict(frame))
    # The scorer hands over columns, not a frame: the same floats.
    columns = to_columns(frame.to_dict("records"))
    np.testing.assert_array_equal(handle.predict(columns), trained.predict(frame))


def test_unknown_shapes_are_called_as_they_are() -> None:
    odd = Pipeline([("pre", ColumnTransformer([("num", FunctionTransformer(np.nan_to_num), list(NUMERIC_COLUMNS))])),
                    ("model", LinearRegression())]).fit(features_frame(HOUSING), TARGET)
    assert compile_predictor(odd) is None
    assert compile_predictor(LinearRegression()) is None
    handle = ModelHandle(model=odd, name="m", version="1", source="memory")
    assert not handle.fast_path
    frame = scoring_frame()
    np.testing.assert_array_equal(handle.predict(frame), odd.predict(frame))
    # Columns become the frame such a model expects.
    np.testing.assert_array_equal(handle.predict(to_columns(frame.to_dict("records"))), odd.predict(frame))


class Shifted(Pipeline):
    """Looks like the training pipeline, predicts something else: the check rows must catch it."""

    def predict(self, X, **params):  # type: ignore[no-untyped-def, override]
        return super().predict(X, **params) + 1.0


def test_a_fast_path_that_disagrees_with_the_model_is_not_used(trained: Pipeline) -> None:
    shifted = Shifted(trained.steps)
    assert compile_predictor(shifted) is not None
    assert verified_predictor(shifted) is None
    assert not ModelHandle(model=shifted, name="m", version="1", source="memory").fast_path


def test_gradient_boosting_trees_are_summed_directly_only_for_squared_error() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor

    features = np.random.default_rng(3).normal(size=(300, 4))
    target = features @ np.array([1.0, -2.0, 0.5, 3.0]) + 10.0
    squared = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(features, target)
    summed = tree_sum_predictor(squared)
    assert summed is not None
    np.testing.assert_array_equal(summed(features), squared.predict(features))
    with pytest.raises(ValueError, match="expected 4 features"):
        summed(features[:, :3])
    # Other losses transform or are not sums of trees in the same way: sklearn's own predict is kept.
    quantile = HistGradientBoostingRegressor(loss="quantile", quantile=0.9, max_iter=5).fit(features, target)
    assert tree_sum_predictor(quantile) is None
    poisson = HistGradientBoostingRegressor(loss="poisson", max_iter=5).fit(features, np.abs(target))
    assert tree_sum_predictor(poisson) is None
