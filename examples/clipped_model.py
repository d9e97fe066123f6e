"""A custom ``mlflow.pyfunc.PythonModel``: another registered model's predictions, post-processed.

The census capped house values at $500,001 (and the data's lowest is $14,999), so a value outside that range is
an artefact of the inner model, not a price. This wrapper loads the inner model (an artifact of this one, so
the version is pinned and travels with it) and clips its predictions to the range.

Logged as "models from code" (``python_model=<this file>``): MLflow stores this file with the model and runs it
at load time, so nothing is pickled and the scorer needs no package of this project to load it.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

LOWEST = 14_999.0
HIGHEST = 500_001.0


class ClippedToCensusRange(PythonModel):
    """The inner model's prediction per row, clipped to [LOWEST, HIGHEST]."""

    def load_context(self, context):  # type: ignore[no-untyped-def]  # MLflow's hook; hints would be read as a schema
        self.inner = mlflow.pyfunc.load_model(context.artifacts["inner"])

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        # One call for the whole frame the scorer hands in (one per batch), never per row.
        predictions = np.asarray(self.inner.predict(model_input), dtype=np.float64).reshape(-1)
        return np.clip(predictions, LOWEST, HIGHEST)


mlflow.models.set_model(ClippedToCensusRange())
