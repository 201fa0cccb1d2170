"""Avro schemas by id, from a registry's Confluent-compatible API (Apicurio serves it at
/apis/ccompat/v7), fetched once per id."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from cdc.errors import RegistryError


class UnknownSchema(LookupError):
    """The registry has no schema with this id: the record cannot be read, ever."""


class NotAvro(UnknownSchema):
    """The id names a schema of another kind (JSON Schema, Protobuf): no Avro record uses it."""


class SchemaSource(Protocol):
    def schema(self, schema_id: int) -> Any:
        """The parsed Avro schema (JSON) for an id; `UnknownSchema` if there is none."""
        ...


class RegistrySchemas:
    """Schemas from a registry over HTTP. Ids never change meaning, so each is fetched once."""

    def __init__(self, url: str, *, timeout: float = 10.0, api: str = "/apis/ccompat/v7") -> None:
        self.url = url.rstrip("/")
        self._base = self.url + api
        self._client = httpx.Client(timeout=timeout)
        self._schemas: dict[int, Any] = {}

    def schema(self, schema_id: int) -> Any:
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        try:
            response = self._client.get(f"{self._base}/schemas/ids/{schema_id}")
        except httpx.HTTPError as exc:
            raise RegistryError(self.url, f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            raise UnknownSchema(f"the registry has no schema with id {schema_id}")
        if response.status_code != 200:
            raise RegistryError(self.url, f"GET schema {schema_id} -> {response.status_code}")
        try:
            body = response.json()
            text = body["schema"]
            kind = body.get("schemaType") or "AVRO"  # the Confluent API leaves it out for Avro
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(self.url, f"GET schema {schema_id}: not a schema: {exc}") from exc
        # The registry answered about this id: what it holds is the record's problem, not an
        # outage, so it must not be waited out.
        if kind != "AVRO":
            raise NotAvro(f"the registry holds a {kind} schema under id {schema_id}")
        try:
            schema = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise NotAvro(f"schema {schema_id} is not Avro JSON: {exc}") from None
        self._schemas[schema_id] = schema
        return schema

    def close(self) -> None:
        self._client.close()


class StaticSchemas:
    """Schemas given up front, for example saved beside a captured corpus."""

    def __init__(self, schemas: Mapping[int, str | Any]) -> None:
        self._schemas = {
            int(k): json.loads(v) if isinstance(v, str) else v for k, v in schemas.items()
        }

    def schema(self, schema_id: int) -> Any:
        try:
            return self._schemas[schema_id]
        except KeyError:
            raise UnknownSchema(f"no schema with id {schema_id}") from None
