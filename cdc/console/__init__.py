"""The web console: the handlers and workloads with their state, throughput and lag, the
connector and its slot, the dead-letter topic, and the operators' controls, served by
`cdc console` or beside the consumer by `cdc run --console`."""

from cdc.console.app import create_app
from cdc.console.sources import Sources

__all__ = ["Sources", "create_app"]
