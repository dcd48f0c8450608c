"""Volunteers at the same moment and after: concurrent accepts, a decline, the close."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from app.dispatch import presence, routing
from app.dispatch.relay import publish_pending
from app.incidents.store import NewIncident, insert_incident
from tests.dispatch.test_routing import _send_due, ctx, gateway  # noqa: F401  (the fixtures)
from tests.security.live_server import serve


async def _sos(pool, member, lat=37.52, lon=126.92) -> uuid.UUID:
    stored = await insert_incident(
        pool,
        NewIncident(source="app", trigger="sos", actor="t", member_id=member.id, lat=lat, lon=lon),
    )
    return stored.id


async def _offer(pool, incident_id, volunteer_id, distance_m=100.0) -> uuid.UUID:
    offer_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO offer (id, incident_id, volunteer_id, status, distance_m)"
        " VALUES ($1, $2, $3, 'offered', $4)",
        offer_id,
        incident_id,
        volunteer_id,
        distance_m,
    )
    return offer_id


async def _route_all(ctx, pool, redis, settings, kind: str) -> None:  # noqa: F811
    """Publish what is committed, route every entry and send what they queued (the test's
    dispatcher) until one of ``kind`` has been routed."""
    deadline = time.monotonic() + 5
    while True:
        await publish_pending(pool, redis, settings)
        entries = [
            routing.parse_entry(fields)
            for _id, fields in await redis.xrange(settings.stream_incidents)
        ]
        for entry in entries:
            await routing.handle(ctx, entry)
        await _send_due(ctx)
        if any(e.kind == kind for e in entries):
            return
        assert time.monotonic() < deadline, f"no {kind} entry reached the stream"
        await asyncio.sleep(0.05)


async def test_volunteers_accepting_at_the_same_moment_only_the_needed_are_assigned(
    app, pool, make_member, make_staff, monkeypatch
):
    """Through a real HTTP server, six accept at once and one is needed: exactly one is
    assigned, the others are told the incident is covered (409 AlreadyCovered)."""
    monkeypatch.setattr(app.state.settings, "volunteers_needed", 1)
    incident_id = await _sos(pool, await make_member())
    volunteers = [await make_staff("volunteer", name=f"V{n}") for n in range(6)]
    offers = [await _offer(pool, incident_id, v.id) for v in volunteers]
    async with (
        serve(app) as host,
        httpx.AsyncClient(base_url=f"http://{host}", timeout=20) as http,
    ):
        replies = await asyncio.gather(
            *(
                http.post(f"/v1/volunteers/offers/{o}/accept", json={}, headers=v.headers)
                for o, v in zip(offers, volunteers, strict=True)
            )
        )
    codes = sorted(r.status_code for r in replies)
    assert codes == [200] + [409] * 5, [r.text for r in replies]
    assert {r.json()["error"] for r in replies if r.status_code == 409} == {"AlreadyCovered"}
    assert (
        await pool.fetchval("SELECT count(*) FROM assignment WHERE incident_id = $1", incident_id)
        == 1
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM incident_event WHERE incident_id = $1"
            " AND kind = 'volunteer_assigned'",
            incident_id,
        )
        == 1
    )


async def test_a_decline_offers_the_incident_to_the_next_nearest_volunteer_not_yet_offered(
    ctx,  # noqa: F811
    client,
    pool,
    redis,
    settings,
    make_member,
    make_staff,
    gateway,  # noqa: F811
):
    ctx.settings = ctx.settings.model_copy(update={"volunteers_offered": 1})
    near, next_, far = [await make_staff("volunteer", name=n) for n in ("Near", "Next", "Far")]
    for v, lat in ((near, 37.5205), (next_, 37.5215), (far, 37.5225)):
        await presence.report(redis, settings, volunteer_id=v.id, lat=lat, lon=126.92)
    incident_id = await _sos(pool, await make_member())
    await _route_all(ctx, pool, redis, settings, "reported")
    offers = {
        r["volunteer_id"]: r["id"]
        for r in await pool.fetch(
            "SELECT id, volunteer_id FROM offer WHERE incident_id = $1", incident_id
        )
    }
    assert set(offers) == {near.id}, "one offered: the nearest"

    r = await client.post(
        f"/v1/volunteers/offers/{offers[near.id]}/decline", json={}, headers=near.headers
    )
    assert r.status_code == 200, r.text
    await _route_all(ctx, pool, redis, settings, "offer_declined")
    rows = await pool.fetch(
        "SELECT volunteer_id, status FROM offer WHERE incident_id = $1", incident_id
    )
    assert {(r["volunteer_id"], r["status"]) for r in rows} == {
        (near.id, "declined"),
        (next_.id, "offered"),
    }, "the next nearest, not the one who declined, not the farther one"
    pushed = [m["to"] for m in gateway.received if m["message"]["type"] == "offer"]
    assert pushed == [f"volunteer:{near.id}", f"volunteer:{next_.id}"]


async def test_assigned_volunteers_are_pushed_the_close_and_nobody_else(
    ctx,  # noqa: F811
    client,
    pool,
    redis,
    settings,
    make_member,
    make_staff,
    gateway,  # noqa: F811
):
    member = await make_member()
    incident_id = await _sos(pool, member)
    assigned, offered = await make_staff("volunteer", name="A"), await make_staff("volunteer")
    await _offer(pool, incident_id, offered.id)
    r = await client.post(
        f"/v1/volunteers/offers/{await _offer(pool, incident_id, assigned.id)}/accept",
        json={},
        headers=assigned.headers,
    )
    assert r.status_code == 200, r.text
    await _route_all(ctx, pool, redis, settings, "volunteer_assigned")
    gateway.received.clear()

    r = await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": member.pin}, headers=member.headers
    )
    assert r.status_code == 200, r.text
    await _route_all(ctx, pool, redis, settings, "cancelled")
    await _route_all(ctx, pool, redis, settings, "cancelled")  # a redelivery pushes nothing more
    closes = [m for m in gateway.received if m["message"]["type"] == "incident_closed"]
    assert [(m["to"], m["message"]["status"]) for m in closes] == [
        (f"volunteer:{assigned.id}", "cancelled")
    ]
    assert (
        await pool.fetchval(
            "SELECT status FROM offer WHERE incident_id = $1 AND volunteer_id = $2",
            incident_id,
            offered.id,
        )
        == "withdrawn"
    )
