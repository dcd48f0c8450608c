"""Who is calling, behind a load balancer: ``X-Forwarded-For`` from trusted proxies only.

Pure ASGI, outermost: when the peer is in ``ANSIM_TRUSTED_PROXIES`` the client is the right-most
address of ``X-Forwarded-For`` that is not itself a trusted proxy, and ``scope["client"]`` is
rewritten to it, so the rate limits, ``security_event.source_ip`` and every other reader of
``request.client`` see the woman's or dispatcher's address instead of the balancer's. From any
other peer the header is ignored: anyone can write it. ``ansim serve`` turns uvicorn's own proxy
handling off (it would trust 127.0.0.1 by default), so this is the one rule.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """``10.0.0.1`` or ``10.0.0.0/8`` (IPv6 alike); a bad entry is a configuration error."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # "[2001:db8::1]:443"
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: list[Network]) -> bool:
    return any(address in net for net in nets)


def client_host(peer: str | None, forwarded_for: list[str], nets: list[Network]) -> str | None:
    """The client's address, given the peer's and the ``X-Forwarded-For`` header values."""
    if peer is None or not nets:
        return peer
    peer_address = _address(peer)
    if peer_address is None or not _trusted(peer_address, nets):
        return peer
    client = peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # a trusted proxy passed on garbage: keep the last address it vouched for
        client = str(address)
        if not _trusted(address, nets):
            break
    return client


class TrustedProxies:
    def __init__(self, app: ASGIApp, trusted: Iterable[str]) -> None:
        self.app = app
        self.nets = parse_networks(trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.nets and scope["type"] in ("http", "websocket") and scope.get("client"):
            peer, port = scope["client"]
            forwarded = [
                v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"
            ]
            host = client_host(peer, forwarded, self.nets)
            if host != peer:
                scope = {**scope, "client": (host, 0 if forwarded else port)}
        await self.app(scope, receive, send)
