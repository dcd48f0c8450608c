"""A registered home (door, in-home button, motion sensor, keypad) and its sensors' signed calls."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson

from app.devices.signing import sign_request
from app.homes import service

#: A rectangle of Seoul for the home's district, and her home inside it.
DISTRICT = ("11680", "Gangnam-gu", 127.00, 37.48, 127.08, 37.53)
HOME_LAT, HOME_LON = 37.4979, 127.0276
ADDRESS = "12 Yeoksam-ro 3-gil, flat 302, Gangnam-gu"


@dataclass
class Sensor:
    id: uuid.UUID
    secret: str
    kind: str

    @property
    def url(self) -> str:
        return f"/v1/homes/devices/{self.id}/signals"


@dataclass
class HomeCreds:
    id: uuid.UUID
    sensors: dict[str, Sensor]

    @property
    def door(self) -> Sensor:
        return self.sensors["door"]

    @property
    def button(self) -> Sensor:
        return self.sensors["home_button"]

    @property
    def keypad(self) -> Sensor:
        return self.sensors["keypad"]

    @property
    def motion(self) -> Sensor:
        return self.sensors["motion"]


async def make_home(pool: asyncpg.Pool, member_id: uuid.UUID, **kw: Any) -> HomeCreds:
    async with pool.acquire() as conn:
        home = await service.create_home(
            conn,
            member_id=member_id,
            address=kw.pop("address", ADDRESS),
            lat=kw.pop("lat", HOME_LAT),
            lon=kw.pop("lon", HOME_LON),
            label="flat 302",
            motion=True,
            keypad=True,
            **kw,
        )
    return HomeCreds(
        home.home_id, {kind: Sensor(did, secret, kind) for kind, did, secret in home.devices}
    )


async def signal(
    client: httpx.AsyncClient,
    sensor: Sensor,
    body: dict[str, Any] | bytes,
    *,
    secret: str | None = None,
    url: str | None = None,
    **sign_kw: Any,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = sign_request(secret or sensor.secret, raw, **sign_kw)
    return await client.post(url or sensor.url, content=raw, headers=headers)
