"""The batch decode stage's column-wise route is taken by every clean JSON record, including one of exactly the
decoder's size limit, and never asks the per-record decoder (mutation testing found that a mutant sending clean
records down the per-record route passed every test: the outputs are the same, only slower)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumer.core.batch_decode import decode_validate
from consumer.core.scoring import Incoming
from producer.bad_records import good_record
from schemas.codecs import RecordDecoder, WireFormat


def _msg(value: bytes, offset: int) -> Incoming:
    return Incoming(key=None, value=value, topic="t", partition=0, offset=offset)


def _reject(msg: Incoming, reason: str, stage: str, message: str) -> tuple[int, str, str]:
    return msg.offset, reason, message


def _no_per_record_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    def decode(self: RecordDecoder, value: bytes) -> Any:
        raise AssertionError("the per-record decoder was asked about a clean JSON record")

    monkeypatch.setattr(RecordDecoder, "decode", decode)


def test_clean_json_takes_the_column_wise_route(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_per_record_decode(monkeypatch)
    records = [good_record(i) for i in range(4)]
    batch = [_msg(json.dumps(record).encode(), i) for i, record in enumerate(records)]
    decoded = decode_validate(batch, RecordDecoder(), _reject)
    assert not decoded.rejected
    assert [(index, msg.offset, fmt) for index, msg, _, fmt in decoded.valid] == [
        (i, i, WireFormat.JSON) for i in range(4)]
    assert [record["record_id"] for _, _, record, _ in decoded.valid] == [f"good-{i}" for i in range(4)]
    assert decoded.columns is not None
    assert decoded.columns["median_income"].tolist() == [r["median_income"] for r in records]


def test_a_record_of_exactly_the_size_limit_takes_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_per_record_decode(monkeypatch)
    value = json.dumps(good_record(1)).encode()
    limit = len(value) + 10
    decoded = decode_validate([_msg(value + b" " * 10, 0)], RecordDecoder(max_bytes=limit), _reject)
    assert [record["record_id"] for _, _, record, _ in decoded.valid] == ["good-1"] and not decoded.rejected


def test_one_byte_over_the_limit_is_too_large() -> None:
    value = json.dumps(good_record(1)).encode()
    decoded = decode_validate([_msg(value, 0)], RecordDecoder(max_bytes=len(value) - 1), _reject)
    assert not decoded.valid
    assert decoded.rejected == [(0, (0, "too_large", f"message of {len(value)} bytes is over the "
                                                     f"{len(value) - 1}-byte limit"))]
