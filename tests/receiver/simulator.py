"""A panel simulator that speaks SIA DC-09 over real sockets (TCP or UDP), plain or encrypted.

It numbers its messages (0001..9999), waits for the receiver's answer, sends the same bytes
again when no answer comes (``retries`` times, ``ack_timeout_s`` apart), and keeps a clock
that may drift (``clock_offset_s``): on a ``NAK`` it sets its clock from the receiver's
timestamp and sends the message again, newly stamped and encrypted, as a real panel does.

    python -m tests.receiver.simulator --port 9000 --account 1234 --key AAAAAAAAAAAAAAAA panic
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.receiver import protocol as dc09


@dataclass
class Answer:
    kind: str  # ACK, *ACK, NAK, DUH, or "" (none)
    raw: bytes
    attempts: int


@dataclass
class Panel:
    host: str
    port: int
    account: str
    prefix: str = "0"
    receiver: str | None = None
    key: bytes | None = None
    udp: bool = False
    clock_offset_s: float = 0.0
    ack_timeout_s: float = 2.0
    retries: int = 3
    seq: int = 0
    sent: list[bytes] = field(default_factory=list)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)

    def next_seq(self) -> int:
        self.seq = self.seq % 9999 + 1
        return self.seq

    def frame(self, token: str, data: str, seq: int) -> bytes:
        return dc09.build(
            token,
            seq,
            self.account,
            data,
            prefix=self.prefix,
            receiver=self.receiver,
            key=self.key,
            at=self.now(),
        )

    async def send(self, token: str, data: str = "", *, drop_first: int = 0) -> Answer:
        """Send one message (retries and the NAK clock fix included). ``drop_first``: that
        many first attempts are "lost" (written only up to half, then the connection drops),
        to exercise the retry."""
        seq = self.next_seq()
        frame = self.frame(token, data, seq)
        attempts = 0
        nak_fixed = False
        while attempts <= self.retries:
            attempts += 1
            self.sent.append(frame)
            if drop_first > 0:
                drop_first -= 1
                await self._lose(frame)
                continue
            raw = await self._exchange(frame)
            kind = _kind(raw)
            if kind == "NAK" and not nak_fixed:
                sent_at = dc09.parse_timestamp(raw.rstrip(b"\r"))
                if sent_at is not None:
                    self.clock_offset_s = (sent_at - datetime.now(UTC)).total_seconds()
                nak_fixed = True
                frame = self.frame(token, data, seq)
                continue
            if kind:
                return Answer(kind, raw, attempts)
        return Answer("", b"", attempts)

    async def _lose(self, frame: bytes) -> None:
        if self.udp:
            return  # a datagram that never arrived
        await self.close()
        _reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(frame[: len(frame) // 2])
        await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _exchange(self, frame: bytes) -> bytes:
        if self.udp:
            return await _udp_exchange(self.host, self.port, frame, self.ack_timeout_s)
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None
            self._writer.write(frame)
            await self._writer.drain()
            return await asyncio.wait_for(self._reader.readuntil(b"\r"), self.ack_timeout_s)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            await self.close()
            return b""

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    # The events an installer tests.
    async def panic(self) -> Answer:
        return await self.send("SIA-DCS", "Nri1/PA501")

    async def contact_id(self, qualifier: int, code: int, zone: int = 1, group: int = 1) -> Answer:
        return await self.send("ADM-CID", f"{qualifier}{code:03d} {group:02d} {zone:03d}")

    async def link_test(self) -> Answer:
        return await self.send("NULL")


def _kind(raw: bytes) -> str:
    for kind in ("*ACK", "ACK", "NAK", "DUH"):
        if f'"{kind}"'.encode() in raw:
            return kind
    return ""


class _Once(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


async def _udp_exchange(host: str, port: int, frame: bytes, wait_s: float) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Once, remote_addr=(host, port))
    try:
        transport.sendto(frame)
        return await asyncio.wait_for(proto.answer, wait_s)
    except TimeoutError:
        return b""
    finally:
        transport.close()


async def _main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--account", required=True)
    p.add_argument("--prefix", default="0")
    p.add_argument("--key", help="AES key (ASCII or hex)")
    p.add_argument("--udp", action="store_true")
    p.add_argument("--drift-s", type=float, default=0.0)
    p.add_argument("event", choices=["panic", "duress", "null", "test", "ac-loss", "ac-restore"])
    args = p.parse_args()
    panel = Panel(
        args.host,
        args.port,
        args.account.upper(),
        prefix=args.prefix,
        key=dc09.parse_key(args.key) if args.key else None,
        udp=args.udp,
        clock_offset_s=args.drift_s,
    )
    sends: dict[str, Callable[[], Awaitable[Answer]]] = {
        "panic": panel.panic,
        "duress": lambda: panel.contact_id(1, 121),
        "null": panel.link_test,
        "test": lambda: panel.contact_id(1, 602, 0, 0),
        "ac-loss": lambda: panel.contact_id(1, 301, 0),
        "ac-restore": lambda: panel.contact_id(3, 301, 0),
    }
    answer = await sends[args.event]()
    print(answer.kind or "no answer", answer.attempts, answer.raw)
    await panel.close()


if __name__ == "__main__":
    asyncio.run(_main())
