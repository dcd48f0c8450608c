"""The console stream's side of promise 6: every location a console was shown is logged."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from typing import Any

import httpx

from app.api.console_stream import _AccessWriter
from app.main import create_app
from tests.e2e.harness import Console, free_port, settled
from tests.security.live_server import serve

IN_A = {"lat": 37.52, "lon": 126.92, "accuracy_m": 8.0}


async def _sos(host: str, member: Any) -> str:
    async with httpx.AsyncClient(base_url=f"http://{host}") as http:
        r = await http.post(
            "/v1/alerts",
            json={"client_alert_id": str(uuid.uuid4()), "trigger": "button", "location": IN_A},
            headers=member.headers,
        )
    assert r.status_code == 201, r.text
    return str(r.json()["incident_id"])


async def test_consoles_shown_the_same_sos_log_it_in_one_row_naming_each_of_them(
    settings, migrated, pool, make_district, make_staff, make_member
):
    """K consoles shown an SOS used to write K access rows; their reads written together are
    one row whose ``staff_ids`` names every console's staff member, each once."""
    # No ping during the test: a ping forces a write, which could fall between the reads.
    app = create_app(
        settings.model_copy(update={"console_ping_s": 60.0}), process_name="ansim-tests-access"
    )
    a = await make_district("11110", "District A", 126.90, 37.50, 126.95, 37.55)
    dispatchers = [await make_staff("dispatcher", district_ids=(a,)) for _ in range(2)]
    dispatchers.append(await make_staff("dispatcher", city_wide=True))
    member = await make_member()
    port = free_port()
    async with app.router.lifespan_context(app), serve(app, port) as host:
        # Hold the once-a-second write until the consoles close (each close forces one). Left
        # to the clock, after a quiet second the console sent the SOS first writes its read at
        # once and the others' go in the next write: two rows, both true.
        writer = app.state.console_access_writer = _AccessWriter(app.state.pool)
        writer.flushed_at = math.inf
        async with contextlib.AsyncExitStack() as consoles:
            shown = [
                await consoles.enter_async_context(Console(port, d.token)) for d in dispatchers
            ]
            incident_id = uuid.UUID(await _sos(host, member))
            for console in shown:
                await console.wait_for(
                    lambda m: m["type"] == "incident" and m["incident"]["id"] == str(incident_id), 5
                )
        await settled(
            pool, "SELECT count(*) FROM location_access WHERE incident_id = $1", incident_id
        )
    rows = await pool.fetch(
        "SELECT staff_ids FROM location_access WHERE incident_id = $1"
        " AND reason = 'console_stream'",
        incident_id,
    )
    assert [r["staff_ids"] for r in rows] == [sorted(d.id for d in dispatchers)]


async def test_an_idle_console_is_pinged_with_its_cursor_until_its_max_lifetime(
    settings, migrated, pool, make_district, make_staff, make_member
):
    """Nothing to send for a ping interval: a ping carrying the cursor of the last message;
    at the socket's max lifetime, a reconnect with that cursor, however quiet it is."""
    app = create_app(
        settings.model_copy(update={"console_ping_s": 0.25, "console_max_lifetime_s": 2.0}),
        process_name="ansim-tests-ping",
    )
    a = await make_district("11110", "District A", 126.90, 37.50, 126.95, 37.55)
    dispatcher = await make_staff("dispatcher", district_ids=(a,))
    member = await make_member()
    port = free_port()
    async with (
        app.router.lifespan_context(app),
        serve(app, port) as host,
        Console(port, dispatcher.token) as console,
    ):
        first = await console.wait_for(lambda m: m["type"] == "ping", 2)
        incident_id = await _sos(host, member)
        shown = await console.wait_for(
            lambda m: m["type"] == "incident" and m["incident"]["id"] == incident_id, 5
        )
        await asyncio.wait_for(console.closed.wait(), 5)
    pings = [m for m in console.messages if m["type"] == "ping"]
    after = pings[pings.index(first) + 1 :]
    # 2 s of life with a ping every 0.25 s of silence: one before the SOS, several after.
    assert 3 <= len(pings) <= 9, pings
    assert after and all(p["cursor"] == shown["cursor"] for p in after)
    assert console.messages[-1] == {
        "type": "reconnect",
        "cursor": shown["cursor"],
        "reason": "max_lifetime",
    }


