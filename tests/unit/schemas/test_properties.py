"""Property tests (hypothesis) of the codecs and validation: what holds for every input, not for a few examples.

- encode -> decode round trips, for records and predictions in every wire format (JSON, single-object Avro,
  Confluent-framed Avro on the ``mock://`` registry) and for the control-plane events;
- decoding arbitrary bytes or arbitrary JSON never lets an exception out: it returns fields or raises
  ``DecodeError`` / ``ValidationError`` with a known reason code (so the record can be dead-lettered);
- a valid record stays valid, with the same values, under JSON re-serialisation, and every range bound is
  exact: the bound itself passes, the next double beyond it is rejected.

Examples are derandomized (the same inputs on every run: no flaky CI, stable mutation testing) and few enough
that the file runs in a few seconds; no deadline, so a slow machine cannot fail it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codecs import (
    HOUSING_RECORD,
    PREDICTION,
    PredictionEncoder,
    PredictionJsonWriter,
    RecordDecoder,
    RecordEncoder,
    WireFormat,
    decode_prediction,
    detect_format,
    registry_client,
)
from schemas.control import (
    EVENT_TYPES,
    ModelUpdateEvent,
    ScorerStatus,
    decode_model_update,
    decode_scorer_status,
)
from schemas.errors import DECODE, REASONS, VALIDATE, DecodeError, ValidationError
from schemas.examples import EXAMPLE_RECORD
from schemas.validation import MAX_RECORD_ID_CHARS, NUMERIC_RULES, OCEAN_PROXIMITY_CATEGORIES, validate_record
from schemas.wire import MODEL_UPDATE_EVENT, SCORER_STATUS

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(PROPERTY, max_examples=25)

REGISTRY_URL = "mock://test-properties"
_LONG_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def registry() -> SchemaRegistryClient:
    client = registry_client(REGISTRY_URL)
    assert client is not None
    return client


# --- strategies ----------------------------------------------------------------------------------------------

def _bounded(minimum: float | None, exclusive: bool, maximum: float | None) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=minimum,
        max_value=maximum if maximum is not None else 1e15,
        exclude_min=exclusive,
        allow_nan=False,
        allow_infinity=False,
    )


_NUMBERS: dict[str, st.SearchStrategy[Any]] = {
    name: (st.none() | _bounded(minimum, exclusive, maximum)) if nullable else _bounded(minimum, exclusive, maximum)
    for name, nullable, minimum, exclusive, maximum in NUMERIC_RULES
}
_RECORD_IDS = st.text(min_size=1, max_size=MAX_RECORD_ID_CHARS)
_EVENT_TIMES = st.integers(min_value=0, max_value=_LONG_MAX)


@st.composite
def valid_records(draw: st.DrawFn) -> dict[str, Any]:
    """A record that passes validation: every feature in range, optional fields present, null or absent."""
    record: dict[str, Any] = {name: draw(strategy) for name, strategy in _NUMBERS.items()}
    record["ocean_proximity"] = draw(st.sampled_from(OCEAN_PROXIMITY_CATEGORIES))
    for name, strategy in (("record_id", _RECORD_IDS), ("event_time", _EVENT_TIMES)):
        choice = draw(st.sampled_from(("value", "null", "absent")))
        if choice == "value":
            record[name] = draw(strategy)
        elif choice == "null":
            record[name] = None
    if "total_bedrooms" in record and record["total_bedrooms"] is None and draw(st.booleans()):
        del record["total_bedrooms"]  # an absent nullable feature is null
    return record


def _complete(record: dict[str, Any]) -> dict[str, Any]:
    """The record as an Avro reader returns it: every optional field present (null when not given)."""
    return {name: record.get(name) for name in HOUSING_RECORD.field_names}


_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    _JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
"""Any JSON document (what ``json.dumps`` can write without NaN)."""


_NASTY_VALUES = st.sampled_from([math.nan, math.inf, -math.inf, True, "880", 10**400, -(10**400)])
"""Values a sloppy validator lets through: NaN, infinities, a bool, a number as a string, an int no double holds."""


@st.composite
def damaged_records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid record with some fields replaced by arbitrary JSON values, removed, or unknown ones added."""
    record = draw(valid_records())
    names = sorted(record)
    for name in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
        if draw(st.booleans()):
            record[name] = draw(json_values | _NASTY_VALUES)
        else:
            del record[name]
    for name, value in draw(st.dictionaries(st.text(max_size=12), json_values, max_size=2)).items():
        record[name] = value
    return record


