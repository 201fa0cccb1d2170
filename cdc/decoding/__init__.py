"""Kafka bytes -> `cdc.events` models, for each encoding the connector can write."""

from __future__ import annotations

from cdc.decoding.avro_format import AvroDecoder
from cdc.decoding.base import Decoder, coordinates
from cdc.decoding.json_format import JsonDecoder
from cdc.decoding.registry import (
    NotAvro,
    RegistrySchemas,
    SchemaSource,
    StaticSchemas,
    UnknownSchema,
)
from cdc.tables.config import Encoding


def decoder_for(encoding: Encoding, registry_url: str | None = None) -> Decoder:
    """The decoder for what `cdc connector apply` configured the converters to write."""
    if encoding is Encoding.AVRO:
        if not registry_url:
            raise ValueError("Avro needs the schema registry's URL")
        return AvroDecoder(RegistrySchemas(registry_url))
    return JsonDecoder(schemas=encoding is Encoding.JSON)


__all__ = [
    "AvroDecoder",
    "Decoder",
    "JsonDecoder",
    "NotAvro",
    "RegistrySchemas",
    "SchemaSource",
    "StaticSchemas",
    "UnknownSchema",
    "coordinates",
    "decoder_for",
]
