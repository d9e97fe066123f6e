"""schemas.wire at its edges: an empty value is not Avro framing, and a bad single-object magic is named by
its first two bytes only."""

from __future__ import annotations

import pytest

from schemas.errors import DecodeError
from schemas.wire import WireFormat, detect_format


def test_an_empty_value_is_left_to_the_json_reader() -> None:
    assert detect_format(b"") is WireFormat.JSON


def test_a_bad_single_object_magic_names_the_two_bytes() -> None:
    with pytest.raises(DecodeError) as caught:
        detect_format(b"\xc3\x02\x05\x06")
    assert (caught.value.reason, caught.value.message) == (
        "bad_magic", "single-object Avro must start C3 01, got c3 02")
