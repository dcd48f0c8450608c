"""Push and SMS gateways: adapters behind one interface, one attempt per call.

The HTTP adapter signs the body (``X-Ansim-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"<t>.<body>">``) and sends an ``Idempotency-Key`` so the gateway can drop our retries; the
retries themselves are scheduled by ``app/notifications``. A real FCM/APNs/SMS provider plugs in
as another ``Gateway``."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import orjson

from app.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    ok: bool
    http_status: int | None
    error: str | None
    #: Worth trying again (network errors, 429, 5xx); a refusal is final.
    retry: bool = False


class Gateway(Protocol):
    channel: str

    async def send(
        self, *, target: str, message: dict[str, Any], idempotency_key: str
    ) -> Attempt: ...


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
    """One HTTP attempt per ``send``: retries are scheduled from PostgreSQL
    (``app/notifications``), so a dispatcher's restart or a long outage loses nothing."""

    def __init__(self, *, channel: str, url: str, key: str, http: httpx.AsyncClient) -> None:
        self.channel = channel
        self.url = url
        self.key = key
        self.http = http

    async def send(self, *, target: str, message: dict[str, Any], idempotency_key: str) -> Attempt:
        body = orjson.dumps({"channel": self.channel, "to": target, "message": message})
        return await post_signed(
            self.http,
            self.url,
            key=self.key,
            body=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": idempotency_key},
        )


async def post_signed(
    http: httpx.AsyncClient,
    url: str,
    *,
    key: str,
    body: bytes,
    headers: dict[str, str],
    timeout_s: float | None = None,
) -> Attempt:
    """One signed POST (``X-Ansim-Signature`` added to ``headers``) and what it came to: the
    gateways' and the agencies' webhooks (app/interop) alike."""
    headers = {**headers, "X-Ansim-Signature": sign(key, int(time.time()), body)}
    try:
        response = await http.post(
            url,
            content=body,
            headers=headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s,
        )
    except httpx.HTTPError as exc:
        return Attempt(False, None, type(exc).__name__, retry=True)
    ok = 200 <= response.status_code < 300
    return Attempt(
        ok,
        response.status_code,
        None if ok else response.text[:200],
        # A 4xx other than 429 (a bad signature, an unknown number) will not get better.
        retry=not ok and (response.status_code >= 500 or response.status_code == 429),
    )


class LogGateway:
    """Development and tests without a provider: the message is logged and counted as
    delivered. Production refuses to start without gateway URLs (``app.config``)."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    async def send(self, *, target: str, message: dict[str, Any], idempotency_key: str) -> Attempt:
        # The target (an id such as ``guardian:<uuid>``), never the text: a guardian's text
        # names her. The kind of message and its size say enough to follow a development run.
        log.info(
            "%s to %s (no gateway, logged only): a %s message of %d characters",
            self.channel,
            target,
            message.get("type", "text"),
            len(str(message.get("text", ""))),
        )
        return Attempt(True, None, "no gateway configured: logged only")


def build_gateways(settings: Settings, http: httpx.AsyncClient) -> dict[str, Gateway]:
    gateways: dict[str, Gateway] = {}
    for channel, url in (("push", settings.push_gateway_url), ("sms", settings.sms_gateway_url)):
        if not url and settings.environment == "production":
            raise ValueError(f"no {channel} gateway URL in production")
        gateways[channel] = (
            HttpGateway(channel=channel, url=url, key=settings.gateway_hmac_key, http=http)
            if url
            else LogGateway(channel)
        )
    return gateways
