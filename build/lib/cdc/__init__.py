"""React to every change in PostgreSQL, in Python."""

from cdc.errors import CdcError, ConfigError, ConnectError, StackError
from cdc.settings import Settings, load_settings
from cdc.tables.config import (
    Encoding,
    ReplicaIdentity,
    TableOptions,
    WatchedTables,
    load_watched_tables,
    parse_watched_tables,
)

__all__ = [
    "CdcError",
    "ConfigError",
    "ConnectError",
    "Encoding",
    "ReplicaIdentity",
    "Settings",
    "StackError",
    "TableOptions",
    "WatchedTables",
    "load_settings",
    "load_watched_tables",
    "parse_watched_tables",
]
