"""The CRC-64-AVRO fingerprints of the Avro schemas, pinned as literals and recomputed by an implementation of
the Avro specification's algorithm written here, not by fastavro nor schemas.wire.

A fingerprint is what an Avro single-object message carries instead of its schema: changing a schema (even a
doc string does not count, a field does) changes it, and readers that know only the old one dead-letter the
new messages as ``unknown_fingerprint``. If a schema change is meant, update the literal here and say so in the
change (old readers must be upgraded first).
"""

from __future__ import annotations

import json

import pytest

from schemas.wire import (
    HOUSING_RECORD,
    MODEL_UPDATE_EVENT,
    PREDICTION,
    PREDICTION_V1,
    SCORER_STATUS,
    WireFormat,
    detect_format,
)

PINNED = {
    "housing_record.avsc": "52f43b74f7b3eb80",
    "prediction.avsc": "b24d674b94490187",
    "prediction_v1.avsc": "a64566922825ea49",
    "model_update_event.avsc": "b041e30c1bbf5783",
    "scorer_status.avsc": "5e26e44bb499a055",
}
"""Little-endian CRC-64-AVRO of each schema's parsing canonical form, as the single-object header carries it."""

SCHEMAS = {"housing_record.avsc": HOUSING_RECORD, "prediction.avsc": PREDICTION, "prediction_v1.avsc": PREDICTION_V1,
           "model_update_event.avsc": MODEL_UPDATE_EVENT, "scorer_status.avsc": SCORER_STATUS}

EMPTY = 0xC15D213AA4D7A795
"""The Avro specification's CRC-64-AVRO seed (and polynomial)."""


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    return table


TABLE = _table()


def crc64_avro(data: bytes) -> bytes:
    """The specification's ``fingerprint64``, little-endian as in the single-object encoding."""
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def canonical_form(schema: object) -> str:
    """Parsing canonical form for the record schemas used here (records, primitives, unions, enums, arrays,
    maps): only name/type/fields/symbols/items/values/size kept, in that order, names fully qualified, no
    whitespace. Enough of the specification's rules for these four schemas, written without fastavro."""

    def form(node: object, namespace: str | None) -> object:
        if isinstance(node, str):
            if node in {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}:
                return node
            return node if "." in node or namespace is None else f"{namespace}.{node}"
        if isinstance(node, list):
            return [form(n, namespace) for n in node]
        assert isinstance(node, dict)
        kind = node["type"]
        if kind in {"record", "enum", "fixed"}:
            name = node["name"]
            ns = node.get("namespace", namespace)
            full = name if "." in name or ns is None else f"{ns}.{name}"
            ns = full.rsplit(".", 1)[0] if "." in full else None
            out: dict[str, object] = {"name": full, "type": kind}
            if kind == "record":
                out["fields"] = [{"name": f["name"], "type": form(f["type"], ns)} for f in node["fields"]]
            elif kind == "enum":
                out["symbols"] = node["symbols"]
            else:
                out["size"] = node["size"]
            return out
        if kind == "array":
            return {"type": "array", "items": form(node["items"], namespace)}
        if kind == "map":
            return {"type": "map", "values": form(node["values"], namespace)}
        return form(kind, namespace)

    return json.dumps(form(schema, None), separators=(",", ":"))


def test_the_specification_check_value() -> None:
    # The fingerprint of the empty input is the seed itself, and of "null" the value of the Avro project's own
    # test vectors (Java's SchemaNormalization.parsingFingerprint64 of the null schema: 7195948357588979594).
    assert crc64_avro(b"") == EMPTY.to_bytes(8, "little")
    assert int.from_bytes(crc64_avro(b'"null"'), "little") == 7195948357588979594


@pytest.mark.parametrize("file", sorted(PINNED))
def test_each_schema_file_has_its_pinned_fingerprint(file: str) -> None:
    from pathlib import Path

    schema = json.loads((Path(__file__).resolve().parents[3] / "schemas" / "avro" / file).read_text())
    assert crc64_avro(canonical_form(schema).encode()).hex() == PINNED[file], \
        f"{file} changed: a new fingerprint on the wire (see this module's docstring)"


@pytest.mark.parametrize("file", sorted(PINNED))
def test_the_codec_writes_the_pinned_fingerprint(file: str) -> None:
    codec = SCHEMAS[file]
    assert codec.fingerprint == bytes.fromhex(PINNED[file])
    assert codec.header == b"\xc3\x01" + bytes.fromhex(PINNED[file])
    assert detect_format(codec.header + b"\x00") is WireFormat.AVRO_SINGLE_OBJECT
