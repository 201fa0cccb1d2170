"""The Debezium records a handler sees, and the Python values their columns hold."""

from __future__ import annotations

from cdc.events.change import (
    Change,
    DataCollectionCount,
    DomainEvent,
    Event,
    Heartbeat,
    Kind,
    LogicalMessage,
    Op,
    Tombstone,
    TransactionBlock,
    TransactionEvent,
)
from cdc.events.columns import Columns
from cdc.events.delivery import Delivery, DeliveryGate
from cdc.events.fallback import Unrepresentable
from cdc.events.group import Changes
from cdc.events.rows import MICROS, MILLIS, Row, Scale, TimeUnit
from cdc.events.source import KafkaCoordinates, Snapshot, Source
from cdc.events.values import PLACEHOLDER, UNAVAILABLE, Unavailable

__all__ = [
    "MICROS",
    "MILLIS",
    "PLACEHOLDER",
    "UNAVAILABLE",
    "Change",
    "Changes",
    "Columns",
    "DataCollectionCount",
    "Delivery",
    "DeliveryGate",
    "DomainEvent",
    "Event",
    "Heartbeat",
    "KafkaCoordinates",
    "Kind",
    "LogicalMessage",
    "Op",
    "Row",
    "Scale",
    "Snapshot",
    "Source",
    "TimeUnit",
    "Tombstone",
    "TransactionBlock",
    "TransactionEvent",
    "Unavailable",
    "Unrepresentable",
]
