"""Register a custom ``mlflow.pyfunc.PythonModel`` under the scorer's registered model: the generic path.

    python examples/register_custom_pyfunc.py --inner-version 3 [--promote]

wraps version 3 of ``california_housing_best_model`` in ``examples/clipped_model.py`` (its predictions clipped to
the census range), logs it with a signature taking the housing record and returning one number per row and an
input example, registers it as the next version and, with ``--promote``, points the ``champion`` alias at it.
A running scorer picks it up on its next registry poll (or announce it: ``POST /api/model/reload``); it
serves it through ``mlflow.pyfunc`` with one DataFrame per batch.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

MODEL_CODE = Path(__file__).resolve().parent / "clipped_model.py"
EXAMPLE_ROWS = [
    {"longitude": -122.23, "latitude": 37.88, "housing_median_age": 41.0, "total_rooms": 880.0,
     "total_bedrooms": 129.0, "population": 322.0, "households": 126.0, "median_income": 8.3252,
     "ocean_proximity": "NEAR BAY"},
    {"longitude": -118.3, "latitude": 34.05, "housing_median_age": 20.0, "total_rooms": 2500.0,
     "total_bedrooms": None, "population": 1400.0, "households": 480.0, "median_income": 3.1,
     "ocean_proximity": "<1H OCEAN"},
    {"longitude": -119.8, "latitude": 36.75, "housing_median_age": 15.0, "total_rooms": 3100.0,
     "total_bedrooms": 600.0, "population": 1700.0, "households": 560.0, "median_income": 2.4,
     "ocean_proximity": "INLAND"},
]


def example_frame():  # type: ignore[no-untyped-def]
    """The input example: the record's nine columns, numbers as float64 (NaN for a missing total_bedrooms)."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(EXAMPLE_ROWS)
    numeric = [c for c in frame.columns if c != "ocean_proximity"]
    frame[numeric] = frame[numeric].astype(np.float64)
    frame["ocean_proximity"] = frame["ocean_proximity"].astype(object)
    return frame


def register(tracking_uri: str, model_name: str, inner_version: str, *, alias: str | None = None) -> str:
    """Log the wrapper around ``models:/<model_name>/<inner_version>`` and register it; returns its version."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("housing-custom-pyfunc")
    inner_uri = f"models:/{model_name}/{inner_version}"
    example = example_frame()
    inner_predictions = mlflow.pyfunc.load_model(inner_uri).predict(example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signature = infer_signature(example, inner_predictions)
    with mlflow.start_run(run_name=f"clipped v{inner_version}"):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(MODEL_CODE), artifacts={"inner": inner_uri},
            signature=signature, input_example=example,
            pip_requirements=["mlflow", "numpy", "pandas", "scikit-learn", "lightgbm", "skops"],
        )
    version = str(mlflow.register_model(info.model_uri, model_name).version)
    if alias:
        MlflowClient(tracking_uri=tracking_uri).set_registered_model_alias(model_name, alias, version)
    return version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--model-name", default=os.environ.get("MLFLOW_MODEL_NAME", "california_housing_best_model"))
    parser.add_argument("--inner-version", required=True, help="the registered version to wrap")
    parser.add_argument("--promote", action="store_true", help="point the champion alias at the new version")
    args = parser.parse_args()
    version = register(args.tracking_uri, args.model_name, args.inner_version,
                       alias="champion" if args.promote else None)
    print(f"registered {args.model_name} version {version}: clipped v{args.inner_version}"
          + (" (@champion)" if args.promote else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
