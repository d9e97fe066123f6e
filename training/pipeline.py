"""The model pipelines: one pure builder per model kind, no I/O, no MLflow.

Four scikit-learn estimators and LightGBM (its scikit-learn API, ``LGBMRegressor``): every kind is the same
preprocessing ColumnTransformer followed by its estimator, so every kind takes the raw record's frame.
``FLAVOURS`` says which MLflow flavour logs each (``lightgbm`` for LightGBM, ``sklearn`` for the rest).

Every pipeline takes exactly the frame ``consumer.core.features.to_frame`` builds (FEATURE_COLUMNS in
order, numeric float64 with NaN allowed, ``ocean_proximity`` object dtype) and does its own
preprocessing, so the logged model is the whole transform + estimator and the scorer never
re-implements a feature step:

- numeric columns: median imputation (``total_bedrooms`` is the one that is missing in the data,
  but a record may miss any numeric value after validation rules change, so all are imputed);
  standard scaling only for the linear model, where it matters (trees are scale-invariant);
- ``ocean_proximity``: one-hot over the five known categories with ``handle_unknown="ignore"``,
  so an unseen category becomes all zeros instead of an error on the scoring path.
"""

from __future__ import annotations

import logging

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from schemas.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS, OCEAN_PROXIMITY_CATEGORIES

logger = logging.getLogger(__name__)

MODEL_KINDS: tuple[str, ...] = (
    "linear_regression",
    "decision_tree",
    "random_forest",
    "hist_gradient_boosting",
    "lightgbm",
)
"""The model kinds ``build_pipeline`` knows, in training order (cheapest first)."""

FLAVOURS: dict[str, str] = {kind: "lightgbm" if kind == "lightgbm" else "sklearn" for kind in MODEL_KINDS}
"""The MLflow flavour each kind is logged with (``mlflow.sklearn`` / ``mlflow.lightgbm``)."""

_ALIASES: dict[str, str] = {
    "linear": "linear_regression",
    "linearregression": "linear_regression",
    "lr": "linear_regression",
    "tree": "decision_tree",
    "decisiontree": "decision_tree",
    "decisiontreeregressor": "decision_tree",
    "dt": "decision_tree",
    "forest": "random_forest",
    "randomforest": "random_forest",
    "randomforestregressor": "random_forest",
    "rf": "random_forest",
    "hgb": "hist_gradient_boosting",
    "histgradientboosting": "hist_gradient_boosting",
    "histgradientboostingregressor": "hist_gradient_boosting",
    "gbm": "hist_gradient_boosting",
    "lgbm": "lightgbm",
    "lgb": "lightgbm",
    "lgbmregressor": "lightgbm",
}

ESTIMATOR_STEP = "model"
"""Name of the final step of every pipeline (``pipeline.named_steps["model"]`` is the estimator)."""


def normalize_kind(name: str) -> str:
    """Map a user-facing model name to a kind in MODEL_KINDS.

    Accepts the kinds themselves and common spellings ("RandomForest", "rf", "hgb", "linear").

    :param name: the name given on the command line or by a caller.
    :raises ValueError: naming the known kinds when ``name`` is not one of them.
    """
    key = name.strip().lower().replace("-", "_")
    if key in MODEL_KINDS:
        return key
    compact = key.replace("_", "")
    if compact in _ALIASES:
        return _ALIASES[compact]
    raise ValueError(f"unknown model kind {name!r}: choose from {', '.join(MODEL_KINDS)}")


def parse_kinds(spec: str | None) -> tuple[str, ...]:
    """Parse a comma list of model names (``--models``) into unique kinds, keeping MODEL_KINDS order.

    :param spec: e.g. ``"linear,rf"``; None or empty means all kinds.
    """
    if not spec or not spec.strip():
        return MODEL_KINDS
    wanted = {normalize_kind(part) for part in spec.split(",") if part.strip()}
    return tuple(kind for kind in MODEL_KINDS if kind in wanted)


def _preprocessor(*, scale: bool) -> ColumnTransformer:
    numeric_steps: list[tuple[str, object]] = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    categorical = OneHotEncoder(
        categories=[list(OCEAN_PROXIMITY_CATEGORIES)],
        handle_unknown="ignore",
        sparse_output=False,
        dtype=float,
    )
    return ColumnTransformer(
        [
            ("num", Pipeline(numeric_steps), list(NUMERIC_COLUMNS)),
            ("cat", categorical, [CATEGORICAL_COLUMN]),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )


def build_pipeline(kind: str, *, seed: int = 42) -> Pipeline:
    """Build an unfitted preprocessing + estimator Pipeline for one model kind.

    Pure: no data, no I/O; the same ``(kind, seed)`` always gives an identical unfitted pipeline.
    Sizes are kept modest on purpose (the forest especially) so that training all four kinds on
    the full 20,640 rows stays well under two minutes on two cores and the logged model stays small.

    :param kind: one of MODEL_KINDS (or an alias accepted by ``normalize_kind``).
    :param seed: random_state for every estimator that has one.
    :raises ValueError: for an unknown kind.
    """
    kind = normalize_kind(kind)
    estimator: object
    if kind == "linear_regression":
        estimator = LinearRegression()
    elif kind == "decision_tree":
        estimator = DecisionTreeRegressor(max_depth=12, min_samples_leaf=5, random_state=seed)
    elif kind == "random_forest":
        # n_jobs=1: the process limits its own thread pools; parallelism comes from processes.
        estimator = RandomForestRegressor(
            n_estimators=50, max_depth=16, min_samples_leaf=2, n_jobs=1, random_state=seed
        )
    elif kind == "hist_gradient_boosting":
        estimator = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.1, random_state=seed)
    else:
        # Imported here: only this kind needs LightGBM. n_jobs=1 as for the forest; verbose=-1 keeps it quiet.
        from lightgbm import LGBMRegressor

        estimator = LGBMRegressor(n_estimators=300, learning_rate=0.05, num_leaves=31, min_child_samples=20,
                                  subsample=1.0, n_jobs=1, random_state=seed, verbose=-1)
    return Pipeline(
        [
            ("preprocess", _preprocessor(scale=kind == "linear_regression")),
            (ESTIMATOR_STEP, estimator),
        ]
    )
