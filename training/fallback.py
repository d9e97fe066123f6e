"""The local fallback model a scorer loads when the registry cannot be reached, and its metadata.

Three files in one directory (``TrainingConfig.model_file``'s): ``model.pkl`` (a plain pickle of the best
Pipeline, readable by ``pickle.load`` and ``joblib.load``), ``model.json`` (what the version is, how it
scored, what it takes) and ``reference_profile.json``. Each is replaced atomically, ``model.json`` last.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import sklearn

from schemas.features import TARGET_COLUMN
from training.pipeline import FLAVOURS
from training.results import ModelResult, TrainingConfig
from training.tracking import PROFILE_ARTIFACT, Registration

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    # A scorer may read the fallback at any time: it must see the old file or the new one, never half.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a scorer under another user must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_json(path: Path, document: Mapping[str, Any]) -> None:
    _atomic_write_bytes(path, (json.dumps(document, indent=2, allow_nan=False) + "\n").encode())


def feature_schema(frame: pd.DataFrame) -> dict[str, Any]:
    """Columns and dtypes of the feature frame the model takes (recorded in model.json)."""
    return {"columns": list(frame.columns), "dtypes": {c: str(frame[c].dtype) for c in frame.columns}}


def fallback_metadata(
    config: TrainingConfig, registration: Registration, best: ModelResult, *, model_uri: str,
    results: Sequence[ModelResult], features: pd.DataFrame, parent_run_id: str, trained_at: str, sha: str | None,
    n_train: int,
) -> dict[str, Any]:
    """The ``model.json`` document: the registered version, its metrics, and the feature frame it takes."""
    return {
        "name": config.model_name,
        "version": registration.version,
        "run_id": best.run_id,
        "model_uri": model_uri,
        "model_kind": best.kind,
        "flavour": FLAVOURS.get(best.kind, "sklearn"),
        "metrics": best.metrics,
        "trained_at": trained_at,
        "aliases": list(registration.aliases),
        "stage": registration.stage,
        "feature_schema": feature_schema(features),
        "target": TARGET_COLUMN,
        "sklearn_version": sklearn.__version__,
        "python_version": platform.python_version(),
        "tracking_uri": config.tracking_uri,
        "experiment": config.experiment,
        "parent_run_id": parent_run_id,
        "seed": config.seed,
        "n_train": n_train,
        "sample": config.sample,
        "git_sha": sha,
        "all_metrics": {r.kind: r.metrics for r in results},
    }


def write_fallback(
    config: TrainingConfig, pipeline: Pipeline, metadata: Mapping[str, Any], profile: Mapping[str, Any]
) -> tuple[Path, Path, Path]:
    """Write ``model.pkl``, ``reference_profile.json`` and ``model.json``; returns their paths in that order."""
    model_path = config.model_file
    metadata_path = model_path.with_suffix(".json")
    profile_path = model_path.parent / PROFILE_ARTIFACT
    # A plain pickle (not joblib's format) so both pickle.load and joblib.load read it.
    _atomic_write_bytes(model_path, pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL))
    _atomic_write_json(profile_path, profile)
    _atomic_write_json(metadata_path, metadata)  # last: its presence means the set is complete
    return model_path, metadata_path, profile_path
