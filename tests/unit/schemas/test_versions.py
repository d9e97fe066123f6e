"""Model versions as messages carry them."""

from __future__ import annotations

from schemas.versions import version_from_uri, version_number


def test_version_from_uri() -> None:
    assert version_from_uri("models:/m/7") == "7"
    assert version_from_uri("models:/m@champion") is None
    assert version_from_uri(None) is None


def test_version_number_orders_numeric_versions_and_treats_others_as_zero() -> None:
    assert version_number("12") == 12 > version_number("9")
    assert version_number(None) == 0
    assert version_number("champion") == 0
