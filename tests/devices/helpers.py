"""Shared by tests/devices and tests/api/test_devices.py: a registered button and signed calls."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson

from app.devices.signing import sign_request
from app.security.tokens import new_device_secret


@dataclass
class DeviceCreds:
    id: uuid.UUID
    secret: str
    place_id: uuid.UUID

    @property
    def url(self) -> str:
        return f"/v1/devices/{self.id}/signals"


async def make_device(
    pool: asyncpg.Pool, place_id: uuid.UUID, *, enabled: bool = True, label: str = "counter"
) -> DeviceCreds:
    device_id = uuid.uuid4()
    secret = new_device_secret()
    await pool.execute(
        "INSERT INTO device (id, safe_place_id, label, secret, enabled)"
        " VALUES ($1, $2, $3, $4, $5)",
        device_id,
        place_id,
        label,
        secret,
        enabled,
    )
    return DeviceCreds(device_id, secret, place_id)


async def send_signal(
    client: httpx.AsyncClient,
    device: DeviceCreds,
    body: dict[str, Any] | bytes,
    *,
    secret: str | None = None,
    url: str | None = None,
    **sign_kw: Any,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = sign_request(secret or device.secret, raw, **sign_kw)
    return await client.post(url or device.url, content=raw, headers=headers)
