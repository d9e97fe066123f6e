"""The reference profile at its edges: values all in the first bin are counted against every bin (the same PSI
as the mirror case, all in the last), no columns profile no rows, and no value to bin is named."""

from __future__ import annotations

import pytest

from consumer.core.profile import build_profile, numeric_profile, psi

TWO_BINS = numeric_profile([0.0, 1.0, 2.0, 3.0], n_bins=2)


def test_the_two_bin_profile() -> None:
    assert TWO_BINS == {"kind": "numeric", "edges": ["-inf", 1.5, "inf"], "proportions": [0.5, 0.5],
                        "missing_fraction": 0.0}


def test_values_all_in_the_first_bin_drift_as_much_as_values_all_in_the_last() -> None:
    assert psi(TWO_BINS, [0.0] * 4) == pytest.approx(psi(TWO_BINS, [3.0] * 4), rel=1e-12)
    assert psi(TWO_BINS, [0.0] * 4) > 4.0


def test_no_columns_profile_no_rows() -> None:
    assert build_profile({}, numeric_columns=[], categorical_columns={}) == {
        "format": build_profile({}, numeric_columns=[], categorical_columns={})["format"], "n_rows": 0,
        "features": {}}


def test_a_feature_without_any_value_is_named() -> None:
    with pytest.raises(ValueError) as caught:
        numeric_profile([None, float("nan")])
    assert str(caught.value) == "cannot profile a numeric feature without any non-missing value"
