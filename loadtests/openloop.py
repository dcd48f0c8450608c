"""Open-loop SOS generator with WebSocket consoles, for our stack and for the ceiling alike.

Every request has a scheduled send time; latency counts from that time, so time spent queueing
(in the generator, the kernel or the server) is measured rather than hidden (no coordinated
omission). The same generator drives both targets so their figures are comparable. All clocks
are CLOCK_MONOTONIC (system-wide on Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

now = time.monotonic_ns

# The ceiling's bounding box (setup.sql): the same points for both targets.
LAT0, LAT1 = 37.42, 37.70
LON0, LON1 = 126.76, 127.18


class StaleConnection(ConnectionError):
    """The server had closed the connection before the request (nothing came back)."""


class HttpConn:
    """A minimal keep-alive HTTP/1.1 client: the generator must cost less than the server."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def open(self) -> HttpConn:
        self.r, self.w = await asyncio.open_connection(self.host, self.port)
        return self

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.w.close()

    async def post(self, path: bytes, body: bytes, headers: bytes = b"") -> tuple[int, bytes]:
        self.w.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"%sContent-Length: %d\r\n\r\n%s" % (path, headers, len(body), body)
        )
        status = await self.r.readline()
        if not status:
            raise StaleConnection("server closed the connection")
        clen = 0
        while True:
            h = await self.r.readline()
            if h in (b"\r\n", b""):
                break
            k, _, v = h.partition(b":")
            if k.lower() == b"content-length":
                clen = int(v)
        data = await self.r.readexactly(clen)
        return int(status.split()[1]), data


@dataclass
class Target:
    """How to talk to one pipeline: its SOS endpoint, body, and console messages."""

    name: str
    host: str
    port: int
    path: bytes
    ws_urls: list[str]  # one per console
    make_body: Callable[[int, random.Random], bytes]
    headers_for: Callable[[int], bytes]
    id_from_response: Callable[[bytes], str]
    #: The SOS ids a console message announces.
    id_from_console: Callable[[bytes | str], list[str]]
    #: Whether consoles get a greeting first (ours: hello); ready means greeted.
    greets: bool = False


def ours(
    host: str,
    port: int,
    member_tokens: list[str],
    console_tokens: list[str],
    *,
    console_ports: list[int] | None = None,
) -> Target:
    """Our API on ``port``; console ``i`` connects to ``console_ports[i % n]`` (the console
    processes; default the API's port)."""
    ports = console_ports or [port]
    auth = [b"Authorization: Bearer %s\r\n" % t.encode() for t in member_tokens]
    # One woman per SOS: a second report from a member with an open alert is folded into it
    # (a different, cheaper path), so each request takes the next member.
    next_member = itertools.count()

    def body(i: int, rng: random.Random) -> bytes:
        return orjson.dumps(
            {
                "client_alert_id": str(uuid.uuid4()),
                "trigger": "button",
                "location": {
                    "lat": rng.uniform(LAT0, LAT1),
                    "lon": rng.uniform(LON0, LON1),
                    "accuracy_m": 8.0,
                },
                "battery_pct": 80,
            }
        )

    def from_console(msg: bytes | str) -> list[str]:
        d = orjson.loads(msg)
        out: list[str] = []
        for one in d["messages"] if d.get("type") == "batch" else [d]:
            if one.get("type") == "incident" and one.get("event") == "reported":
                out.append(str(one["incident"]["id"]))
            elif one.get("type") == "snapshot":  # the protocol: a snapshot carries incidents
                out.extend(str(i["id"]) for i in one["incidents"])
        return out

    return Target(
        name="ansim",
        host=host,
        port=port,
        path=b"/v1/alerts",
        # As the web console does, they ask for the messages waiting together in one frame.
        ws_urls=[
            f"ws://{host}:{ports[i % len(ports)]}/v1/console/stream?token={t}&batch=true"
            for i, t in enumerate(console_tokens)
        ],
        make_body=body,
        headers_for=lambda i: auth[next(next_member) % len(auth)],
        id_from_response=lambda data: str(orjson.loads(data)["incident_id"]),
        id_from_console=from_console,
        greets=True,
    )


def ceiling(host: str, api_port: int, dispatch_port: int, consoles: int) -> Target:
    def body(i: int, rng: random.Random) -> bytes:
        lon, lat = rng.uniform(LON0, LON1), rng.uniform(LAT0, LAT1)
        return orjson.dumps({"device_id": f"probe-{i}", "lat": lat, "lon": lon, "accuracy_m": 8.0})

    return Target(
        name="ceiling",
        host=host,
        port=api_port,
        path=b"/sos",
        ws_urls=[f"ws://{host}:{dispatch_port}/ws/console"] * consoles,
        make_body=body,
        headers_for=lambda i: b"",
        id_from_response=lambda data: str(orjson.loads(data)["incident_id"]),
        id_from_console=lambda msg: [str(orjson.loads(msg)["alert"]["incident_id"])],
    )


