"""A TCP relay that puts network faults between the consumer and the brokers: delay, loss
and a cut-off. This kernel has no netem; relaying each broker's PROXIED listener (advertised
on the relay's port) faults the consumer's traffic and nothing else's.

TCP never loses bytes: a lost segment arrives after a retransmission timeout, and everything
behind it on the connection waits for it. So a chunk is held back by ``rto_s`` with the
probability that at least one of its segments was lost, and later chunks queue behind it. A
cut-off holds every byte, in both directions and on new connections too, until it ends: what
a partition that heals before TCP gives up looks like to both ends."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from dataclasses import dataclass, replace

SEGMENT = 1448  # bytes of payload in one segment on a 1500-byte MTU
CHUNK = 65536


@dataclass(frozen=True)
class Faults:
    delay_s: float = 0.0  # added each way
    loss: float = 0.0  # per segment
    rto_s: float = 0.2  # Linux's least retransmission timeout
    cut: bool = False


@dataclass
class Tally:
    chunks_lost: int = 0  # held back a retransmission timeout
    bytes: int = 0


class FaultProxy:
    """Relays each port of ``routes`` (ours -> the broker's) on a thread of its own; `set`
    changes the faults of every connection at once."""

    def __init__(self, routes: dict[int, int], host: str = "127.0.0.1") -> None:
        self.routes = routes
        self.host = host
        self.faults = Faults()
        self.tally = Tally()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._servers: list[asyncio.base_events.Server] = []
        self._random = random.Random(7)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def set(self, **changes: object) -> None:
        self.faults = replace(self.faults, **changes)  # type: ignore[arg-type]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        for listen, upstream in self.routes.items():
            server = self._loop.run_until_complete(
                asyncio.start_server(
                    lambda r, w, u=upstream: self._relay(r, w, u), self.host, listen
                )
            )
            self._servers.append(server)
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            for server in self._servers:
                server.close()
            open_ones = asyncio.all_tasks(self._loop)  # connections still relayed
            for task in open_ones:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*open_ones, return_exceptions=True))
            self._loop.close()

    async def _relay(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, upstream: int
    ) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection(self.host, upstream)
        except OSError:  # the broker is down: so is the connection through us
            client_w.close()
            return
        with contextlib.suppress(asyncio.CancelledError):  # the relay closing: it ends here
            await asyncio.gather(
                self._pipe(client_r, broker_w),
                self._pipe(broker_r, client_w),
                return_exceptions=True,
            )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: read as it comes, write each chunk once it is due and no cut-off
        holds it, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            last = 0.0
            while data := await reader.read(CHUNK):
                f = self.faults
                due = time.monotonic() + f.delay_s
                segments = -(-len(data) // SEGMENT)
                if f.loss and self._random.random() < 1 - (1 - f.loss) ** segments:
                    due += f.rto_s
                    self.tally.chunks_lost += 1
                last = max(last, due)  # behind whatever is held ahead of it
                queue.put_nowait((last, data))
            queue.put_nowait((0.0, b""))

        async def write() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                while self.faults.cut:
                    await asyncio.sleep(0.05)
                writer.write(data)
                await writer.drain()
                self.tally.bytes += len(data)

        try:
            await asyncio.gather(read(), write())
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
