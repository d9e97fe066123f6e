"""The reference feature profile used for drift monitoring, and the PSI that compares against it.

Pure (numpy only, no pandas, no I/O) so the scorer can import it on its monitoring path.

Profile layout (``build_profile`` returns it; ``json.dumps`` takes it as is, strict JSON)::

    {
      "format": 1,
      "n_rows": 16512,
      "features": {
        "median_income": {
          "kind": "numeric",
          "edges": ["-inf", 2.35, 2.9, ..., 6.15, "inf"],   # bin i is [edges[i], edges[i+1])
          "proportions": [0.1, 0.1, ...],                   # len(edges) - 1, sums to 1
          "missing_fraction": 0.0                            # NaNs, kept out of the bins
        },
        "ocean_proximity": {
          "kind": "categorical",
          "categories": ["<1H OCEAN", "INLAND", "ISLAND", "NEAR BAY", "NEAR OCEAN"],
          "proportions": [0.44, 0.32, 0.0002, 0.11, 0.13]
        }
      }
    }

Numeric bins are the training split's deciles (the 0.1 ... 0.9 quantiles, made unique, since a
heavily repeated value can make several quantiles equal), with -inf/+inf at the ends so every
future value falls in a bin. The infinite ends are written as the strings "-inf"/"inf" because
JSON has no infinity; ``float("-inf")`` reads them back, and ``psi`` accepts both forms.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from schemas.features import CATEGORICAL_COLUMN, NUMERIC_COLUMNS, OCEAN_PROXIMITY_CATEGORIES

logger = logging.getLogger(__name__)

PROFILE_FORMAT = 1
N_BINS = 10
"""Quantile bins per numeric feature (fewer when quantiles coincide)."""
DEFAULT_EPSILON = 1e-4
"""Floor for a bin's proportion in PSI, so an empty bin gives a large but finite term."""
OTHER_CATEGORY = "__other__"
"""Bucket for categorical values the profile does not list (only ever seen at scoring time)."""

# Usual reading of PSI: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25


def _numeric_values(array: np.ndarray) -> tuple[np.ndarray, int]:
    """(non-missing float64 values, count of missing values); None and NaN count as missing."""
    if array.dtype.kind in "fiub":
        floats = array.astype(np.float64)
    else:
        floats = np.asarray([np.nan if v is None else float(v) for v in array], dtype=np.float64)
    mask = np.isnan(floats)
    return floats[~mask], int(mask.sum())


def _as_array(values: Iterable[Any]) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.reshape(-1)
    to_numpy = getattr(values, "to_numpy", None)
    if callable(to_numpy):  # a pandas Series, without importing pandas here
        return np.asarray(to_numpy()).reshape(-1)
    return np.asarray(list(values), dtype=object).reshape(-1)


def _edges_to_array(edges: Sequence[Any]) -> np.ndarray:
    return np.asarray([float(e) for e in edges], dtype=np.float64)


def _json_edge(edge: float) -> float | str:
    if math.isinf(edge):
        return "-inf" if edge < 0 else "inf"
    return float(edge)


def _bin_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    # Bin i is [edges[i], edges[i+1]); the outer edges are infinite so every value lands in one.
    interior = edges[1:-1]
    index = np.searchsorted(interior, values, side="right")
    return np.bincount(index, minlength=len(edges) - 1).astype(np.float64)


