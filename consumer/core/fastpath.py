"""A numpy fast path for the preprocessing this project trains: the model's predictions without pandas per call.

It takes the batch's feature columns (consumer.core.features.FeatureColumns) or a FEATURE_COLUMNS frame. Called on a
DataFrame, a scikit-learn Pipeline spends about 5-8 ms per call on pandas indexing and input
validation (ColumnTransformer, SimpleImputer, OneHotEncoder) before the estimator sees a number: most of the
cost of a small batch, and a fixed cost on every batch. For the steps housing-train builds (a ColumnTransformer
over named columns, remainder dropped, made of SimpleImputer, StandardScaler and dense OneHotEncoder), that work
is a few numpy operations. ``verified_predictor`` builds that function and keeps it only if it gives the same
predictions as ``model.predict`` on check rows (every category, a missing value, the version's input example).
A LightGBM model (a Booster, an LGBMRegressor, or the estimator of such a Pipeline) is predicted by its
booster on a float matrix, past the sklearn API's input checks: the same compiled call, the same floats.
Any other model shape is called as it is.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from consumer.core.features import CATEGORICAL_COLUMN, FEATURE_COLUMNS, FeatureColumns, as_frame, model_frame, to_frame
from consumer.core.signature import DEFAULT_PLAN, InputPlan, numeric_only
from schemas.examples import EXAMPLE_RECORD
from schemas.validation import OCEAN_PROXIMITY_CATEGORIES

logger = logging.getLogger(__name__)

Features: TypeAlias = FeatureColumns | pd.DataFrame
Predictor = Callable[[Features], np.ndarray]
Block = Callable[[Features], np.ndarray]


def verified_predictor(model: Any, input_example: Any = None, plan: InputPlan = DEFAULT_PLAN, *,
                       trees: Callable[[np.ndarray], np.ndarray] | None = None,
                       rtol: float = 1e-12) -> Predictor | None:
    """The numpy predictor for ``model``, if it has a known shape and matches ``model.predict`` exactly
    (relative ``rtol``, 1e-12 by default) on the check rows, given as a frame and as columns; else None. Never
    raises.

    :param plan: the columns (and dtypes) the model's signature takes: the frame ``model.predict`` is checked
        on has exactly these, so a fast path cannot read a column the model is not given.
    :param trees: predicts the pipeline's estimator on the preprocessed matrix instead of the per-tree walk
        (consumer/core/compiled_trees.py), held to the same check.
    """
    try:
        fast = compile_predictor(model, plan, trees=trees)
        if fast is None:
            return None
        for frame in check_frames(input_example):
            expected = np.asarray(model.predict(model_frame(frame, plan.columns, plan.dtypes)),
                                  dtype=np.float64).reshape(-1)
            columns = {name: frame[name].to_numpy() for name in frame.columns}
            for got in (fast(frame), fast(columns)):
                if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=0.0):
                    logger.warning("numpy fast path disagrees with the model on its check rows: not used")
                    return None
        return fast
    except Exception as exc:  # a model that fails here fails its own check next, with its own message
        logger.debug("numpy fast path not used: %s: %s", type(exc).__name__, exc)
        return None


def check_frames(input_example: Any = None) -> list[pd.DataFrame]:
    """Every category, a missing ``total_bedrooms``, and the version's input example (given all nine columns:
    an example of fewer columns is completed from the built-in example record)."""
    rows = [{**EXAMPLE_RECORD, "ocean_proximity": category} for category in OCEAN_PROXIMITY_CATEGORIES]
    rows.append({**EXAMPLE_RECORD, "total_bedrooms": None})
    frames = [to_frame(rows)]
    if isinstance(input_example, pd.DataFrame) and len(input_example):
        frames.append(complete_example(input_example))
    return frames


def complete_example(example: pd.DataFrame) -> pd.DataFrame:
    """The example's rows with all nine record columns: its own values where it has them (cast as the record's),
    the built-in example record's elsewhere."""
    rows = len(example)
    data: dict[str, Any] = {}
    for name in FEATURE_COLUMNS:
        if name in example.columns:
            values = example[name].to_numpy()
        else:
            values = np.full(rows, EXAMPLE_RECORD[name], dtype=object)
        data[name] = values
    return as_frame({name: (np.asarray(data[name], dtype=object) if name == CATEGORICAL_COLUMN
                            else np.asarray(data[name], dtype=np.float64)) for name in FEATURE_COLUMNS})


