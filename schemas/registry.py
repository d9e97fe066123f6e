"""The Confluent schema registry, as the codecs use it: the client, writer schemas by id, registering ours.

``WriterSchemas`` resolves the schema id of a Confluent-framed value to the writer schema (asked once per
id, cached, unknown ids remembered); ``SchemaRegistration`` registers one of our schemas under a subject on
first use. A registry that cannot be asked is ``RegistryUnavailableError`` (retry, never the DLQ); an id it
does not know is ``DecodeError("unknown_schema_id")`` (the record's fault).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import fastavro
from fastavro.schema import to_parsing_canonical_form

from schemas.errors import DecodeError, RegistryUnavailableError
from schemas.wire import AvroSchema

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

logger = logging.getLogger(__name__)

_NEGATIVE_CACHE_LIMIT: Final = 10_000


def registry_client(url: str | None, config: Mapping[str, Any] | None = None) -> SchemaRegistryClient | None:
    """A schema-registry client for ``url`` (``mock://...`` gives the in-memory mock), or None.

    :param url: registry URL from settings; None or empty means no registry.
    :param config: extra client config (auth), merged over ``{"url": url}``.
    """
    if not url:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    if url.startswith("mock://"):
        # Each mock client has its own store; share one per URL so a process's producer and scorer agree.
        if url not in _MOCK_REGISTRIES:
            _MOCK_REGISTRIES[url] = SchemaRegistryClient.new_client({**(config or {}), "url": url})
        return _MOCK_REGISTRIES[url]
    return SchemaRegistryClient.new_client({**(config or {}), "url": url})


_MOCK_REGISTRIES: dict[str, SchemaRegistryClient] = {}


class WriterSchemas:
    """Writer schemas by Confluent schema id, fetched once from the registry and cached."""

    def __init__(self, schema_registry: SchemaRegistryClient | None) -> None:
        self._registry = schema_registry
        self._known: dict[int, Any] = {}
        """id -> parsed writer schema, or None when it is the reader schema itself (no resolution)."""
        self._unknown: dict[int, str] = {}
        """id -> why it cannot be used; bounded so a flood of garbage ids cannot grow it forever."""

    def resolve(self, schema_id: int, reader: AvroSchema) -> Any:
        """The parsed writer schema for ``schema_id`` (None if identical to ``reader``).

        :raises DecodeError: unknown_schema_id.
        :raises RegistryUnavailableError: the registry could not be asked.
        """
        if schema_id in self._known:
            return self._known[schema_id]
        if schema_id in self._unknown:
            raise DecodeError("unknown_schema_id", self._unknown[schema_id])
        if self._registry is None:
            raise DecodeError(
                "unknown_schema_id", f"Confluent schema id {schema_id} but no schema registry is configured"
            )
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            registered = self._registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                self._remember_unknown(schema_id, f"schema id {schema_id} is not in the registry")
                raise DecodeError("unknown_schema_id", self._unknown[schema_id]) from exc
            raise RegistryUnavailableError(f"schema registry error for id {schema_id}: {exc}") from exc
        except Exception as exc:  # network, TLS, auth: not the record's fault
            raise RegistryUnavailableError(f"schema registry unreachable for id {schema_id}: {exc}") from exc
        if registered is None:  # the mock's store may answer None
            self._remember_unknown(schema_id, f"schema id {schema_id} is not in the registry")
            raise DecodeError("unknown_schema_id", self._unknown[schema_id])
        schema_type = (getattr(registered, "schema_type", None) or "AVRO").upper()
        if schema_type != "AVRO":
            self._remember_unknown(schema_id, f"schema id {schema_id} is a {schema_type} schema, not Avro")
            raise DecodeError("unknown_schema_id", self._unknown[schema_id])
        try:
            parsed = fastavro.parse_schema(json.loads(registered.schema_str or ""))
            canonical = to_parsing_canonical_form(parsed)
        except Exception as exc:
            self._remember_unknown(schema_id, f"schema id {schema_id} is not a valid Avro schema: {exc}")
            raise DecodeError("unknown_schema_id", self._unknown[schema_id]) from exc
        writer = None if canonical == reader.canonical else parsed
        self._known[schema_id] = writer
        logger.info("schema id %d resolved (%s)", schema_id, "same as reader" if writer is None else "resolving")
        return writer

    def _remember_unknown(self, schema_id: int, why: str) -> None:
        if len(self._unknown) >= _NEGATIVE_CACHE_LIMIT:
            self._unknown.clear()
        self._unknown[schema_id] = why


class SchemaRegistration:
    """Registers one schema under one subject on first use and caches the id."""

    def __init__(self, schema_registry: SchemaRegistryClient | None, subject: str, schema: AvroSchema) -> None:
        self._registry = schema_registry
        self.subject = subject
        self._schema = schema
        self._id: int | None = None
        self._lock = threading.Lock()

    def schema_id(self) -> int:
        """The subject's schema id, registering the schema the first time.

        :raises ValueError: no registry configured.
        :raises RegistryUnavailableError: registering failed.
        """
        if self._id is not None:
            return self._id
        if self._registry is None:
            raise ValueError(f"Confluent wire format for {self.subject} needs a schema registry")
        from confluent_kafka.schema_registry import Schema

        with self._lock:
            if self._id is None:
                try:
                    schema = Schema(self._schema.schema_str, "AVRO")
                    self._id = int(self._registry.register_schema(self.subject, schema))
                except Exception as exc:
                    raise RegistryUnavailableError(f"cannot register {self.subject}: {exc}") from exc
                logger.info("registered %s under %s as schema id %d", self._schema.full_name, self.subject, self._id)
            return self._id