def numeric_profile(values: Iterable[Any], n_bins: int = N_BINS) -> dict[str, Any]:
    """Quantile bin edges and training proportions for one numeric feature.

    :param values: the feature's training values; NaN/None are counted as missing, not binned.
    :param n_bins: quantile bins wanted (interior edges at the 1/n ... (n-1)/n quantiles).
    :raises ValueError: if there is no non-missing value.
    """
    floats, missing = _numeric_values(_as_array(values))
    if floats.size == 0:
        raise ValueError("cannot profile a numeric feature without any non-missing value")
    quantiles = np.quantile(floats, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    interior = np.unique(quantiles)
    edges = np.concatenate(([-np.inf], interior, [np.inf]))
    counts = _bin_counts(edges, floats)
    return {
        "kind": "numeric",
        "edges": [_json_edge(e) for e in edges],
        "proportions": [float(p) for p in counts / counts.sum()],
        "missing_fraction": float(missing) / float(floats.size + missing),
    }


def categorical_profile(values: Iterable[Any], categories: Sequence[str]) -> dict[str, Any]:
    """Proportion of each known category in the training values of one categorical feature.

    :param values: the feature's training values.
    :param categories: the known categories, in the order to report them.
    """
    array = _as_array(values)
    known = list(categories)
    counts = np.asarray([np.count_nonzero(array == c) for c in known], dtype=np.float64)
    total = float(array.size)
    return {
        "kind": "categorical",
        "categories": known,
        "proportions": [float(c / total) if total else 0.0 for c in counts],
    }


def build_profile(
    X_train: Mapping[str, Any],
    *,
    numeric_columns: Sequence[str] | None = None,
    categorical_columns: Mapping[str, Sequence[str]] | None = None,
    n_bins: int = N_BINS,
) -> dict[str, Any]:
    """The reference profile of the training features (JSON-ready dict, layout in the module doc).

    :param X_train: the training feature frame (a pandas DataFrame, or any mapping of column
        name to values).
    :param numeric_columns: columns to bin; default the feature contract's NUMERIC_COLUMNS.
    :param categorical_columns: column -> known categories; default
        ``{"ocean_proximity": OCEAN_PROXIMITY_CATEGORIES}``.
    :param n_bins: quantile bins per numeric feature.
    """
    if numeric_columns is None or categorical_columns is None:
        if numeric_columns is None:
            numeric_columns = NUMERIC_COLUMNS
        if categorical_columns is None:
            categorical_columns = {CATEGORICAL_COLUMN: OCEAN_PROXIMITY_CATEGORIES}
    features: dict[str, Any] = {}
    n_rows = 0
    for column in numeric_columns:
        values = _as_array(X_train[column])
        n_rows = max(n_rows, values.size)
        features[column] = numeric_profile(values, n_bins=n_bins)
    for column, categories in categorical_columns.items():
        values = _as_array(X_train[column])
        n_rows = max(n_rows, values.size)
        features[column] = categorical_profile(values, categories)
    return {"format": PROFILE_FORMAT, "n_rows": int(n_rows), "features": features}


def _observed_proportions(profile_feature: Mapping[str, Any], values: Iterable[Any]) -> np.ndarray:
    array = _as_array(values)
    if profile_feature["kind"] == "numeric":
        floats, _ = _numeric_values(array)
        counts = _bin_counts(_edges_to_array(profile_feature["edges"]), floats)
    elif profile_feature["kind"] == "categorical":
        categories = list(profile_feature["categories"])
        known = np.asarray([np.count_nonzero(array == c) for c in categories], dtype=np.float64)
        other = float(array.size) - known.sum()
        counts = np.append(known, other)
    else:
        raise ValueError(f"unknown profile feature kind {profile_feature.get('kind')!r}")
    total = counts.sum()
    return counts / total if total else counts


def psi(profile_feature: Mapping[str, Any], values: Iterable[Any], *, epsilon: float = DEFAULT_EPSILON) -> float:
    """Population stability index of ``values`` against one feature's reference profile.

    ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over the profile's bins (numeric) or categories plus
    an "unknown category" bucket (categorical), where ``e_i`` is the training proportion and
    ``a_i`` the observed one, both floored at ``epsilon`` so an empty bin gives a finite value.
    About 0 for the same distribution; > 0.25 is usually read as a significant shift.

    :param profile_feature: ``build_profile(...)["features"][name]``.
    :param values: the recent values of that feature (array, list, or pandas Series). Missing
        numeric values (None/NaN) are left out, as they were when the profile was built.
    :param epsilon: floor for proportions.
    :returns: the PSI, or NaN when there is no (non-missing) value to compare.
    """
    expected = np.asarray(profile_feature["proportions"], dtype=np.float64)
    if profile_feature["kind"] == "categorical":
        expected = np.append(expected, 0.0)  # the training data had no unknown category
    observed = _observed_proportions(profile_feature, values)
    if observed.sum() == 0:
        return float("nan")
    e = np.clip(expected, epsilon, None)
    a = np.clip(observed, epsilon, None)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_by_feature(
    profile: Mapping[str, Any], frame: Mapping[str, Any], *, epsilon: float = DEFAULT_EPSILON
) -> dict[str, float]:
    """PSI of every profiled feature present in ``frame`` (a DataFrame or mapping of columns).

    :param profile: the whole profile from ``build_profile`` (or the logged JSON).
    :param frame: recent feature values, e.g. the feature columns the scorer keeps (``consumer.core.features``).
    :param epsilon: floor for proportions, as in ``psi``.
    """
    return {
        name: psi(feature, frame[name], epsilon=epsilon)
        for name, feature in profile["features"].items()
        if name in frame
    }
