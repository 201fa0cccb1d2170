"""The topics the consumer subscribes to, and what each is: outbox or a table's."""

from __future__ import annotations

import re

from cdc.decoding.envelope import table_of_topic
from cdc.errors import ConfigError
from cdc.routing import Router, TransactionHandler
from cdc.tables.config import WatchedTables
from cdc.tables.connector import outbox_topic_pattern


class Subscription:
    """The routed tables' topics and, with an outbox, the pattern of every aggregate type's
    topic (new ones included; events of types no handler takes follow the unrouted policy).
    Raises `ConfigError` for a dead-letter topic among them, or event handlers without an
    outbox."""

    def __init__(
        self,
        watched: WatchedTables,
        router: Router,
        dead_letter_topic: str,
        *,
        events: bool = True,
    ) -> None:
        prefix = self._prefix = watched.connector.topic_prefix
        self.topics = [f"{prefix}.{table}" for table in router.tables()]
        # Debezium's BEGIN / END records, for the handlers of whole transactions.
        self.transaction_topic = f"{prefix}.transaction" if router.transaction_routes else None
        if self.transaction_topic is not None:
            self.topics.append(self.transaction_topic)
        self._outbox: re.Pattern[str] | None = None
        self._kinds: dict[str, tuple[bool, str]] = {}
        # ``events``: the outbox's topics even without an event handler (their records then
        # follow the unrouted policy); a workload other than `default` takes only its own.
        pattern = outbox_topic_pattern(watched) if events or router.event_types() else None
        if pattern is not None:
            self.topics.append(pattern)
            self._outbox = re.compile(pattern)
            if self._outbox.match(dead_letter_topic):
                raise ConfigError(
                    "settings", [f"the dead-letter topic {dead_letter_topic} is an outbox topic"]
                )
        elif router.event_types() and watched.outbox is None:
            raise ConfigError(
                "handlers",
                [
                    f"{', '.join(router.event_types())}: event handlers need an `outbox:` "
                    "in the watched-tables file"
                ],
            )

    def kind(self, topic: str) -> tuple[bool, str]:
        """Whether ``topic`` is an outbox topic, and the table a data topic is named for
        (<prefix>.<schema>.<table>); worked out once per topic."""
        found = self._kinds.get(topic)
        if found is None:
            outbox = self._outbox is not None and bool(self._outbox.match(topic))
            tableless = outbox or topic == self.transaction_topic
            found = self._kinds[topic] = (outbox, "" if tableless else table_of_topic(topic))
        return found

    def transaction_topics(self, handler: TransactionHandler) -> set[str]:
        """The topics a transaction handler's transactions come from: its tables' and the
        transaction topic."""
        return {f"{self._prefix}.{t}" for t in handler.tables} | {str(self.transaction_topic)}

    def table_of(self, topic: str) -> str:
        """The table a data topic is named for; "" for the others."""
        return self.kind(topic)[1]
