"""Consoles come and go while SOS arrive: every SOS is seen by a person, a console that has it
or a supervisor paged (promise 8), with real processes: an API, a dispatcher, real WebSocket
consoles and a local SMS gateway."""

from __future__ import annotations

import asyncio
import time

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
API_PORT, GATEWAY_PORT = 0, 0

A = (126.90, 37.50, 126.95, 37.55)
B = (126.95, 37.50, 127.00, 37.55)
C = (127.00, 37.50, 127.05, 37.55)
IN = {"A": (37.52, 126.92), "B": (37.52, 126.97), "C": (37.52, 127.02), "none": None}
#: An SOS is seen within this (the coverage sweep runs every 0.2 s here).
SEEN_WITHIN_S = 3.0


@pytest.fixture(scope="module")
async def gateway():
    global API_PORT, GATEWAY_PORT
    API_PORT, GATEWAY_PORT = free_ports(2)
    async with GatewayReceiver.running(GATEWAY_PORT) as receiver:
        yield receiver


@pytest.fixture(scope="module")
async def stack(migrated, settings, gateway):
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=GATEWAY_PORT,
        **FAST_COVERAGE,
        ANSIM_ACK_DEADLINE_S="600",  # no escalation pages: only the coverage pages count here
    )
    api = await asyncio.to_thread(start_api, API_PORT, env)
    dispatcher = start_dispatcher("faults-churn", env)
    try:
        yield
    finally:
        dispatcher.stop()
        api.stop()


async def test_every_sos_is_seen_by_a_console_or_a_paged_supervisor_while_consoles_churn(
    stack, gateway, pool, make_district, make_staff, make_member
):
    districts = {
        name: await make_district(name, f"District {name}", *box)
        for name, box in (("A", A), ("B", B), ("C", C))
    }
    staff = {
        name: await make_staff("dispatcher", district_ids=(d,), name=f"Dispatcher {name}")
        for name, d in districts.items()
    }
    await pool.execute(
        "UPDATE staff SET phone = '+821077776666', on_call = true WHERE id = $1", staff["C"].id
    )
    gateway.received.clear()
    consoles = {name: Console(API_PORT, creds.token) for name, creds in staff.items()}
    closed: list[Console] = []
    sent: dict[str, float] = {}

    async def sos(where: str, n: int) -> None:
        for _ in range(n):
            at = IN[where]
            stored = await insert_incident(
                pool,
                NewIncident(
                    source="app",
                    trigger="sos",
                    actor="t",
                    member_id=(await make_member()).id,  # one each: nothing folds
                    lat=at[0] if at else None,
                    lon=at[1] if at else None,
                ),
            )
            assert stored is not None
            sent.setdefault(str(stored.id), time.monotonic())
            await asyncio.sleep(0.1)

    async def close(name: str) -> None:
        await consoles[name].__aexit__(None, None, None)
        closed.append(consoles[name])

    for console in consoles.values():
        await console.__aenter__()
    # Everyone watching; then A's console closes; then nobody; then B's opens again.
    await sos("A", 3)
    await sos("none", 2)
    await close("A")
    await sos("A", 4)
    await sos("B", 2)
    await sos("none", 2)
    await close("B")
    await close("C")
    await sos("A", 2)
    await sos("none", 2)
    await asyncio.sleep(SEEN_WITHIN_S)  # long enough for the pages
    consoles["B"] = Console(API_PORT, staff["B"].token)
    await consoles["B"].__aenter__()
    await asyncio.sleep(SEEN_WITHIN_S)

    on_console = {
        m["incident"]["id"] for console in [*closed, consoles["B"]] for m in console.incidents()
    }
    paged = {
        m["message"]["incident_id"] for m in gateway.received if m["message"]["type"] == "page"
    }
    seen = {i for i in sent if i in on_console or i in paged}
    print(
        f"\nconsole churn: sent {len(sent)}, seen by a person {len(seen)}"
        f" ({len(on_console & set(sent))} on a console, {len(paged & set(sent))} paged)"
    )
    assert seen == set(sent)
    # When the last consoles closed, nobody watched any of them (none was acknowledged): each
    # is flagged and its page sent once.
    unwatched = await pool.fetch("SELECT id FROM incident WHERE unwatched_at IS NOT NULL")
    assert {str(r["id"]) for r in unwatched} == set(sent) == paged
    pages = [m for m in gateway.received if m["message"]["type"] == "page"]
    assert len(pages) == len({m["idempotency_key"] for m in pages}) == len(sent)
    # The first console to open again has every one of them (its snapshot or a message).
    snapshot = next(m for m in consoles["B"].messages if m["type"] == "snapshot")
    on_b = {i["id"] for i in snapshot["incidents"]} | {
        m["incident"]["id"] for m in consoles["B"].incidents()
    }
    assert on_b == set(sent)
    await consoles["B"].__aexit__(None, None, None)
