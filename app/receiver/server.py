"""The receiver's sockets: TCP (several messages per connection) and UDP, on one host and port.

A TCP connection is read in chunks and split at each ``<CR>``; a NUL after the CR (some
panels send one) and anything before the last ``<LF>`` are dropped. Each line is answered in
order. A connection is cut when a line is not finished within ``receiver_line_timeout_s`` of
its first byte (slowloris), when it says nothing for ``receiver_idle_timeout_s``, or when a
line grows past ``receiver_max_line_bytes`` (no panel sends one; a 1 MB line costs us at most
that much memory, once). A line whose handling fails (the database is down) is left
unanswered, so the panel retries; the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from app.config import Settings
from app.receiver.service import Receiver

log = logging.getLogger(__name__)


def split_lines(buffer: bytearray) -> list[bytes]:
    """Take every finished line (up to and including its CR) out of ``buffer``."""
    lines: list[bytes] = []
    while True:
        end = buffer.find(b"\r")
        if end < 0:
            break
        raw = bytes(buffer[: end + 1])
        del buffer[: end + 1]
        start = raw.rfind(b"\n")
        line = raw[start:] if start >= 0 else raw.lstrip(b"\x00 \t")
        if len(line) > 1:
            lines.append(line)
    # What is left starts the next line; leading NULs (after the previous CR) are not part of it.
    while buffer[:1] == b"\x00":
        del buffer[:1]
    return lines


@dataclass
class ServerStats:
    connections: int = 0
    open_connections: int = 0
    cut_slow: int = 0
    cut_long: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


class ReceiverServer:
    def __init__(self, *, receiver: Receiver, settings: Settings) -> None:
        self.receiver = receiver
        self.settings = settings
        self.stats = ServerStats()
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_slots = asyncio.Semaphore(settings.receiver_udp_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> tuple[int, int]:
        """Listen on TCP and UDP; returns the ports (``port`` 0 picks free ones)."""
        self._tcp = await asyncio.start_server(self._connection, host, port, limit=2**16)
        tcp_port: int = self._tcp.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(host, port or tcp_port)
        )
        self._udp = transport
        udp_port: int = transport.get_extra_info("sockname")[1]
        log.info("receiver listening on %s tcp %d udp %d", host, tcp_port, udp_port)
        return tcp_port, udp_port

    async def stop(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    async def answer(self, line: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            reply = await self.receiver.handle(line)
        except Exception as exc:  # the database is down: unanswered, the panel retries
            self.stats.errors += 1
            log.warning("receiver could not handle a message: %s", type(exc).__name__)
            return None
        if len(self.stats.latencies) < 1_000_000:
            self.stats.latencies.append(loop.time() - started)
        return reply

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.stats.connections += 1
        self.stats.open_connections += 1
        settings = self.settings
        buffer = bytearray()
        loop = asyncio.get_running_loop()
        line_started: float | None = None
        try:
            while True:
                if buffer:
                    if line_started is None:
                        line_started = loop.time()
                    timeout = settings.receiver_line_timeout_s - (loop.time() - line_started)
                else:
                    line_started = None
                    timeout = settings.receiver_idle_timeout_s
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), timeout=max(timeout, 0))
                except TimeoutError:
                    if buffer:
                        self.stats.cut_slow += 1
                    return
                if not chunk:
                    return
                buffer += chunk
                lines = split_lines(buffer)
                if lines:
                    line_started = None if not buffer else loop.time()
                for line in lines:
                    reply = await self.answer(line)
                    if reply is not None:
                        writer.write(reply)
                if lines:
                    await writer.drain()
                if len(buffer) > settings.receiver_max_line_bytes:
                    self.stats.cut_long += 1
                    return
        except (ConnectionError, OSError):
            return
        finally:
            self.stats.open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    def datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._udp_slots.locked() or len(data) > self.settings.receiver_max_line_bytes:
            self.stats.errors += 1  # over capacity: dropped, the panel retries
            return
        task = asyncio.create_task(self._datagram(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        async with self._udp_slots:
            buffer = bytearray(data if data.rstrip(b"\x00").endswith(b"\r") else data + b"\r")
            for line in split_lines(buffer):
                reply = await self.answer(line)
                if reply is not None and self._udp is not None:
                    self._udp.sendto(reply, addr)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: ReceiverServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.datagram(data, addr)
