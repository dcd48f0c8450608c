"""A receiver on real sockets (in this process, on free ports) and an account at a store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from app.config import Settings
from app.receiver import accounts
from app.receiver import protocol as dc09
from app.receiver.server import ReceiverServer
from app.receiver.service import Receiver
from tests.e2e.harness import free_port
from tests.receiver.simulator import Panel

A = (126.90, 37.50, 126.95, 37.55)
IN_A = (37.52, 126.92)
KEY = "AAAAAAAAAAAAAAAA"


@dataclass
class Running:
    server: ReceiverServer
    receiver: Receiver
    tcp: int
    udp: int


@pytest.fixture
async def running(pool, sessionmaker, settings: Settings) -> AsyncIterator[Running]:
    fast = settings.model_copy(
        update={"receiver_line_timeout_s": 0.5, "receiver_idle_timeout_s": 5.0}
    )
    receiver = Receiver(pool=pool, sessionmaker=sessionmaker, settings=fast)
    server = ReceiverServer(receiver=receiver, settings=fast)
    port = free_port()
    tcp, udp = await server.start("127.0.0.1", port)
    try:
        yield Running(server, receiver, tcp, udp)
    finally:
        await server.stop()


@dataclass
class Site:
    place_id: uuid.UUID
    district_id: uuid.UUID
    plain: dict[str, object]
    encrypted: dict[str, object]


@pytest.fixture
async def site(pool, make_place, make_district) -> Site:
    district_id = await make_district("A", "District A", *A)
    place_id = await make_place("GS25 A", *IN_A, phone="02-111-2222")
    async with pool.acquire() as conn:
        plain = await accounts.create_account(
            conn, place_id=place_id, account="1234", prefix="0", supervision_s=600
        )
        encrypted = await accounts.create_account(
            conn, place_id=place_id, account="CEA", prefix="0", key=KEY, supervision_s=600
        )
    return Site(place_id, district_id, plain, encrypted)


def panel(running: Running, account: str = "1234", **kw: object) -> Panel:
    if account == "CEA" and "key" not in kw:
        kw["key"] = dc09.parse_key(KEY)
    kw.setdefault("ack_timeout_s", 1.0)
    return Panel("127.0.0.1", running.udp if kw.get("udp") else running.tcp, account, **kw)  # type: ignore[arg-type]
