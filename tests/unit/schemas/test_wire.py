"""schemas.wire: wire-format detection and the single-object header of every schema."""

from __future__ import annotations

import fastavro
import pytest

from schemas.errors import DecodeError
from schemas.examples import EXAMPLE_RECORD
from schemas.wire import (
    HOUSING_RECORD,
    MODEL_UPDATE_EVENT,
    PREDICTION,
    SCORER_STATUS,
    WireFormat,
    confluent_frame,
    confluent_schema_id,
    detect_format,
)


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        (b'{"a":1}', WireFormat.JSON),
        (b' \n{"a":1}', WireFormat.JSON),
        (b"[1]", WireFormat.JSON),
        (b"\x00\x00\x00\x00\x01", WireFormat.AVRO_CONFLUENT),
        (b"\x00\x00\x00\x00\x01\x02\x03", WireFormat.AVRO_CONFLUENT),
        (b"\xc3\x01" + b"\x00" * 8, WireFormat.AVRO_SINGLE_OBJECT),
        (HOUSING_RECORD.header + b"\x02", WireFormat.AVRO_SINGLE_OBJECT),
    ],
)
def test_detect_format(value: bytes, fmt: WireFormat) -> None:
    assert detect_format(value) is fmt


@pytest.mark.parametrize(
    "value", [b"\x00", b"\x00\x01", b"\x00\x00\x00\x01", b"\xc3", b"\xc3\x02" + b"\x00" * 20, b"\xc3\x01\x00\x00"]
)
def test_detect_format_bad_magic(value: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        detect_format(value)
    assert info.value.reason == "bad_magic"


def test_single_object_header_is_magic_plus_crc64_fingerprint() -> None:
    canonical = fastavro.schema.to_parsing_canonical_form(HOUSING_RECORD.parsed)
    fp = fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
    assert HOUSING_RECORD.header == b"\xc3\x01" + bytes.fromhex(fp)
    assert len({s.fingerprint for s in (HOUSING_RECORD, PREDICTION, MODEL_UPDATE_EVENT, SCORER_STATUS)}) == 4


def test_confluent_frame_carries_the_schema_id() -> None:
    value = confluent_frame(258, b"\x02")
    assert value == b"\x00\x00\x00\x01\x02\x02"
    assert detect_format(value) is WireFormat.AVRO_CONFLUENT and confluent_schema_id(value) == 258


def test_an_unreadable_avro_body_gets_the_same_message_every_time() -> None:
    body = HOUSING_RECORD.write(EXAMPLE_RECORD)[:1]
    messages = set()
    for _ in range(3):
        with pytest.raises(DecodeError) as caught:
            HOUSING_RECORD.read(body)
        messages.add(caught.value.message)
    (message,) = messages
    assert message == "Avro body of 1 bytes cannot be read: EOFError: cannot read double from <_io.BytesIO>"
