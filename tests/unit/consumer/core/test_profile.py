"""Unit tests of the reference feature profile and PSI (consumer/core/profile.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from config.settings import PROJECT_ROOT
from consumer.core.features import CATEGORICAL_COLUMN, FEATURE_COLUMNS, NUMERIC_COLUMNS, OCEAN_PROXIMITY_CATEGORIES
from consumer.core.profile import (
    PSI_SIGNIFICANT,
    build_profile,
    categorical_profile,
    numeric_profile,
    psi,
    psi_by_feature,
)
from training.data import load_housing, split

DATA = PROJECT_ROOT / "data" / "housing.csv"


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    X_train, X_test, _, _ = split(load_housing(DATA), seed=42)
    return X_train, X_test


@pytest.fixture(scope="module")
def profile(frames: tuple[pd.DataFrame, pd.DataFrame]) -> dict:
    return build_profile(frames[0])


def test_profile_covers_every_feature_and_is_strict_json(profile: dict, frames: tuple) -> None:
    assert set(profile["features"]) == set(FEATURE_COLUMNS)
    assert profile["n_rows"] == len(frames[0])
    text = json.dumps(profile, allow_nan=False)  # no Infinity/NaN tokens
    assert json.loads(text) == profile


def test_numeric_bins_are_training_deciles_with_infinite_ends(profile: dict) -> None:
    income = profile["features"]["median_income"]
    edges = [float(e) for e in income["edges"]]

    assert income["kind"] == "numeric"
    assert income["edges"][0] == "-inf" and income["edges"][-1] == "inf"
    assert len(edges) == 11  # 10 bins for a continuous feature
    assert all(a < b for a, b in zip(edges, edges[1:], strict=False))
    assert len(income["proportions"]) == 10
    assert sum(income["proportions"]) == pytest.approx(1.0)
    assert income["proportions"] == pytest.approx([0.1] * 10, abs=0.01)


def test_every_numeric_feature_has_unique_increasing_edges(profile: dict) -> None:
    for name in NUMERIC_COLUMNS:
        feature = profile["features"][name]
        edges = [float(e) for e in feature["edges"]]
        assert all(a < b for a, b in zip(edges, edges[1:], strict=False)), name
        assert len(feature["proportions"]) == len(edges) - 1
        assert sum(feature["proportions"]) == pytest.approx(1.0)


def test_repeated_values_collapse_quantile_edges() -> None:
    feature = numeric_profile([5.0] * 90 + list(range(10)))
    edges = [float(e) for e in feature["edges"]]
    assert len(edges) < 11
    assert len(set(edges)) == len(edges)
    assert sum(feature["proportions"]) == pytest.approx(1.0)


def test_missing_values_are_counted_not_binned(frames: tuple) -> None:
    # The seed-42 split puts all 207 rows without total_bedrooms in the test part, so profile that.
    held_out = frames[1]["total_bedrooms"]
    assert held_out.isna().sum() == 207
    bedrooms = build_profile(frames[1])["features"]["total_bedrooms"]
    assert bedrooms["missing_fraction"] == pytest.approx(held_out.isna().mean())
    assert sum(bedrooms["proportions"]) == pytest.approx(1.0)
    assert numeric_profile([1.0, None, float("nan"), 2.0])["missing_fraction"] == pytest.approx(0.5)


def test_categorical_proportions_follow_the_known_categories(profile: dict, frames: tuple) -> None:
    ocean = profile["features"][CATEGORICAL_COLUMN]
    counts = frames[0][CATEGORICAL_COLUMN].value_counts(normalize=True)

    assert ocean["kind"] == "categorical"
    assert ocean["categories"] == list(OCEAN_PROXIMITY_CATEGORIES)
    assert ocean["proportions"] == pytest.approx([counts.get(c, 0.0) for c in OCEAN_PROXIMITY_CATEGORIES])
    assert sum(ocean["proportions"]) == pytest.approx(1.0)


def test_psi_of_the_training_values_themselves_is_zero(profile: dict, frames: tuple) -> None:
    for name in FEATURE_COLUMNS:
        assert psi(profile["features"][name], frames[0][name]) == pytest.approx(0.0, abs=1e-12), name


def test_psi_of_the_held_out_split_is_small(profile: dict, frames: tuple) -> None:
    scores = psi_by_feature(profile, frames[1])
    assert set(scores) == set(FEATURE_COLUMNS)
    assert max(scores.values()) < 0.02


def test_psi_of_a_shifted_distribution_is_large(profile: dict, frames: tuple) -> None:
    income = frames[1]["median_income"]
    assert psi(profile["features"]["median_income"], income * 1.6) > PSI_SIGNIFICANT
    assert psi(profile["features"]["median_income"], income + 3.0) > 1.0
    assert psi(profile["features"]["housing_median_age"], np.full(500, 52.0)) > 1.0


def test_psi_of_a_categorical_shift_and_of_unknown_categories_is_large(profile: dict) -> None:
    ocean = profile["features"][CATEGORICAL_COLUMN]
    assert psi(ocean, ["INLAND"] * 1000) > PSI_SIGNIFICANT
    assert psi(ocean, ["ON THE MOON"] * 100) > 1.0
    expected_mix = [c for c, p in zip(ocean["categories"], ocean["proportions"], strict=True)
                    for _ in range(round(p * 10000))]
    assert psi(ocean, expected_mix) < 0.001


def test_psi_grows_with_the_shift(profile: dict, frames: tuple) -> None:
    rooms = frames[1]["total_rooms"]
    scores = [psi(profile["features"]["total_rooms"], rooms * factor) for factor in (1.0, 1.1, 1.3, 2.0)]
    assert scores == sorted(scores)
    assert scores[0] < 0.02 < scores[-1]


def test_psi_accepts_lists_arrays_series_and_a_json_round_trip(profile: dict, frames: tuple) -> None:
    values = frames[1]["latitude"]
    reloaded = json.loads(json.dumps(profile))["features"]["latitude"]
    expected = psi(profile["features"]["latitude"], values)
    assert psi(reloaded, values) == pytest.approx(expected)
    assert psi(reloaded, values.to_numpy()) == pytest.approx(expected)
    assert psi(reloaded, values.tolist()) == pytest.approx(expected)
    float_edges = dict(reloaded, edges=[float(e) for e in reloaded["edges"]])
    assert psi(float_edges, values) == pytest.approx(expected)


def test_psi_ignores_missing_values_and_is_nan_without_data(profile: dict, frames: tuple) -> None:
    bedrooms = profile["features"]["total_bedrooms"]
    values = frames[1]["total_bedrooms"]
    with_nones = [None if math.isnan(v) else v for v in values]
    assert psi(bedrooms, with_nones) == pytest.approx(psi(bedrooms, values.dropna()))
    assert math.isnan(psi(bedrooms, []))
    assert math.isnan(psi(bedrooms, [None, float("nan")]))


def test_psi_is_finite_when_an_expected_bin_is_empty() -> None:
    feature = categorical_profile(["a"] * 10, ["a", "b"])
    assert feature["proportions"] == [1.0, 0.0]
    score = psi(feature, ["b"] * 10)
    assert math.isfinite(score) and score > 1.0


def test_unknown_profile_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown profile feature kind"):
        psi({"kind": "text", "proportions": [1.0]}, ["x"])