async def test_a_console_that_closes_leaves_the_hub_at_once(
    settings, migrated, pool, make_district, make_staff
):
    """Its loop is woken by the close itself, not by its next ping (a minute away here)."""
    app = create_app(
        settings.model_copy(update={"console_ping_s": 60.0}), process_name="ansim-tests-close"
    )
    a = await make_district("11110", "District A", 126.90, 37.50, 126.95, 37.55)
    dispatchers = [await make_staff("dispatcher", district_ids=(a,)) for _ in range(2)]
    port = free_port()
    async with app.router.lifespan_context(app), serve(app, port):
        hub = app.state.console_hub
        async with Console(port, dispatchers[0].token):
            async with Console(port, dispatchers[1].token):
                assert hub.subscribers == 2
            await _until(lambda: hub.subscribers == 1, within=2)
        await _until(lambda: hub.subscribers == 0, within=2)


async def _until(condition: Any, *, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.02)


async def test_dead_letters_refuses_a_count_below_one_and_caps_a_large_one(
    client, make_staff, redis, settings
) -> None:
    # A negative count went to Redis as it was and came back a 500 (found by the OpenAPI fuzz).
    operator = await make_staff("operator")
    for count in (0, -8816793787):
        r = await client.get(
            "/v1/console/dead-letters", params={"count": count}, headers=operator.headers
        )
        assert r.status_code == 422, r.text
        assert {"error", "detail"} <= set(r.json())
    # More dead letters than the cap: a huge count returns the cap's worth, newest first.
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(1005):
            pipe.xadd(settings.stream_dead_letter, {"n": str(n)})
        await pipe.execute()
    r = await client.get(
        "/v1/console/dead-letters", params={"count": 10**12}, headers=operator.headers
    )
    assert r.status_code == 200, r.text
    entries = r.json()["entries"]
    assert len(entries) == 1000
    assert [e["n"] for e in entries[:2]] == ["1004", "1003"] and entries[-1]["n"] == "5"
    few = await client.get(
        "/v1/console/dead-letters", params={"count": 3}, headers=operator.headers
    )
    assert [e["n"] for e in few.json()["entries"]] == ["1004", "1003", "1002"]


async def test_the_list_filters_on_every_status_and_refuses_others(client, make_staff):
    from typing import get_args

    from app.api.console import IncidentFilter
    from app.incidents.lifecycle import CLOSED, OPEN

    assert set(get_args(IncidentFilter)) == {"open", "closed", "all"} | OPEN | CLOSED
    staff = await make_staff("dispatcher", city_wide=True)
    bad = await client.get("/v1/console/incidents?status=ne%00w", headers=staff.headers)
    assert bad.status_code == 422 and bad.json()["error"]


async def test_the_list_filters_status_source_and_since_return_exactly_the_right_rows(
    client, pool, make_staff
):
    """Each filter keeps its rows and drops the others (a filter ignored would return them all)."""
    from datetime import UTC, datetime, timedelta

    from app.incidents.lifecycle import CLOSED

    now = datetime.now(UTC)
    made: dict[str, uuid.UUID] = {}
    rows = [  # name, source, status, received hours ago
        ("new-app", "app", "new", 1),
        ("acked-button", "button", "acknowledged", 2),
        ("on-scene-sensor", "sensor", "on_scene", 30),
        ("resolved-app", "app", "resolved", 3),
        ("cancelled-button", "button", "cancelled", 50),
    ]
    for name, source, status, hours in rows:
        made[name] = await pool.fetchval(
            "INSERT INTO incident (id, source, trigger, status, received_at, closed_at)"
            " VALUES ($1, $2, 'button', $3, $4::timestamptz,"
            " CASE WHEN $5::bool THEN $4::timestamptz END) RETURNING id",
            uuid.uuid4(),
            source,
            status,
            now - timedelta(hours=hours),
            status in CLOSED,
        )
    staff = await make_staff("dispatcher", city_wide=True)

    async def listed(**params: str) -> set[str]:
        r = await client.get("/v1/console/incidents", params=params, headers=staff.headers)
        assert r.status_code == 200, r.text
        by_id = {str(v): k for k, v in made.items()}
        return {by_id[i["id"]] for i in r.json()["incidents"]}

    assert await listed() == {"new-app", "acked-button", "on-scene-sensor"}  # open, by default
    assert await listed(status="closed") == {"resolved-app", "cancelled-button"}
    assert await listed(status="all") == set(made)
    assert await listed(status="acknowledged") == {"acked-button"}
    assert await listed(status="cancelled") == {"cancelled-button"}
    assert await listed(status="responding") == set()
    assert await listed(source="button", status="all") == {"acked-button", "cancelled-button"}
    assert await listed(source="sensor") == {"on-scene-sensor"}
    day_ago = (now - timedelta(hours=24)).isoformat()
    assert await listed(since=day_ago, status="all") == {"new-app", "acked-button", "resolved-app"}
    assert await listed(since=day_ago, source="app") == {"new-app"}
    # A row received exactly at ``since`` is in (the filter is ``>=``).
    edge = (now - timedelta(hours=2)).isoformat()
    assert await listed(since=edge, status="all") == {"new-app", "acked-button"}