@dataclass
class RunData:
    start_ns: int
    #: index -> (scheduled, response received, status, incident id or None)
    sent: list[tuple[int, int, int, str | None]] = field(default_factory=list)
    #: per console: incident id -> received
    recv: list[dict[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    conns_opened: int = 0
    #: Requests sent again on a new connection because the idle one they were first written to
    #: had been closed by the server (its keep-alive timeout), as phones' HTTP clients do.
    stale_retries: int = 0
    #: seconds from the last scheduled send until every console had every accepted SOS
    drain_s: float | None = None
    console_failures: list[str] = field(default_factory=list)


def schedule(segments: list[tuple[float, float]]) -> list[int]:
    """Scheduled send offsets (ns) for consecutive (rate per s, duration s) segments."""
    out: list[int] = []
    t0 = 0.0
    for rate, dur in segments:
        n = round(rate * dur)
        out.extend(int((t0 + i / rate) * 1e9) for i in range(n))
        t0 += dur
    return out


async def run(
    target: Target, offsets: list[int], *, drain_timeout_s: float = 20.0, seed: int = 3
) -> RunData:
    """Connect the consoles, send on schedule, wait until every console has everything."""
    k = len(target.ws_urls)
    data = RunData(start_ns=0, recv=[{} for _ in range(k)])
    readies = [asyncio.Event() for _ in range(k)]

    def resume_url(i: int, cursor: str) -> str:
        sep = "&" if "?" in target.ws_urls[i] else "?"
        return f"{target.ws_urls[i]}{sep}cursor={cursor}"

    async def console(i: int) -> None:
        url, cursor = target.ws_urls[i], None
        for _attempt in range(20):
            try:
                async with ws_connect(url, max_queue=None, max_size=None) as ws:
                    if not target.greets:
                        readies[i].set()
                    async for m in ws:
                        t = now()
                        for iid in target.id_from_console(m):
                            data.recv[i].setdefault(iid, t)
                        if target.greets:
                            msg = orjson.loads(m)
                            cursor = msg.get("cursor") or cursor
                            # Live once past the greeting: the snapshot (or the replay) of
                            # what is open is the console's start-up, not part of the run.
                            if msg.get("type") != "hello":
                                readies[i].set()
                        else:
                            readies[i].set()
                return
            except asyncio.CancelledError:
                raise
            except ConnectionClosed as exc:
                # The protocol: a console told to reconnect (too slow, max lifetime) resumes
                # from its last cursor and misses nothing.
                data.console_failures.append(f"console {i}: {exc!r}")
                if not (target.greets and cursor and exc.rcvd and exc.rcvd.code in (4000, 4008)):
                    break
                url = resume_url(i, cursor)
            except Exception as exc:
                data.console_failures.append(f"console {i}: {exc!r}")
                # A console that was live retries, as the real one does (its page reconnects
                # with its last cursor); the handshake can time out while the server is swamped.
                if not (target.greets and cursor):
                    break
                await asyncio.sleep(0.5)
                url = resume_url(i, cursor)
        readies[i].set()

    ctasks = [asyncio.create_task(console(i)) for i in range(k)]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), 15)
        await asyncio.sleep(0.3)
        n = len(offsets)
        rate_guess = n / max(offsets[-1] / 1e9, 1.0) if n else 1
        npre = int(min(64, max(4, rate_guess / 20)))
        idle: asyncio.Queue[HttpConn] = asyncio.Queue()
        for _ in range(npre):
            idle.put_nowait(await HttpConn(target.host, target.port).open())
        data.conns_opened = npre
        rng = random.Random(seed)
        data.sent = [(0, 0, 0, None)] * n

        async def new_conn() -> HttpConn:
            data.conns_opened += 1
            return await HttpConn(target.host, target.port).open()

        async def one(i: int, t_sched: int) -> None:
            reused = not idle.empty()
            try:
                c = idle.get_nowait() if reused else await new_conn()
            except Exception as exc:
                data.sent[i] = (t_sched, now(), 0, None)
                data.errors.append(f"connect: {exc!r}")
                return
            body = target.make_body(i, rng)
            headers = target.headers_for(i)
            try:
                try:
                    st, payload = await c.post(target.path, body, headers)
                except (StaleConnection, ConnectionResetError):
                    # An idle connection the server closed (keep-alive timeout) before this
                    # request reached it: nothing was received (a reset: the request reached a
                    # socket closed unread), so send it on a new one, as a phone's HTTP client
                    # does (RFC 9112, 9.3.1). A fresh connection closing is an error.
                    c.close()
                    if not reused:
                        raise
                    data.stale_retries += 1
                    c = await new_conn()
                    st, payload = await c.post(target.path, body, headers)
                t_resp = now()
            except Exception as exc:
                c.close()
                data.sent[i] = (t_sched, now(), 0, None)
                data.errors.append(repr(exc))
                return
            idle.put_nowait(c)
            if st not in (200, 201):
                data.sent[i] = (t_sched, t_resp, st, None)
                data.errors.append(f"HTTP {st}: {payload[:200]!r}")
                return
            data.sent[i] = (t_sched, t_resp, st, target.id_from_response(payload))

        start = now() + 20_000_000
        data.start_ns = start
        tasks = []
        for i, off in enumerate(offsets):
            t_sched = start + off
            d = (t_sched - now()) / 1e9
            if d > 0:
                await asyncio.sleep(d)
            tasks.append(asyncio.create_task(one(i, t_sched)))
        await asyncio.gather(*tasks)
        last_sched = start + (offsets[-1] if offsets else 0)
        accepted = [s[3] for s in data.sent if s[3] is not None]
        deadline = now() + int(drain_timeout_s * 1e9)
        while now() < deadline:
            if all(all(a in r for a in accepted) for r in data.recv):
                data.drain_s = max(0.0, (now() - last_sched) / 1e9)
                break
            await asyncio.sleep(0.02)
        while not idle.empty():
            idle.get_nowait().close()
    finally:
        for t in ctasks:
            t.cancel()
        await asyncio.gather(*ctasks, return_exceptions=True)
    return data


async def sequential(target: Target, n: int, gap_s: float = 0.02) -> RunData:
    """Idle latency: one SOS at a time on one connection (closed loop, by design)."""
    offsets = [int(i * gap_s * 1e9) for i in range(n)]
    return await run(target, offsets)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (as the ceiling's probe computes it)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100.0 * len(s) + 0.5) - 1))
    return s[k]


def stats(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values) if values else None,
    }
