"""Push and SMS gateways: adapters behind one interface, every attempt recorded.

The HTTP adapter signs the body (``X-Ansim-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"<t>.<body>">``), sends an ``Idempotency-Key`` so the gateway can drop our retries, and retries
network errors, 429 and 5xx with exponential backoff and full jitter. A real FCM/APNs/SMS
provider plugs in as another ``Gateway``."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
import httpx
import orjson

from app.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    attempt: int
    ok: bool
    http_status: int | None
    error: str | None


class Gateway(Protocol):
    channel: str

    async def send(
        self, *, target: str, message: dict[str, Any], idempotency_key: str
    ) -> list[Attempt]: ...


def sign(key: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(key: str, header: str, body: bytes, *, tolerance_s: int = 300) -> bool:
    """What a gateway (or our test receiver) runs to check a request came from us."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(key, timestamp, body), header)


class HttpGateway:
    def __init__(
        self,
        *,
        channel: str,
        url: str,
        key: str,
        http: httpx.AsyncClient,
        max_attempts: int = 4,
        backoff_s: float = 0.2,
    ) -> None:
        self.channel = channel
        self.url = url
        self.key = key
        self.http = http
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s

    async def send(
        self, *, target: str, message: dict[str, Any], idempotency_key: str
    ) -> list[Attempt]:
        body = orjson.dumps({"channel": self.channel, "to": target, "message": message})
        attempts: list[Attempt] = []
        for n in range(1, self.max_attempts + 1):
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": idempotency_key,
                "X-Ansim-Signature": sign(self.key, int(time.time()), body),
            }
            try:
                response = await self.http.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                attempts.append(Attempt(n, False, None, type(exc).__name__))
            else:
                ok = 200 <= response.status_code < 300
                attempts.append(
                    Attempt(n, ok, response.status_code, None if ok else response.text[:200])
                )
                if ok or (response.status_code < 500 and response.status_code != 429):
                    return attempts
            if n < self.max_attempts:
                await asyncio.sleep(random.uniform(0, self.backoff_s * 2 ** (n - 1)))
        return attempts


class LogGateway:
    """Development without a provider: the message is logged and counted as delivered."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    async def send(
        self, *, target: str, message: dict[str, Any], idempotency_key: str
    ) -> list[Attempt]:
        log.info("%s to %s: %s", self.channel, target, message)
        return [Attempt(1, True, None, "no gateway configured: logged only")]


def build_gateways(settings: Settings, http: httpx.AsyncClient) -> dict[str, Gateway]:
    gateways: dict[str, Gateway] = {}
    for channel, url in (("push", settings.push_gateway_url), ("sms", settings.sms_gateway_url)):
        gateways[channel] = (
            HttpGateway(
                channel=channel,
                url=url,
                key=settings.gateway_hmac_key,
                http=http,
                max_attempts=settings.gateway_max_attempts,
                backoff_s=settings.gateway_backoff_s,
            )
            if url
            else LogGateway(channel)
        )
    return gateways


async def already_delivered(
    pool: asyncpg.Pool, *, incident_id: uuid.UUID, channel: str, target: str
) -> bool:
    found = await pool.fetchval(
        "SELECT 1 FROM delivery_attempt WHERE incident_id = $1 AND channel = $2"
        " AND target = $3 AND ok LIMIT 1",
        incident_id,
        channel,
        target,
    )
    return found is not None


async def deliver_once(
    pool: asyncpg.Pool,
    gateway: Gateway,
    *,
    incident_id: uuid.UUID,
    target: str,
    message: dict[str, Any],
    purpose: str | None = None,
) -> bool | None:
    """Send unless already delivered (``None``); record every attempt; True if delivered now.

    ``purpose`` tells apart a second message to the same person about the same incident (the
    volunteer offered it, then told it is closed): it is recorded with the target
    (``target#purpose``) and in the idempotency key; the gateway still gets the bare target."""
    key = f"{target}#{purpose}" if purpose else target
    if await already_delivered(pool, incident_id=incident_id, channel=gateway.channel, target=key):
        return None
    attempts = await gateway.send(
        target=target,
        message=message,
        idempotency_key=f"{incident_id}:{gateway.channel}:{key}",
    )
    await pool.executemany(
        "INSERT INTO delivery_attempt (incident_id, channel, target, attempt, ok, http_status,"
        " error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (incident_id, gateway.channel, key, a.attempt, a.ok, a.http_status, a.error)
            for a in attempts
        ],
    )
    return any(a.ok for a in attempts)
