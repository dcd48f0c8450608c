"""Abuse limits: per credential and per IP on everything, except raising an alert."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app.config import Settings
from app.main import create_app

# Every request of a test in one fixed window (see the fixture).
pytestmark = pytest.mark.usefixtures("limit_clock_mid_minute")


@pytest.fixture
async def strict_client(settings: Settings, migrated):
    tight = settings.model_copy(
        update={
            "rate_limit_per_credential_per_min": 5,
            "rate_limit_per_ip_per_min": 50,
            "rate_limit_login_per_ip_per_min": 3,
        }
    )
    app = create_app(tight, process_name="ansim-tests-ratelimit")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_a_credential_over_its_limit_gets_429_with_retry_after(strict_client, make_member):
    m = await make_member()
    path = f"/v1/alerts/{uuid.uuid4()}"
    codes = [(await strict_client.get(path, headers=m.headers)).status_code for _ in range(7)]
    assert codes[:5] == [404] * 5 and codes[5:] == [429, 429]
    r = await strict_client.get(path, headers=m.headers)
    assert r.json()["error"] == "TooManyRequests"
    assert 1 <= int(r.headers["retry-after"]) <= 60


async def test_raising_an_sos_is_never_rate_limited(strict_client, make_member, pool):
    m = await make_member()
    codes = {
        (
            await strict_client.post(
                "/v1/alerts", json={"client_alert_id": str(uuid.uuid4())}, headers=m.headers
            )
        ).status_code
        for _ in range(20)
    }
    assert codes <= {200, 201}
    assert await pool.fetchval("SELECT count(*) FROM incident") == 1  # folded


async def test_sign_in_attempts_are_limited_per_ip(strict_client, make_staff):
    codes = [
        (
            await strict_client.post("/v1/auth/login", json={"username": "x", "password": "y"})
        ).status_code
        for _ in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


async def test_the_limiter_never_stores_the_token(strict_client, make_member, redis):
    m = await make_member()
    await strict_client.get(f"/v1/alerts/{uuid.uuid4()}", headers=m.headers)
    keys = [k.decode() for k in await redis.keys("*")]
    assert keys and not any(m.token in k for k in keys)


async def test_health_is_not_limited(strict_client):
    codes = {(await strict_client.get("/healthz")).status_code for _ in range(60)}
    assert codes == {200}