def compile_predictor(model: Any, plan: InputPlan = DEFAULT_PLAN, *,
                      trees: Callable[[np.ndarray], np.ndarray] | None = None) -> Predictor | None:
    """A numpy function doing what ``model.predict`` does on the plan's frame (given as the batch's frame or its
    columns), or None if ``model`` is neither Pipeline([ColumnTransformer of known steps, estimator]) nor a
    LightGBM model taking numeric columns. ``trees``, if given, predicts the pipeline's estimator."""
    booster = lightgbm_predictor(model, plan, trees=trees)
    if booster is not None:
        return booster
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline) or len(model.steps) != 2:
        return None
    preprocess, estimator = model.steps[0][1], model.steps[1][1]
    if not isinstance(preprocess, ColumnTransformer) or getattr(preprocess, "sparse_output_", True):
        return None
    if not hasattr(estimator, "predict") or (not _is_lightgbm(estimator) and hasattr(estimator, "feature_names_in_")):
        return None  # fitted on a DataFrame: it wants one back (LightGBM's sklearn API always has the attribute)
    blocks: list[Block] = []
    for _, transformer, columns in preprocess.transformers_:
        if transformer == "drop":
            continue
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            return None
        steps = [step for _, step in transformer.steps] if isinstance(transformer, Pipeline) else [transformer]
        block = _compile_block(steps, columns)
        if block is None:
            return None
        blocks.append(block)
    if not blocks:
        return None
    predict = trees or tree_sum_predictor(estimator) or booster_predictor(estimator) or estimator.predict

    def fast_predict(batch: Features) -> np.ndarray:
        features = np.hstack([block(batch) for block in blocks]) if len(blocks) > 1 else blocks[0](batch)
        return np.asarray(predict(features), dtype=np.float64).reshape(-1)

    return fast_predict


def _is_lightgbm(model: Any) -> bool:
    return type(model).__module__.split(".")[0] == "lightgbm"