_OPTIONAL_TEXT = st.none() | st.text(max_size=30)
_DOUBLES = st.floats(allow_nan=False, allow_infinity=False)

predictions = st.fixed_dictionaries(
    {
        "record_id": st.text(max_size=40),
        "prediction": _DOUBLES,
        "model_name": st.text(min_size=1, max_size=30),
        "model_version": st.text(min_size=1, max_size=5),
        "model_alias": _OPTIONAL_TEXT,
        "model_stage": _OPTIONAL_TEXT,
        "scored_at": _EVENT_TIMES,
        "source_topic": st.text(min_size=1, max_size=30),
        "source_partition": st.integers(min_value=0, max_value=2**31 - 1),
        "source_offset": _EVENT_TIMES,
        "event_time": st.none() | _EVENT_TIMES,
        "shadow_prediction": st.none() | _DOUBLES,
        "shadow_model_version": st.none() | st.text(min_size=1, max_size=5),
        "role": st.sampled_from(["champion", "canary"]),
    }
).map(lambda drawn: {name: drawn[name] for name in PREDICTION.field_names})
"""Any Prediction mapping that fits prediction.avsc, in its field order (finite doubles: NaN is not a valid
prediction)."""

model_update_events = st.builds(
    ModelUpdateEvent,
    event_id=st.text(min_size=1, max_size=36),
    type=st.sampled_from(EVENT_TYPES),
    model_name=st.text(min_size=1, max_size=30),
    version=_OPTIONAL_TEXT,
    alias=_OPTIONAL_TEXT,
    stage=_OPTIONAL_TEXT,
    model_uri=_OPTIONAL_TEXT,
    issued_at=_EVENT_TIMES,
    source=st.text(max_size=20),
)
scorer_statuses = st.builds(
    ScorerStatus,
    instance_id=st.text(min_size=1, max_size=30),
    model_name=st.text(min_size=1, max_size=30),
    model_version=_OPTIONAL_TEXT,
    event_id=_OPTIONAL_TEXT,
    result=st.text(min_size=1, max_size=10),
    detail=_OPTIONAL_TEXT,
    load_seconds=st.none() | _DOUBLES,
    at=_EVENT_TIMES,
    heartbeat_at=st.none() | _EVENT_TIMES,
)


def _rejected_cleanly(call: Callable[[], object], stages: tuple[str, ...] = (DECODE,)) -> None:
    """``call()`` returns, or raises a typed rejection with a known reason: never any other exception."""
    try:
        call()
    except (DecodeError, ValidationError) as exc:
        assert exc.reason in REASONS, exc
        assert exc.stage in stages, exc


# --- round trips ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", list(WireFormat))
@PROPERTY
@given(record=valid_records())
def test_record_round_trip_in_every_format(fmt: WireFormat, record: dict[str, Any],
                                           registry: SchemaRegistryClient) -> None:
    value = RecordEncoder(registry).encode(record, fmt)
    assert detect_format(value) is fmt
    fields, got_fmt, schema_id = RecordDecoder(registry).decode(value)
    assert got_fmt is fmt
    assert (schema_id is not None) == (fmt is WireFormat.AVRO_CONFLUENT)
    assert fields == (record if fmt is WireFormat.JSON else _complete(record))
    assert validate_record(fields) == validate_record(record)


@pytest.mark.parametrize("fmt", list(WireFormat))
@PROPERTY
@given(prediction=predictions)
def test_prediction_round_trip_in_every_format(fmt: WireFormat, prediction: dict[str, Any],
                                               registry: SchemaRegistryClient) -> None:
    value = PredictionEncoder(registry).encode(prediction, fmt)
    assert detect_format(value) is fmt
    assert decode_prediction(value, registry) == prediction


