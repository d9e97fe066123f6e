"""schemas.codecs and schemas.registry at their edges: the batch JSON writer refuses a field of the wrong type
naming it, an empty prediction is named, and registry_client builds working mock and real clients."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.codecs import PredictionJsonWriter, decode_prediction
from schemas.errors import DecodeError, RegistryUnavailableError
from schemas.registry import WriterSchemas, registry_client
from schemas.wire import HOUSING_RECORD

WRITER_FIELDS = {"model_name": "housing", "model_version": "3", "model_alias": None, "model_stage": None,
                 "scored_at": 1_700_000_000_000, "shadow_model_version": None}


@pytest.mark.parametrize(("changes", "message"), [
    ({"scored_at": "soon"}, "expected an integer, got str 'soon'"),
    ({"scored_at": 1.5}, "expected an integer, got float 1.5"),
    ({"model_version": 3}, "expected a string, got int 3"),
])
def test_the_batch_json_writer_names_a_field_of_the_wrong_type(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        PredictionJsonWriter(**{**WRITER_FIELDS, **changes})  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_the_batch_json_writer_names_a_source_topic_of_the_wrong_type() -> None:
    writer = PredictionJsonWriter(**WRITER_FIELDS)  # type: ignore[arg-type]
    with pytest.raises(ValueError) as caught:
        writer.write("r1", 1.0, 7, 0, 1, None, None)  # type: ignore[arg-type]
    assert str(caught.value) == "expected a string, got int 7"


def test_the_batch_json_writer_writes_each_topic_it_is_given() -> None:
    writer = PredictionJsonWriter(**WRITER_FIELDS)  # type: ignore[arg-type]
    topics = [json.loads(writer.write("r1", 1.0, topic, 0, 1, None, None))["source_topic"]
              for topic in ("housing.a", "housing.b", "housing.a")]
    assert topics == ["housing.a", "housing.b", "housing.a"]


def test_an_empty_prediction_is_named() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_prediction(b"")
    assert (caught.value.reason, caught.value.message) == ("empty_message", "prediction value is empty")


@pytest.mark.parametrize("config", [None, {"basic.auth.user.info": "user:secret"}])
def test_a_mock_registry_client_registers_and_resolves(config: dict[str, str] | None) -> None:
    url = f"mock://codec-messages-{config is None}"
    client = registry_client(url, config)
    assert isinstance(client, SchemaRegistryClient)
    assert registry_client(url) is client  # one store per URL
    schema_id = client.register_schema("s-value", Schema('{"type": "string"}', "AVRO"))
    assert client.get_schema(schema_id).schema_str == '{"type": "string"}'


def test_a_real_registry_client_is_built_for_its_url_without_contacting_it() -> None:
    client = registry_client("http://127.0.0.1:9", {"basic.auth.user.info": "user:secret"})
    assert isinstance(client, SchemaRegistryClient)
    assert registry_client("http://127.0.0.1:9") is not client  # not cached: only the mocks share a store


class _FailingRegistry:
    def get_schema(self, schema_id: int) -> object:
        raise SchemaRegistryError(503, 50003, "Service Unavailable")


def test_a_registry_error_names_the_schema_id_and_the_error() -> None:
    with pytest.raises(RegistryUnavailableError) as caught:
        WriterSchemas(_FailingRegistry()).resolve(7, HOUSING_RECORD)  # type: ignore[arg-type]
    assert str(caught.value) == (f"schema registry error for id 7: "
                                 f"{SchemaRegistryError(503, 50003, 'Service Unavailable')}")
