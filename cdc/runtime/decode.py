"""Decode a batch: each record to its event; a registry outage waited out, a bad record parked."""

from __future__ import annotations

import threading

from confluent_kafka import Message

from cdc.decoding import Decoder
from cdc.errors import DecodeError, RegistryError
from cdc.runtime.outage import persist
from cdc.runtime.park import Parker
from cdc.runtime.records import Decoded, Handled, coordinates
from cdc.runtime.runs import Backoff, Stopping
from cdc.runtime.subscription import Subscription
from cdc.runtime.tally import Tally


class DecodeStage:
    def __init__(
        self,
        decoder: Decoder,
        subscription: Subscription,
        parker: Parker,
        backoff: Backoff,
        stop: threading.Event,
    ) -> None:
        self.decoder = decoder
        self._subscription = subscription
        self._parker = parker
        self._backoff = backoff
        self._stop = stop

    def batch(self, items: list[Handled | Message], tally: Tally) -> list[Handled | Decoded]:
        """The batch in order, each record decoded or finished; cut short where the consumer
        stops while waiting for the registry (the rest is read again after a restart)."""
        out: list[Handled | Decoded] = []
        decode = self.decoder.decode_message
        kind = self._subscription.kind
        for item in items:
            if isinstance(item, Handled):
                out.append(item)
                continue
            where = coordinates(item)
            outbox = kind(where[0])[0]
            try:
                out.append((item, where, decode(item, outbox=outbox)))
            except (DecodeError, RegistryError):
                try:
                    out.append(self.one(item, where, outbox, tally))
                except Stopping:
                    break
        return out

    def one(
        self, msg: Message, where: tuple[str, int, int], outbox: bool, tally: Tally
    ) -> Handled | Decoded:
        """Decode one record: its event, or the record parked if it cannot be decoded.
        `Stopping` if the consumer stops while the registry is down."""
        try:
            try:
                event = self.decoder.decode_message(msg, outbox=outbox)
            except RegistryError:
                # An outage, not the record's fault: wait it out rather than park the record.
                event = persist(
                    "registry",
                    RegistryError,
                    lambda: self.decoder.decode_message(msg, outbox=outbox),
                    self._stop.wait,
                    self._backoff,
                )
        except DecodeError as exc:
            reason = exc.reason if exc.part == "value" else f"{exc.part}: {exc.reason}"
            self._parker.park(msg, reason, "DecodeError", wait=self._stop.wait)
            tally.count("undecodable", "", "")
            return Handled(*where, None, parked=(str(exc),))
        return msg, where, event
