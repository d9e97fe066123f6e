"""schemas.errors.short_repr at its limit and schemas.clock.now_ms against the system clock."""

from __future__ import annotations

import time

from schemas.clock import now_ms
from schemas.errors import MAX_MESSAGE_CHARS, DecodeError, short_repr


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
