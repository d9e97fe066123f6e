"""Small helpers of schemas at their limits: short_repr and the message cut, now_ms against the system clock, the
messages of empty and non-object values, and one mock registry per URL."""

from __future__ import annotations

import time

import pytest

from schemas.clock import now_ms
from schemas.codecs import RecordDecoder
from schemas.errors import MAX_MESSAGE_CHARS, DecodeError, short_repr
from schemas.registry import registry_client
from schemas.wire import loads_json_object


def test_short_repr_keeps_a_repr_of_exactly_the_limit_and_cuts_a_longer_one() -> None:
    assert short_repr("a" * 8, limit=10) == "'aaaaaaaa'"  # 10 characters: kept
    assert short_repr("a" * 9, limit=10) == "'aaaaaa..."  # 11: cut to 10 with the ellipsis
    assert len(short_repr("x" * 1000)) == 60


def test_now_ms_is_the_system_clock_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    got = now_ms()
    after = time.time_ns() // 1_000_000
    assert before <= got <= after


def test_a_long_message_is_cut_to_the_header_limit() -> None:
    error = DecodeError("malformed_json", "m" * 1000, field="f")
    assert len(error.message) == MAX_MESSAGE_CHARS and error.message.endswith("...")
    assert repr(error) == f"DecodeError('malformed_json', {error.message!r}, field='f')"


def test_a_message_of_exactly_the_header_limit_is_kept_whole() -> None:
    error = DecodeError("malformed_json", "m" * MAX_MESSAGE_CHARS)
    assert error.message == "m" * MAX_MESSAGE_CHARS and str(error) == error.message
    cut = DecodeError("malformed_json", "m" * (MAX_MESSAGE_CHARS + 1))
    assert cut.message == "m" * (MAX_MESSAGE_CHARS - 3) + "..." and str(cut) == cut.message


def test_an_unknown_reason_code_is_named() -> None:
    with pytest.raises(ValueError, match="unknown reason code 'nope'"):
        DecodeError("nope", "x")


@pytest.mark.parametrize(("value", "message"), [(None, "message value is null"), (b"", "message value is empty")])
def test_empty_values_say_which(value: bytes | None, message: str) -> None:
    with pytest.raises(DecodeError) as caught:
        RecordDecoder().decode(value)
    assert (caught.value.reason, caught.value.message) == ("empty_message", message)


def test_json_rejections_say_what_was_found() -> None:
    with pytest.raises(DecodeError) as caught:
        loads_json_object(b"[1, 2]")
    assert caught.value.message == "JSON top level must be an object, got list"
    with pytest.raises(DecodeError) as malformed:
        loads_json_object(b'{"a": }')
    assert malformed.value.message.startswith("malformed JSON: 'Expecting value: line 1 column 7")
    with pytest.raises(DecodeError) as deep:
        loads_json_object(b"[" * 100_000 + b"]" * 100_000)
    assert (deep.value.reason, deep.value.message) == ("malformed_json", "JSON nested too deeply")


def test_mock_registries_are_shared_per_url() -> None:
    first = registry_client("mock://shared-a")
    assert first is not None and registry_client("mock://shared-a") is first
    assert registry_client("mock://shared-b") is not first
