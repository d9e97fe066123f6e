"""schemas.registry: the registry client helper, and how writer-schema lookups treat the registry's answers
(resolution and registration end to end are tested through the codecs in test_codecs.py)."""

from __future__ import annotations

import json

import pytest
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from schemas.errors import DecodeError, RegistryUnavailableError
from schemas.registry import WriterSchemas, registry_client
from schemas.wire import HOUSING_RECORD


def test_registry_client_helper() -> None:
    assert registry_client(None) is None
    assert registry_client("") is None
    assert registry_client("mock://x") is not None


class FakeRegistry:
    """get_schema answers from a script: an exception to raise, or a schema."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.calls = 0

    def get_schema(self, schema_id: int) -> object:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


@pytest.mark.parametrize("failure", [
    SchemaRegistryError(401, 40101, "Unauthorized"),
    SchemaRegistryError(403, 40301, "Forbidden"),
    SchemaRegistryError(500, 50001, "Internal Server Error"),
    SchemaRegistryError(503, 50003, "Service Unavailable"),
    TimeoutError("read timed out"),
    ConnectionError("connection refused"),
], ids=["401", "403", "500", "503", "timeout", "refused"])
def test_a_registry_that_cannot_answer_is_retried_not_blamed_on_the_record(failure: BaseException) -> None:
    registry = FakeRegistry(failure, Schema(json.dumps(HOUSING_RECORD.raw), "AVRO"))
    schemas = WriterSchemas(registry)  # type: ignore[arg-type]
    with pytest.raises(RegistryUnavailableError):
        schemas.resolve(7, HOUSING_RECORD)
    # Not remembered as unknown: once the registry answers, the same id resolves.
    assert schemas.resolve(7, HOUSING_RECORD) is None  # the reader schema itself
    assert registry.calls == 2


def test_an_id_the_registry_does_not_know_is_the_records_fault_and_remembered() -> None:
    registry = FakeRegistry(SchemaRegistryError(404, 40403, "Schema not found"))
    schemas = WriterSchemas(registry)  # type: ignore[arg-type]
    for _ in range(2):
        with pytest.raises(DecodeError) as caught:
            schemas.resolve(8, HOUSING_RECORD)
        assert caught.value.reason == "unknown_schema_id"
    assert registry.calls == 1  # the second answer came from the negative cache
