"""The drift profile on data small enough to compute by hand: exact edges, proportions, missing fractions,
the defaults of build_profile and PSI's value on a known shift (mutation testing found the decile tests of
test_profile.py blind to these)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from consumer.core.profile import (
    N_BINS,
    PROFILE_FORMAT,
    build_profile,
    categorical_profile,
    numeric_profile,
    psi,
    psi_by_feature,
)
from schemas.features import NUMERIC_COLUMNS
from schemas.validation import OCEAN_PROXIMITY_CATEGORIES


def test_numeric_profile_of_four_values_in_four_bins() -> None:
    profile = numeric_profile([4.0, 1.0, None, 3.0, 2.0], n_bins=4)
    assert profile == {
        "kind": "numeric",
        "edges": ["-inf", 1.75, 2.5, 3.25, "inf"],
        "proportions": [0.25, 0.25, 0.25, 0.25],
        "missing_fraction": 0.2,
    }


def test_numeric_profile_default_bins_are_deciles() -> None:
    profile = numeric_profile(np.arange(1, 101, dtype=np.float64))
    assert len(profile["edges"]) == N_BINS + 1 == 11
    assert profile["edges"][1] == pytest.approx(10.9) and profile["edges"][-2] == pytest.approx(90.1)


def test_numeric_profile_of_one_value() -> None:
    assert numeric_profile([5.0]) == {"kind": "numeric", "edges": ["-inf", 5.0, "inf"], "proportions": [0.0, 1.0],
                                      "missing_fraction": 0.0}


def test_numeric_profile_without_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="without any non-missing value"):
        numeric_profile([None, math.nan])


def test_categorical_profile_counts_known_categories_only() -> None:
    assert categorical_profile(["a", "b", "a", "zzz"], ["a", "b", "c"]) == {
        "kind": "categorical", "categories": ["a", "b", "c"], "proportions": [0.5, 0.25, 0.0]}
    assert categorical_profile([], ["a"])["proportions"] == [0.0]


def test_build_profile_defaults_each_column_set_on_its_own() -> None:
    frame = {name: [1.0, 2.0, 3.0] for name in NUMERIC_COLUMNS} | {"ocean_proximity": ["INLAND"] * 3, "c": ["x"] * 3}
    both = build_profile(frame)
    assert both["format"] == PROFILE_FORMAT and both["n_rows"] == 3
    assert list(both["features"]) == [*NUMERIC_COLUMNS, "ocean_proximity"]
    assert both["features"]["ocean_proximity"]["categories"] == list(OCEAN_PROXIMITY_CATEGORIES)
    only_numeric = build_profile(frame, numeric_columns=["latitude"])
    assert list(only_numeric["features"]) == ["latitude", "ocean_proximity"]
    only_categorical = build_profile(frame, categorical_columns={"c": ["x"]})
    assert list(only_categorical["features"]) == [*NUMERIC_COLUMNS, "c"]
    given = build_profile(frame, numeric_columns=["latitude"], categorical_columns={"c": ["x"]}, n_bins=2)
    assert list(given["features"]) == ["latitude", "c"]
    assert given["features"]["latitude"]["edges"] == ["-inf", 2.0, "inf"]


def test_n_rows_is_the_longest_column() -> None:
    frame = {"a": [1.0, 2.0], "c": ["x", "y", "x"]}
    assert build_profile(frame, numeric_columns=["a"], categorical_columns={"c": ["x"]})["n_rows"] == 3
    assert build_profile({"a": [1.0]}, numeric_columns=["a"], categorical_columns={})["n_rows"] == 1


def test_psi_of_a_known_shift() -> None:
    feature = {"kind": "numeric", "edges": ["-inf", 0.0, "inf"], "proportions": [0.5, 0.5]}
    observed = [-1.0, 1.0, 1.0, 1.0]  # a = (0.25, 0.75)
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi(feature, observed) == pytest.approx(expected)
    assert psi(feature, [0.0]) == pytest.approx((1 - 0.5) * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5),
                                                rel=1e-3)  # 0.0 is in the upper bin: [edge, next)


def test_psi_of_unknown_categories_uses_the_extra_bucket() -> None:
    feature = {"kind": "categorical", "categories": ["a"], "proportions": [1.0]}
    assert psi(feature, ["a", "a"]) == pytest.approx(0.0, abs=1e-9)
    assert psi(feature, ["zzz"]) > 5


def test_psi_by_feature_skips_absent_columns() -> None:
    profile = {"features": {"a": {"kind": "numeric", "edges": ["-inf", "inf"], "proportions": [1.0]},
                            "b": {"kind": "categorical", "categories": ["x"], "proportions": [1.0]}}}
    assert psi_by_feature(profile, {"a": [1.0, 2.0]}) == {"a": pytest.approx(0.0, abs=1e-9)}