@PROPERTY
@given(prediction=predictions)
def test_batch_json_writer_equals_the_generic_encoder(prediction: dict[str, Any]) -> None:
    writer = PredictionJsonWriter(
        model_name=prediction["model_name"], model_version=prediction["model_version"],
        model_alias=prediction["model_alias"], model_stage=prediction["model_stage"],
        scored_at=prediction["scored_at"], shadow_model_version=prediction["shadow_model_version"],
        role=prediction["role"],
    )
    value = writer.write(
        prediction["record_id"], prediction["prediction"], prediction["source_topic"],
        prediction["source_partition"], prediction["source_offset"], prediction["event_time"],
        prediction["shadow_prediction"],
    )
    assert value == PredictionEncoder().encode(prediction, WireFormat.JSON)
    assert json.loads(value) == prediction


@PROPERTY
@given(event=model_update_events)
def test_model_update_round_trip_json_and_single_object(event: ModelUpdateEvent) -> None:
    assert ModelUpdateEvent.from_bytes(event.to_bytes()) == event
    single_object = MODEL_UPDATE_EVENT.header + MODEL_UPDATE_EVENT.write(event.as_dict())
    assert decode_model_update(single_object) == event.as_dict()


@PROPERTY
@given(status=scorer_statuses)
def test_scorer_status_round_trip_json_and_single_object(status: ScorerStatus) -> None:
    assert ScorerStatus.from_bytes(status.to_bytes()) == status
    single_object = SCORER_STATUS.header + SCORER_STATUS.write(status.as_dict())
    assert decode_scorer_status(single_object) == status.as_dict()


# --- nothing escapes a decoder -------------------------------------------------------------------------------

_PREFIXES = [b"", b"{", b"[", b'"', b"\x00", b"\x00\x00\x00\x00\x01", b"\xc3", b"\xc3\x01", HOUSING_RECORD.header,
             PREDICTION.header, MODEL_UPDATE_EVENT.header, SCORER_STATUS.header]


@pytest.mark.parametrize("prefix", _PREFIXES, ids=lambda p: p.hex() or "none")
@FEW
@given(body=st.binary(max_size=120))
def test_arbitrary_bytes_never_raise_out_of_any_decoder(prefix: bytes, body: bytes,
                                                        registry: SchemaRegistryClient) -> None:
    RecordEncoder(registry).encode(EXAMPLE_RECORD, WireFormat.AVRO_CONFLUENT)  # so a schema id exists
    value = prefix + body
    _rejected_cleanly(lambda: RecordDecoder(registry).decode(value))
    _rejected_cleanly(lambda: decode_prediction(value, registry))
    _rejected_cleanly(lambda: decode_model_update(value))
    _rejected_cleanly(lambda: decode_scorer_status(value))


@FEW
@given(record=valid_records(), data=st.data())
def test_corrupted_avro_bodies_are_rejected_as_decode_errors(record: dict[str, Any], data: st.DataObject,
                                                             registry: SchemaRegistryClient) -> None:
    """Flipped and cut bytes of a real body: the nastier case for a binary reader than random bytes."""
    body = bytearray(HOUSING_RECORD.write(record))
    for index, byte in data.draw(st.lists(st.tuples(st.integers(0, len(body) - 1), st.integers(0, 255)),
                                          min_size=1, max_size=5)):
        body[index] = byte
    cut = bytes(body[: data.draw(st.integers(0, len(body)))])
    schema_id = RecordEncoder(registry).encode(record, WireFormat.AVRO_CONFLUENT)[1:5]
    for value in (HOUSING_RECORD.header + cut, b"\x00" + schema_id + cut):
        def decode_and_validate(value: bytes = value) -> object:
            return validate_record(RecordDecoder(registry).decode(value)[0])

        _rejected_cleanly(decode_and_validate, stages=(DECODE, VALIDATE))


@PROPERTY
@given(document=json_values)
def test_arbitrary_json_is_decoded_or_rejected_with_a_reason(document: Any) -> None:
    value = json.dumps(document).encode("utf-8")
    try:
        fields, fmt, schema_id = RecordDecoder().decode(value)
    except DecodeError as exc:
        assert not isinstance(document, dict)
        assert exc.reason == "not_an_object"
        return
    assert fmt is WireFormat.JSON and schema_id is None and fields == document
    _rejected_cleanly(lambda: validate_record(fields), stages=(VALIDATE,))


@PROPERTY
@given(text=st.text(max_size=60))
def test_arbitrary_text_is_decoded_or_rejected_with_a_reason(text: str) -> None:
    _rejected_cleanly(lambda: RecordDecoder().decode(text.encode("utf-8")))


