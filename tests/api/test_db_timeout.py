"""A statement PostgreSQL does not answer in time fails the request with 503, never hangs it."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from app.main import create_app


@pytest.fixture
async def impatient_client(settings, migrated):
    app = create_app(
        settings.model_copy(update={"db_command_timeout_s": 0.5}), process_name="ansim-tests-to"
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_a_blocked_statement_times_out_as_a_503_with_retry_after(
    impatient_client, make_member, pool
):
    m = await make_member()
    r = await impatient_client.post(
        "/v1/alerts", json={"client_alert_id": str(uuid.uuid4())}, headers=m.headers
    )
    incident_id = r.json()["incident_id"]
    async with pool.acquire() as conn, conn.transaction():
        # Another transaction holds her incident: the cancel's row lock cannot be taken.
        await conn.execute(
            "SELECT 1 FROM incident WHERE id = $1 FOR UPDATE", uuid.UUID(incident_id)
        )
        started = time.monotonic()
        blocked = await asyncio.wait_for(
            impatient_client.post(
                f"/v1/alerts/{incident_id}/cancel", json={"pin": m.pin}, headers=m.headers
            ),
            timeout=10,
        )
        waited = time.monotonic() - started
    assert blocked.status_code == 503, blocked.text
    assert blocked.json()["error"] == "ServiceUnavailable" and blocked.headers["retry-after"]
    assert waited < 5
    assert await pool.fetchval("SELECT status FROM incident") == "new"
