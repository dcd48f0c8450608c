"""Races and order: reports, accepts and positions that arrive at the same moment or late,
with real concurrency (a real uvicorn and concurrent pool connections)."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.api.test_alerts import city, sos  # noqa: F401  (the fixture)
from tests.security.live_server import serve

PORT = 8671


async def test_simultaneous_sos_with_different_ids_from_one_member_are_one_incident(
    app,
    make_member,
    city,  # noqa: F811
    pool,
):
    """Phone and wearable fire at once: different ``client_alert_id``s, one emergency."""
    members = [await make_member() for _ in range(3)]
    per_member = 6
    async with serve(app, PORT) as host:
        limits = httpx.Limits(max_connections=len(members) * per_member)
        async with httpx.AsyncClient(base_url=f"http://{host}", limits=limits) as http:
            replies = await asyncio.gather(
                *(
                    http.post("/v1/alerts", json=sos(), headers=m.headers, timeout=20)
                    for _ in range(per_member)
                    for m in members
                )
            )
    assert all(r.status_code in (200, 201) for r in replies), [r.text for r in replies]
    for m in members:
        ids = {
            uuid.UUID(r.json()["incident_id"])
            for r in replies
            if r.request.headers["authorization"] == m.headers["Authorization"]
        }
        rows = await pool.fetch("SELECT id FROM incident WHERE member_id = $1", m.id)
        assert len(rows) == 1, f"{len(rows)} incidents for one member"
        assert ids == {rows[0]["id"]}
    assert sorted(r.status_code for r in replies).count(201) == len(members)