@PROPERTY
@given(record=damaged_records())
def test_damaged_records_are_valid_or_rejected_with_a_reason_naming_the_field(record: dict[str, Any]) -> None:
    value = json.dumps(record).encode("utf-8")  # NaN / Infinity as JSON's non-standard literals
    fields, _, _ = RecordDecoder().decode(value)
    try:
        clean = validate_record(fields)
    except ValidationError as exc:
        assert exc.reason in REASONS and exc.stage == VALIDATE
        assert exc.field is not None
        assert exc.field in fields or exc.reason == "missing_field"
        return
    assert set(record) <= set(clean)


@PROPERTY
@given(event=st.dictionaries(st.sampled_from([*MODEL_UPDATE_EVENT.field_names, "extra"]), json_values, max_size=10))
def test_arbitrary_control_json_is_decoded_or_rejected_with_a_reason(event: dict[str, Any]) -> None:
    value = json.dumps(event).encode("utf-8")
    _rejected_cleanly(lambda: decode_model_update(value))
    _rejected_cleanly(lambda: decode_scorer_status(value))


# --- validity is a property of the values, not of one serialisation ----------------------------------------

@PROPERTY
@given(record=valid_records())
def test_a_valid_record_stays_valid_and_equal_under_json_reserialisation(record: dict[str, Any]) -> None:
    clean = validate_record(record)
    assert validate_record(clean) == clean  # the clean form is itself a valid record
    again = json.loads(json.dumps(clean))
    assert validate_record(again) == clean
    fields, _, _ = RecordDecoder().decode(json.dumps(record, separators=(",", ":")).encode("utf-8"))
    assert validate_record(fields) == clean
    for name, *_ in NUMERIC_RULES:
        assert clean[name] is None or type(clean[name]) is float


@PROPERTY
@given(record=valid_records())
def test_integral_numbers_are_accepted_as_their_float_value(record: dict[str, Any]) -> None:
    as_ints = {name: (int(value) if isinstance(value, float) and value.is_integer() else value)
               for name, value in record.items()}
    assert validate_record(as_ints) == validate_record(record)


# The contract's bounds as README's validation table states them: an oracle of its own, not NUMERIC_RULES.
# (field, side, bound, exclusive, reason beyond it)
_BOUNDS = [
    ("longitude", "min", -124.6, False, "out_of_range"),
    ("longitude", "max", -114.0, False, "out_of_range"),
    ("latitude", "min", 32.0, False, "out_of_range"),
    ("latitude", "max", 42.5, False, "out_of_range"),
    ("housing_median_age", "min", 0.0, False, "negative_count"),
    ("housing_median_age", "max", 200.0, False, "out_of_range"),
    ("total_rooms", "min", 0.0, True, "negative_count"),
    ("total_bedrooms", "min", 0.0, False, "negative_count"),
    ("population", "min", 0.0, True, "negative_count"),
    ("households", "min", 0.0, True, "negative_count"),
    ("median_income", "min", 0.0, False, "negative_count"),
    ("median_income", "max", 100.0, False, "out_of_range"),
]


def test_the_bounds_table_names_every_bound_of_the_rules() -> None:
    rules = {(name, side) for name, _, minimum, _, maximum in NUMERIC_RULES
             for side, bound in (("min", minimum), ("max", maximum)) if bound is not None}
    assert rules == {(name, side) for name, side, *_ in _BOUNDS}


@pytest.mark.parametrize(("name", "side", "bound", "exclusive", "reason"), _BOUNDS,
                         ids=[f"{b[0]}-{b[1]}" for b in _BOUNDS])
@FEW
@given(record=valid_records())
def test_every_bound_is_exact(name: str, side: str, bound: float, exclusive: bool, reason: str,
                              record: dict[str, Any]) -> None:
    """The bound itself passes (unless exclusive) and the next double beyond it is rejected, whatever the rest."""
    outside = math.nextafter(bound, -math.inf if side == "min" else math.inf)
    inside = math.nextafter(bound, math.inf) if exclusive else bound
    assert validate_record({**record, name: inside})[name] == inside
    for rejected in ((outside, bound) if exclusive else (outside,)):
        with pytest.raises(ValidationError) as info:
            validate_record({**record, name: rejected})
        assert (info.value.field, info.value.reason) == (name, reason)