def booster_predictor(estimator: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """LightGBM's own ``Booster.predict`` on a float matrix, past the sklearn API's input checks (a regressor with
    the default raw score; anything else is left to ``estimator.predict``), or None for a non-LightGBM model."""
    if not _is_lightgbm(estimator):
        return None
    import lightgbm

    if isinstance(estimator, lightgbm.Booster):
        booster = estimator
    elif isinstance(estimator, lightgbm.LGBMRegressor) and estimator.__sklearn_is_fitted__():
        booster = estimator.booster_
    else:
        return None
    if booster.params.get("objective") not in (None, "regression", "regression_l2", "l2", "mse", "huber", "fair",
                                               "regression_l1", "l1", "quantile", "mape"):
        return None  # a link function (poisson, gamma, tweedie) or a classifier: sklearn's predict knows it

    def predict(features: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(features), dtype=np.float64)

    return predict


def lightgbm_predictor(model: Any, plan: InputPlan, *,
                       trees: Callable[[np.ndarray], np.ndarray] | None = None) -> Predictor | None:
    """A bare LightGBM model (Booster or LGBMRegressor) given the plan's numeric columns as one float matrix,
    or None (not LightGBM, or a string column it cannot take as numbers). ``trees``, if given, predicts instead
    of the booster (its compiled trees)."""
    predict = booster_predictor(model)
    if predict is None or not numeric_only(plan):
        return None
    predict = trees or predict
    columns = tuple(zip(plan.columns, plan.dtypes, strict=True))

    def fast_predict(batch: Features) -> np.ndarray:
        matrix = np.column_stack([np.asarray(batch[name], dtype=dtype) for name, dtype in columns])
        return predict(matrix).reshape(-1)

    return fast_predict


def tree_sum_predictor(estimator: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """HistGradientBoostingRegressor.predict without its per-tree Python layers, or None for anything else.

    sklearn wraps each of its (here ~200) trees in a partial, a Python method and a fresh output array: about 2 us
    of a ~6 us per-tree cost, whatever the batch size. This calls the same compiled tree walk per tree into one
    reused array and sums in the same order from the same baseline, so the floats are the same (verified with the
    rest of the fast path). Identity link only (squared error): other losses transform the sum.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    if type(estimator) is not HistGradientBoostingRegressor or estimator.n_trees_per_iteration_ != 1 \
            or getattr(estimator, "_preprocessor", None) is not None or estimator.loss != "squared_error":
        return None
    try:
        from sklearn.ensemble._hist_gradient_boosting._predictor import _predict_from_raw_data
    except ImportError:  # a private module; if it moves, sklearn's own predict is used
        return None
    known_categories, feature_index_map = estimator._bin_mapper.make_known_categories_bitsets()
    trees = [(p.nodes, p.raw_left_cat_bitsets) for (p,) in estimator._predictors]
    baseline = float(np.asarray(estimator._baseline_prediction).reshape(-1)[0])
    n_features = estimator.n_features_in_

    def predict(features: np.ndarray) -> np.ndarray:
        features = np.ascontiguousarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[1] != n_features:
            raise ValueError(f"expected {n_features} features, got shape {features.shape}")
        total = np.full(features.shape[0], baseline)
        tree_out = np.empty(features.shape[0])
        for nodes, left_categories in trees:
            _predict_from_raw_data(nodes, features, left_categories, known_categories, feature_index_map, 1,
                                   tree_out)
            total += tree_out
        return total

    return predict


def _compile_block(steps: Sequence[Any], columns: list[str]) -> Block | None:
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if len(steps) == 1 and isinstance(steps[0], OneHotEncoder):
        return _one_hot(steps[0], columns)
    operations: list[Callable[[np.ndarray], np.ndarray]] = []
    for step in steps:
        if isinstance(step, SimpleImputer):
            fill = np.asarray(step.statistics_, dtype=np.float64)
            missing = step.missing_values
            if step.add_indicator or not (isinstance(missing, float) and np.isnan(missing)) \
                    or fill.shape != (len(columns),) or not np.all(np.isfinite(fill)):
                return None
            operations.append(functools.partial(_impute, fill=fill))
        elif isinstance(step, StandardScaler):
            mean = step.mean_ if step.with_mean else None
            scale = step.scale_ if step.with_std else None
            operations.append(functools.partial(_standardise, mean=mean, scale=scale))
        else:
            return None

    def numeric(batch: Features) -> np.ndarray:
        values = np.column_stack([np.asarray(batch[column], dtype=np.float64) for column in columns])
        for operation in operations:
            values = operation(values)
        return values

    return numeric


def _impute(x: np.ndarray, fill: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), fill, x)


def _standardise(x: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None) -> np.ndarray:
    # The same operations, in the same order, as StandardScaler.transform: identical floats.
    x = x.copy()
    if mean is not None:
        x -= mean
    if scale is not None:
        x /= scale
    return x


def _one_hot(encoder: Any, columns: list[str]) -> Block | None:
    if len(columns) != 1 or encoder.drop is not None or encoder.handle_unknown != "ignore" \
            or getattr(encoder, "sparse_output", True) or getattr(encoder, "_infrequent_enabled", True):
        return None
    categories = np.asarray(encoder.categories_[0], dtype=object)
    dtype = encoder.dtype
    column = columns[0]

    def one_hot(batch: Features) -> np.ndarray:
        # An unknown category is a row of zeros, as handle_unknown="ignore" does.
        values = np.asarray(batch[column]).astype(object, copy=False)
        return np.asarray(values[:, None] == categories[None, :], dtype=dtype)

    return one_hot
