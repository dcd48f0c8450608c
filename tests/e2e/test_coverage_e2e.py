"""Coverage end to end, with real processes: two API processes, a dispatcher, real WebSocket
consoles. An incident whose channel nobody watches reaches the consoles that are open."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from app.incidents.store import NewIncident, insert_incident
from tests.e2e.harness import (
    FAST_COVERAGE,
    Console,
    GatewayReceiver,
    free_ports,
    stack_env,
    start_api,
    start_dispatcher,
)

#: Chosen free when the module's stack starts (two suites on one machine must not collide).
API_PORT, OTHER_API_PORT, GATEWAY_PORT = 0, 0, 0

# Three districts in a row: A touches B, B touches C.
A = (126.90, 37.50, 126.95, 37.55)
B = (126.95, 37.50, 127.00, 37.55)
C = (127.00, 37.50, 127.05, 37.55)
IN_A = (37.52, 126.92)
#: Within 2 s of nobody watching (the coverage sweep runs every 0.2 s here).
COVERED_WITHIN_S = 2.0


@pytest.fixture(scope="module")
async def gateway():
    global API_PORT, OTHER_API_PORT, GATEWAY_PORT
    API_PORT, OTHER_API_PORT, GATEWAY_PORT = free_ports(3)
    async with GatewayReceiver.running(GATEWAY_PORT) as receiver:
        yield receiver


@pytest.fixture(scope="module")
async def stack(migrated, settings, gateway):
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=GATEWAY_PORT,
        **FAST_COVERAGE,
    )
    api = await asyncio.to_thread(start_api, API_PORT, env)
    dispatcher = start_dispatcher("e2e-coverage", env)
    procs = {"api": api, "dispatcher": dispatcher, "env": env}
    try:
        yield procs
    finally:
        for proc in procs.values():
            if not isinstance(proc, dict):
                proc.stop()


@pytest.fixture
async def world(make_district, make_staff, make_member):
    a = await make_district("A", "District A", *A)
    b = await make_district("B", "District B", *B)
    c = await make_district("C", "District C", *C)
    return {
        "disp_a": await make_staff("dispatcher", district_ids=(a,), name="Kim A"),
        "disp_b": await make_staff("dispatcher", district_ids=(b,), name="Lee B"),
        "disp_c": await make_staff("dispatcher", district_ids=(c,), name="Choi C"),
        "member": await make_member(),
    }


async def _sos(pool, member, at=None):
    stored = await insert_incident(
        pool,
        NewIncident(
            source="app",
            trigger="sos",
            actor=f"member:{member.id}",
            member_id=member.id,
            lat=at[0] if at else None,
            lon=at[1] if at else None,
        ),
    )
    assert stored is not None
    return str(stored.id)


def _about(incident_id, event=None):
    return lambda m: (
        m["type"] == "incident"
        and m["incident"]["id"] == incident_id
        and (event is None or m["event"] == event)
    )


async def test_a_district_whose_consoles_all_close_mid_incident_is_covered_within_2_s(
    stack, world, pool
):
    async with (
        Console(API_PORT, world["disp_b"].token) as con_b,
        Console(API_PORT, world["disp_c"].token) as con_c,
    ):
        con_a = Console(API_PORT, world["disp_a"].token)
        await con_a.__aenter__()
        incident_id = await _sos(pool, world["member"], IN_A)
        await con_a.wait_for(_about(incident_id, "reported"), 5)
        await asyncio.sleep(0.5)  # a sweep or two with A watched: nothing goes to B
        assert not [m for m in con_b.incidents() if m["incident"]["id"] == incident_id]

        await con_a.__aexit__(None, None, None)
        closed_at = time.monotonic()
        msg = await con_b.wait_for(_about(incident_id, "covered"), COVERED_WITHIN_S)
        took = time.monotonic() - closed_at
        print(f"\ncoverage: on the neighbour's console {took:.2f} s after the last console closed")
        assert took <= COVERED_WITHIN_S
        assert msg["incident"]["coverage"] == "covering"
        assert msg["incident"]["district_code"] == "A"
        # C does not touch A: it is not given it.
        await asyncio.sleep(0.3)
        assert not [m for m in con_c.incidents() if m["incident"]["id"] == incident_id]

        # The covering dispatcher acts on it, and its later messages reach her console.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{API_PORT}") as http:
            ack = await http.post(
                f"/v1/console/incidents/{incident_id}/ack", headers=world["disp_b"].headers
            )
        assert ack.status_code == 200, ack.text
        await con_b.wait_for(_about(incident_id, "acknowledged"), 5)


async def test_an_sos_without_a_position_reaches_every_open_district_console(stack, world, pool):
    async with (
        Console(API_PORT, world["disp_a"].token) as con_a,
        Console(API_PORT, world["disp_c"].token) as con_c,
    ):
        sent_at = time.monotonic()
        incident_id = await _sos(pool, world["member"])
        for console in (con_a, con_c):
            msg = await console.wait_for(_about(incident_id, "covered"), COVERED_WITHIN_S + 1)
            assert msg["incident"]["coverage"] == "unlocated"
        assert time.monotonic() - sent_at <= COVERED_WITHIN_S + 1


async def test_the_consoles_of_a_killed_api_process_stop_counting(stack, world, pool):
    other = await asyncio.to_thread(start_api, OTHER_API_PORT, stack["env"])
    try:
        async with Console(API_PORT, world["disp_b"].token) as con_b:
            con_a = Console(OTHER_API_PORT, world["disp_a"].token)
            await con_a.__aenter__()
            other.kill()  # SIGKILL: its consoles are never removed, they expire
            killed_at = time.monotonic()
            incident_id = await _sos(pool, world["member"], IN_A)
            await con_b.wait_for(_about(incident_id, "covered"), 2 + COVERED_WITHIN_S + 1)
            # Not before the dead process's presence expired (2 s here).
            assert time.monotonic() - killed_at >= 1.5
            await con_a.__aexit__(None, None, None)
    finally:
        other.stop()


async def test_nobody_watching_pages_the_on_call_supervisor_and_flags_the_incident(
    stack, world, pool, gateway
):
    gateway.received.clear()
    await pool.execute(
        "UPDATE staff SET phone = '+821099998888', on_call = true WHERE id = $1",
        world["disp_c"].id,
    )
    sent_at = time.monotonic()
    incident_id = await _sos(pool, world["member"], IN_A)
    deadline = time.monotonic() + COVERED_WITHIN_S + 1
    pages: list[dict] = []
    while not pages and time.monotonic() < deadline:
        pages = [m for m in gateway.received if m["message"].get("type") == "page"]
        await asyncio.sleep(0.05)
    assert pages, gateway.received
    assert time.monotonic() - sent_at <= COVERED_WITHIN_S + 1
    (page,) = pages
    assert page["path"] == "/sms" and page["message"]["phone"] == "+821099998888"
    assert incident_id in page["message"]["text"]

    # The first console to open is given it, flagged, until someone acknowledges it.
    async with Console(API_PORT, world["disp_b"].token) as con_b:
        msg = await con_b.wait_for(_about(incident_id, "covered"), COVERED_WITHIN_S + 1)
        assert msg["incident"]["unwatched"] is True
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{API_PORT}") as http:
            ack = await http.post(
                f"/v1/console/incidents/{incident_id}/ack", headers=world["disp_b"].headers
            )
        assert ack.json()["unwatched"] is False
    assert len([m for m in gateway.received if m["message"].get("type") == "page"]) == 1
