"""Behind a load balancer: the client is read from ``X-Forwarded-For`` only when the peer is a
trusted proxy. Served by ``ansim serve`` itself on 127.0.0.1 (the peer address is the point), once
with 127.0.0.1 trusted and once without."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from app.security.client_ip import client_host, parse_networks
from tests.conftest import room_in_the_minute
from tests.e2e.harness import Proc, free_ports, log_path, spawn

LOGINS_PER_MIN = 3


def _serve(port: int, trusted: str) -> Proc:
    env = dict(os.environ)
    env.update(
        {
            "ANSIM_ENVIRONMENT": "test",
            "ANSIM_TRUSTED_PROXIES": trusted,
            "ANSIM_RATE_LIMIT_LOGIN_PER_IP_PER_MIN": str(LOGINS_PER_MIN),
            "ANSIM_DB_POOL_SIZE": "3",
            "ANSIM_DB_MAX_OVERFLOW": "1",
            "ANSIM_DB_HOT_POOL_SIZE": "2",
        }
    )
    proc = spawn(f"proxy-{port}", ["-m", "app.cli", "serve", "--port", str(port)], env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"ansim serve exited; see {log_path(f'proxy-{port}')}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"ansim serve on {port} did not start")


@pytest.fixture(scope="module")
def servers(migrated) -> Iterator[dict[str, str]]:
    trusting_port, distrusting_port = free_ports(2)
    trusting = _serve(trusting_port, "10.0.0.0/8,127.0.0.1")
    try:
        distrusting = _serve(distrusting_port, "10.0.0.0/8")
    except BaseException:
        trusting.stop(3)
        raise
    try:
        yield {
            "trusting": f"http://127.0.0.1:{trusting_port}",
            "distrusting": f"http://127.0.0.1:{distrusting_port}",
        }
    finally:
        trusting.stop(5)
        distrusting.stop(5)


async def _logins(base: str, forwarded_for: str | None, n: int) -> list[int]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        return [
            (
                await http.post(
                    "/v1/auth/login", json={"username": "x", "password": "y"}, headers=headers
                )
            ).status_code
            for _ in range(n)
        ]


async def test_behind_a_trusted_proxy_each_client_has_its_own_sign_in_bucket(servers):
    base = servers["trusting"]
    await room_in_the_minute(10)  # every try in one window of the server's limiter
    assert await _logins(base, "198.51.100.1", LOGINS_PER_MIN + 1) == [401] * 3 + [429]
    # Another woman behind the same balancer is not held back by the first one's tries.
    assert await _logins(base, "198.51.100.2", 1) == [401]
    # A client cannot escape its bucket by writing its own X-Forwarded-For: the balancer appends
    # the address it saw, and the right-most untrusted address is the one that counts.
    assert await _logins(base, "203.0.113.9, 198.51.100.1", 1) == [429]
    # Hops through further trusted proxies (10/8) are skipped.
    assert await _logins(base, "198.51.100.1, 10.1.2.3", 1) == [429]


async def test_from_an_untrusted_peer_a_forged_x_forwarded_for_is_ignored(servers):
    base = servers["distrusting"]
    await room_in_the_minute(10)
    statuses = []
    for i in range(LOGINS_PER_MIN + 1):
        statuses += await _logins(base, f"198.51.100.{i + 10}", 1)
    assert statuses == [401] * 3 + [429]


async def test_security_events_record_the_client_behind_the_proxy(servers, make_member, pool):
    m = await make_member()
    for base, forwarded, expected in (
        (servers["trusting"], "198.51.100.77", "198.51.100.77"),
        (servers["distrusting"], "198.51.100.78", "127.0.0.1"),
    ):
        async with httpx.AsyncClient(base_url=base, timeout=10, headers=m.headers) as http:
            sos = await http.post("/v1/alerts", json={"client_alert_id": str(uuid.uuid4())})
            assert sos.status_code in (200, 201), sos.text
            r = await http.post(
                f"/v1/alerts/{sos.json()['incident_id']}/cancel",
                json={"pin": "0000"},
                headers={"X-Forwarded-For": forwarded},
            )
            assert r.status_code == 403
        ip = await pool.fetchval(
            "SELECT host(source_ip) FROM security_event WHERE kind = 'wrong_cancel_pin'"
            " ORDER BY id DESC LIMIT 1"
        )
        assert ip == expected


NETS = parse_networks(["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("127.0.0.1", [], "127.0.0.1"),  # a trusted peer that names nobody
        ("127.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["1.1.1.1, 198.51.100.1"], "198.51.100.1"),
        ("127.0.0.1", ["198.51.100.1", "10.0.0.2"], "198.51.100.1"),  # two header lines
        ("127.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # every hop trusted
        ("127.0.0.1", ["198.51.100.1:5123"], "198.51.100.1"),
        ("127.0.0.1", ["[2001:db9::1]:443"], "2001:db9::1"),
        ("127.0.0.1", ["junk"], "127.0.0.1"),
        ("127.0.0.1", ["198.51.100.1, junk"], "127.0.0.1"),
        ("192.0.2.5", ["198.51.100.1"], "192.0.2.5"),  # untrusted peer: header ignored
        ("2001:db8::7", ["198.51.100.1"], "198.51.100.1"),
    ],
)
def test_the_client_is_the_right_most_untrusted_hop(peer, forwarded, expected):
    assert client_host(peer, forwarded, NETS) == expected


def test_without_trusted_proxies_the_peer_is_the_client():
    assert client_host("127.0.0.1", ["198.51.100.1"], []) == "127.0.0.1"
