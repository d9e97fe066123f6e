"""The model handle: one immutable object naming the model that makes every prediction.

The scorer holds exactly one current handle and replaces the reference between batches, so a batch
is always scored by one model and every prediction can name the version that made it.
This module imports no MLflow: loading lives in consumer/models/loader.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from consumer.core import compiled_trees
from consumer.core.fastpath import verified_predictor
from consumer.core.features import FeatureColumns, as_frame, model_frame
from consumer.core.signature import DEFAULT_PLAN, InputPlan, Signature
from schemas.versions import version_number

logger = logging.getLogger(__name__)

ModelSource = Literal["registry", "fallback", "memory"]
COMPILED_TREES = "compiled (tl2cgen)"
PER_TREE = "per-tree (scikit-learn)"
LIGHTGBM_PREDICT = "lightgbm's own predict"
PYFUNC = "python_function"
"""The flavour of a model MLflow knows only as a pyfunc (a custom ``mlflow.pyfunc.PythonModel``, and any flavour
the scorer has no fast path for is served through its pyfunc)."""


class OutputShapeError(ValueError):
    """A model's output is not one number per row."""


def one_per_row(output: Any, rows: int | None = None) -> np.ndarray:
    """A model's output as one float64 per row: a 1-D array, a one-column frame or matrix, a Series or a list.

    :raises ValueError: two or more values per row, or (with ``rows``) not one per input row.
    """
    if isinstance(output, pd.DataFrame | pd.Series):
        output = output.to_numpy()
    values = np.asarray(output, dtype=np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise OutputShapeError(f"the model returned an output of shape {values.shape}: one number per row expected")
    if rows is not None and values.shape[0] != rows:
        raise OutputShapeError(f"model returned {values.shape[0]} predictions for {rows} rows")
    return values


@dataclass(frozen=True)
class ModelHandle:
    """A loaded model plus the registry coordinates it came from."""

    model: Any
    """Anything with ``predict(frame) -> array``: the native model (a scikit-learn Pipeline, a LightGBM model),
    whose verified fast path takes the batch's columns without building a frame, or an ``mlflow.pyfunc``
    model given the frame its signature asks for (``plan``)."""
    name: str
    """Registered model name, e.g. ``california_housing_best_model``."""
    version: str
    """Registry version as a string ("3"); for the fallback file, the version recorded in model.json."""
    alias: str | None = None
    """Alias it was resolved by (``champion``), if any."""
    stage: str | None = None
    """Stage of the version when loaded (``Production``), if any."""
    uri: str = ""
    """Where it was loaded from: ``models:/name/3`` or a file path."""
    run_id: str | None = None
    source: ModelSource = "registry"
    """``registry`` or ``fallback`` (the local pickle, used when the registry cannot be reached)."""
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    input_example: Any = None
    """The version's stored input example (a DataFrame), used to check a model before it is swapped in."""
    reference_profile: Mapping[str, Any] | None = None
    """The training split's feature profile (bin edges and proportions) for drift monitoring."""
    flavour: str = "sklearn"
    """The MLflow flavour the version was logged with (``sklearn``, ``lightgbm``, ``python_function``...)."""
    signature: Signature | None = None
    """The version's signature (None: it has none; ``plan`` then comes from its input example)."""
    plan: InputPlan = DEFAULT_PLAN
    """The record columns the model is given and their dtypes, checked against the signature by the loader."""
    _fast_predict: Callable[[Any], np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)
    """Set once by ``__post_init__``: the verified numpy fast path, or None to call ``model.predict``."""

    _tree_walk: str | None = field(default=None, init=False, repr=False, compare=False)
    """How a tree ensemble's trees are walked (``COMPILED_TREES``, or ``_plain_walk`` and why), None for others."""
    _compile_thread: threading.Thread | None = field(default=None, init=False, repr=False, compare=False)
    _plain_walk: str = field(default=PER_TREE, init=False, repr=False, compare=False)
    """The walk without compiled trees: ``PER_TREE``, or ``LIGHTGBM_PREDICT`` for a LightGBM booster."""

    def __post_init__(self) -> None:
        # Where the model has the training pipeline's shape, a numpy path that predicts exactly what it does
        # without pandas per call (consumer/core/fastpath.py); checked here, once per loaded model.
        fast = verified_predictor(self.model, self.input_example, self.plan)
        object.__setattr__(self, "_fast_predict", fast)
        if fast is not None:
            self._start_compiled_trees()

    def _start_compiled_trees(self) -> None:
        """Use the ensemble's compiled trees (consumer/core/compiled_trees.py) once they are built and checked:
        at once from the cache, else after a background compile; the per-tree walk serves until then."""
        try:
            estimator = compiled_trees.tree_estimator(self.model)
        except Exception:  # an odd model: it simply has no compiled trees
            estimator = None
        if estimator is None:
            return
        plain = LIGHTGBM_PREDICT if compiled_trees.is_booster(estimator) else PER_TREE
        object.__setattr__(self, "_plain_walk", plain)
        if not compiled_trees.enabled():
            self._set_tree_walk(plain)
            return
        reason = compiled_trees.not_compiled_reason(estimator) or compiled_trees.unavailable_reason()
        if reason is not None:
            self._set_tree_walk(f"{plain}: {reason}")
            return
        try:
            library = compiled_trees.cached(estimator)
        except compiled_trees.CompiledTreesDisagree as exc:
            logger.warning("%s: not using the cached compiled trees: %s", self.label, exc)
            self._set_tree_walk(f"{plain}: {compiled_trees.FAILED_CHECK}")
            return
        except Exception as exc:
            self._set_tree_walk(f"{plain}: {type(exc).__name__} reading the model's trees")
            return
        if library is not None:
            self._use_compiled_trees(library)
            return
        self._set_tree_walk(f"{plain}, compiling")
        thread = compiled_trees.compile_in_background(
            estimator, self._use_compiled_trees, lambda why: self._set_tree_walk(f"{plain}: {why}"))
        object.__setattr__(self, "_compile_thread", thread)

    def _use_compiled_trees(self, library: compiled_trees.CompiledTrees) -> None:
        checked = verified_predictor(self.model, self.input_example, self.plan, trees=library.predict,
                                     rtol=compiled_trees.RTOL)
        if checked is None:
            logger.warning("%s: the compiled trees disagree with the model on the check rows; the per-tree walk "
                           "stays", self.label)
            self._set_tree_walk(f"{self._plain_walk}: {compiled_trees.FAILED_CHECK}")
            return
        # one reference swap: a batch in flight finishes on the function it started with
        object.__setattr__(self, "_fast_predict", checked)
        self._set_tree_walk(COMPILED_TREES)
        logger.info("%s: predicting with compiled trees (%s)", self.label, library.library.name)

    def _set_tree_walk(self, walk: str) -> None:
        object.__setattr__(self, "_tree_walk", walk)

    @property
    def tree_walk(self) -> str | None:
        """``compiled (tl2cgen)``, ``per-tree (scikit-learn)`` (with why, or ``, compiling``), or None (not a
        tree ensemble on the fast path)."""
        return self._tree_walk

    def wait_compiled(self, timeout: float) -> bool:
        """Wait for a background compile to finish (True if none runs by then): tests and benchmarks."""
        thread = self._compile_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    @property
    def fast_path(self) -> bool:
        """Whether predictions go through the verified numpy fast path."""
        return self._fast_predict is not None

    @property
    def predict_path(self) -> str:
        """How a batch is predicted: ``numpy fast path`` or ``dataframe`` (the plan's frame, once per batch)."""
        return "numpy fast path" if self._fast_predict is not None else "dataframe"

    def predict(self, features: FeatureColumns | pd.DataFrame) -> np.ndarray:
        """One vectorised call for a whole batch (its feature columns or its frame); returns float64 predictions,
        one per row.

        :raises OutputShapeError: the model returned more than one value per row.
        """
        if self._fast_predict is not None:
            return self._fast_predict(features)
        frame = as_frame(features) if self.plan.all_features else model_frame(features, self.plan.columns,
                                                                                self.plan.dtypes)
        return one_per_row(self.model.predict(frame))

    @property
    def version_number(self) -> int:
        """The version as an int for ordering (stale-event checks); 0 when it is not numeric."""
        return version_number(self.version)

    def describe(self) -> dict[str, Any]:
        """JSON-ready metadata (the shape /api/model/info reports as model_metadata)."""
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "stage": self.stage,
            "model_uri": self.uri,
            "run_id": self.run_id,
            "source": self.source,
            "loaded_at": self.loaded_at,
            "load_seconds": round(self.load_seconds, 4),
            "flavour": self.flavour,
            "predict_path": self.predict_path,
            "tree_walk": self.tree_walk,
            "input_columns": list(self.plan.columns),
            "signature": self.signature.describe() if self.signature is not None else None,
        }

    @property
    def label(self) -> str:
        """Short human name for logs: ``california_housing_best_model v3 (@champion)``."""
        via = f" (@{self.alias})" if self.alias else (f" ({self.stage})" if self.stage else "")
        return f"{self.name} v{self.version}{via}" + (" [fallback file]" if self.source == "fallback" else "")
