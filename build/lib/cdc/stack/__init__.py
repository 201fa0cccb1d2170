"""The real CDC stack (PostgreSQL, Kafka, Kafka Connect + Debezium, Apicurio Registry), run as
local processes or, where a Docker engine exists, as containers."""

from cdc.stack.endpoints import StackEndpoints

__all__ = ["StackEndpoints"]
