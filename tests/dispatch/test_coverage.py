"""Coverage: an incident whose channel no console watches goes to consoles that are open, and a
supervisor is paged when nobody at all is watching (real PostgreSQL/PostGIS and Redis)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.dispatch import console_log, routing
from app.dispatch.coverage import (
    Audience,
    ConsolePresence,
    Coverage,
    Watch,
    audience,
    console_channels,
    read_watch,
)
from app.incidents.store import NewIncident, insert_incident

# Three districts in a row: A touches B, B touches C, A does not touch C.
A = (126.90, 37.50, 126.95, 37.55)
B = (126.95, 37.50, 127.00, 37.55)
C = (127.00, 37.50, 127.05, 37.55)
IN_A = (37.52, 126.92)
OUTSIDE = (37.40, 126.50)

D1, D2, D3 = (uuid.UUID(int=i) for i in (1, 2, 3))
NEAR = {D1: frozenset({D2}), D2: frozenset({D1, D3}), D3: frozenset({D2})}


@pytest.mark.parametrize(
    ("district", "watch", "expected"),
    [
        # Its own console is open: nothing to add.
        (D1, Watch(0, {D1: 1}), Audience(frozenset(), True)),
        # Its own is closed: the open neighbours cover (with or without a city-wide console).
        (D1, Watch(0, {D2: 1, D3: 1}), Audience(frozenset({D2}), True)),
        (D1, Watch(1, {D2: 1}), Audience(frozenset({D2}), True)),
        # No neighbour open: the city-wide console has it; without one, every open console.
        (D1, Watch(1, {D3: 1}), Audience(frozenset(), True)),
        (D1, Watch(0, {D3: 1}), Audience(frozenset({D3}), True)),
        # No district: the city-wide console, else every open district console.
        (None, Watch(1, {D1: 1}), Audience(frozenset(), True)),
        (None, Watch(0, {D1: 1, D3: 2}), Audience(frozenset({D1, D3}), True)),
        # Nobody at all.
        (D1, Watch(0, {}), Audience(frozenset(), False)),
        (None, Watch(0, {}), Audience(frozenset(), False)),
    ],
)
def test_the_coverage_rule(district, watch, expected):
    assert audience(district, watch, NEAR) == expected


async def test_presence_counts_open_consoles_across_processes_and_forgets_a_dead_one(
    redis, settings
):
    s = settings.model_copy(
        update={"console_presence_refresh_s": 0.1, "console_presence_ttl_s": 0.6}
    )
    alive, dying = (
        ConsolePresence(redis=redis, settings=s),
        ConsolePresence(redis=redis, settings=s),
    )
    first = await alive.join(console_channels(city_wide=False, district_ids=frozenset({D1, D2})))
    await alive.join(console_channels(city_wide=True, district_ids=frozenset()))
    await dying.join(console_channels(city_wide=False, district_ids=frozenset({D3})))
    assert await read_watch(redis, s) == Watch(1, {D1: 1, D2: 1, D3: 1})

    # A process that dies stops refreshing: its consoles expire; the live one's stay.
    assert dying._task is not None
    dying._task.cancel()
    await asyncio.sleep(1.0)
    assert await read_watch(redis, s) == Watch(1, {D1: 1, D2: 1})

    await alive.leave(first)
    assert await read_watch(redis, s) == Watch(1, {})
    await alive.stop()
    assert await read_watch(redis, s) == Watch(0, {})


@pytest.fixture
async def districts(make_district):
    return {
        "a": await make_district("A", "District A", *A),
        "b": await make_district("B", "District B", *B),
        "c": await make_district("C", "District C", *C),
    }


async def _watching(redis, settings, *district_ids, city_wide=False):
    presence = ConsolePresence(redis=redis, settings=settings)
    for d in district_ids:
        await presence.join(console_channels(city_wide=False, district_ids=frozenset({d})))
    if city_wide:
        await presence.join(console_channels(city_wide=True, district_ids=frozenset()))
    return presence


async def _sos(pool, member, at=None):
    lat, lon = at if at else (None, None)
    return await insert_incident(
        pool,
        NewIncident(source="app", trigger="sos", actor="t", member_id=member.id, lat=lat, lon=lon),
        publish=True,
    )


async def _events(pool, incident_id, kind):
    rows = await pool.fetch(
        "SELECT data FROM incident_event WHERE incident_id = $1 AND kind = $2 ORDER BY id",
        incident_id,
        kind,
    )
    return [r["data"] for r in rows]


async def test_an_unlocated_sos_goes_to_every_open_district_console_without_a_city_wide_one(
    pool, redis, settings, districts, make_member
):
    presence = await _watching(redis, settings, districts["a"], districts["c"])
    member = await make_member()
    unlocated = await _sos(pool, member)
    outside = await _sos(pool, await make_member(), at=OUTSIDE)
    coverage = Coverage(pool=pool, redis=redis, settings=settings)
    assert await coverage.sweep() == 2
    for stored, reason in ((unlocated, "unlocated"), (outside, "outside_city")):
        covered = await pool.fetchval("SELECT covered_by FROM incident WHERE id = $1", stored.id)
        assert set(covered) == {districts["a"], districts["c"]}
        assert await _events(pool, stored.id, "covered") == [
            {"reason": reason, "districts": sorted(str(d) for d in covered)}
        ]
    # The event is published (the console message goes through the dispatcher like any other).
    published = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE payload->>'kind' = 'covered'"
    )
    assert published == 2
    # Nothing changes on the next sweep; a console of B opening later is given them too.
    assert await coverage.sweep() == 0
    await presence.join(console_channels(city_wide=False, district_ids=frozenset({districts["b"]})))
    assert await coverage.sweep() == 2
    covered = await pool.fetchval("SELECT covered_by FROM incident WHERE id = $1", unlocated.id)
    assert set(covered) == set(districts.values())
    await presence.stop()


async def test_an_unlocated_sos_stays_with_the_city_wide_console_when_one_is_open(
    pool, redis, settings, districts, make_member
):
    presence = await _watching(redis, settings, districts["a"], city_wide=True)
    stored = await _sos(pool, await make_member())
    assert await Coverage(pool=pool, redis=redis, settings=settings).sweep() == 0
    row = await pool.fetchrow(
        "SELECT covered_by, unwatched_at FROM incident WHERE id = $1", stored.id
    )
    assert row["covered_by"] == [] and row["unwatched_at"] is None
    await presence.stop()


async def test_a_district_nobody_watches_is_covered_by_its_open_neighbours_only(
    pool, redis, settings, districts, make_member, make_staff, client
):
    presence = await _watching(redis, settings, districts["b"], districts["c"])
    stored = await _sos(pool, await make_member(), at=IN_A)
    assert await Coverage(pool=pool, redis=redis, settings=settings).sweep() == 1
    covered = await pool.fetchval("SELECT covered_by FROM incident WHERE id = $1", stored.id)
    assert covered == [districts["b"]]  # C is open but does not touch A
    assert await _events(pool, stored.id, "covered") == [
        {"reason": "covering", "districts": [str(districts["b"])]}
    ]

    # B's dispatcher may read and act on it; C's may not.
    disp_b = await make_staff("dispatcher", district_ids=(districts["b"],))
    disp_c = await make_staff("dispatcher", district_ids=(districts["c"],))
    detail = await client.get(f"/v1/console/incidents/{stored.id}", headers=disp_b.headers)
    assert detail.status_code == 200
    assert detail.json()["coverage"] == "covering"
    assert detail.json()["covered_by"] == [str(districts["b"])]
    listed = await client.get("/v1/console/incidents", headers=disp_b.headers)
    assert [i["id"] for i in listed.json()["incidents"]] == [str(stored.id)]
    hidden = await client.get(f"/v1/console/incidents/{stored.id}", headers=disp_c.headers)
    assert hidden.status_code == 404
    assert (await client.get("/v1/console/incidents", headers=disp_c.headers)).json() == {
        "incidents": []
    }
    ack = await client.post(f"/v1/console/incidents/{stored.id}/ack", headers=disp_b.headers)
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    await presence.stop()


async def test_a_covered_incidents_console_messages_reach_the_covering_consoles(
    pool, redis, settings, districts, make_member
):
    presence = await _watching(redis, settings, districts["b"])
    stored = await _sos(pool, await make_member(), at=IN_A)
    await Coverage(pool=pool, redis=redis, settings=settings).sweep()
    row = await pool.fetchrow(
        "SELECT id, topic, payload FROM outbox WHERE payload->>'kind' = 'covered'"
    )
    entry = routing.Entry(
        outbox_id=row["id"],
        topic=row["topic"],
        incident_id=stored.id,
        kind="covered",
        payload=row["payload"],
        committed_at=None,
    )
    ctx = routing.Context(pool, redis, settings, {})
    await routing.handle(ctx, entry)
    entries, _complete = await console_log.replay_after(redis, settings, "0-0")
    (message,) = [e for e in entries if e.body.get("event") == "covered"]
    assert message.district_id == districts["a"]
    assert message.also == frozenset({districts["b"]})
    assert message.body["incident"]["coverage"] == "covering"
    await presence.stop()


async def test_a_new_incident_nobody_watches_is_flagged_until_acknowledged(
    pool, redis, settings, districts, make_member, make_staff, client
):
    stored = await _sos(pool, await make_member(), at=IN_A)
    coverage = Coverage(pool=pool, redis=redis, settings=settings)
    assert await coverage.sweep() == 1
    assert await pool.fetchval(
        "SELECT unwatched_at IS NOT NULL FROM incident WHERE id = $1", stored.id
    )
    (unwatched,) = await _events(pool, stored.id, "unwatched")
    assert unwatched["reason"] == "covering"
    assert await coverage.sweep() == 0  # flagged once

    supervisor = await make_staff("dispatcher", city_wide=True)
    summary = (
        await client.get(f"/v1/console/incidents/{stored.id}", headers=supervisor.headers)
    ).json()
    assert summary["unwatched"] is True
    ack = await client.post(f"/v1/console/incidents/{stored.id}/ack", headers=supervisor.headers)
    assert ack.json()["unwatched"] is False


async def test_operators_see_which_districts_nobody_watches(
    pool, redis, settings, districts, make_staff, client
):
    presence = await _watching(redis, settings, districts["b"])
    operator = await make_staff("operator")
    body = (await client.get("/v1/console/coverage", headers=operator.headers)).json()
    assert body["city_wide_consoles"] == 0
    assert body["unwatched_districts"] == ["A", "C"]
    assert {d["code"]: d["consoles"] for d in body["districts"]} == {"A": 0, "B": 1, "C": 0}
    await presence.stop()
