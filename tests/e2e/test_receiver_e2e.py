"""The alarm receiver end to end, with real processes: an API, a dispatcher and ``ansim
receiver``, all on free ports. A panel simulator's panic over DC-09 reaches the district's
console through the normal path (outbox, stream, dispatcher, console log); a panel that falls
silent past its supervision interval shows as offline there, and back online when it speaks."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.receiver import accounts
from tests.e2e.harness import (
    Console,
    free_port,
    spawn,
    stack_env,
    start_api,
    start_dispatcher,
    wait_listening,
)
from tests.receiver.simulator import Panel

A = (126.90, 37.50, 126.95, 37.55)
IN_A = (37.52, 126.92)
KEY = "0123456789abcdef0123456789abcdef"  # AES-128 as hex


@pytest.fixture(scope="module")
async def stack(migrated, settings):
    api_port, receiver_port = free_port(), free_port()
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=None,
        ANSIM_DEVICE_OFFLINE_CHECK_S="0.2",
    )
    api = await asyncio.to_thread(start_api, api_port, env)
    dispatcher = start_dispatcher("e2e-receiver", env)
    receiver = spawn(
        f"receiver-{receiver_port}",
        ["-m", "app.cli", "receiver", "--host", "127.0.0.1", "--port", str(receiver_port)],
        env,
    )
    procs = [api, dispatcher, receiver]
    try:
        await asyncio.to_thread(wait_listening, receiver_port)
        yield {"api": api_port, "receiver": receiver_port}
    finally:
        for proc in procs:
            proc.stop()


_numbers = iter(range(0x5A17, 0x5FFF))


@pytest.fixture
async def world(pool, make_district, make_place, make_staff):
    # A new account number for each test: the receiver caches accounts for a few seconds, and
    # each test's tables start empty.
    number = f"{next(_numbers):X}"
    district = await make_district("A", "District A", *A)
    place = await make_place("GS25 A", *IN_A, phone="02-111-2222")
    async with pool.acquire() as conn:
        account = await accounts.create_account(
            conn, place_id=place, account=number, key=KEY, supervision_s=600
        )
    return {
        "dispatcher": await make_staff("dispatcher", district_ids=(district,)),
        "account": account,
    }


async def test_a_panic_over_dc09_reaches_the_district_console(stack, world, pool):
    from app.receiver import protocol as dc09

    panel = Panel(
        "127.0.0.1", stack["receiver"], world["account"]["account"], key=dc09.parse_key(KEY)
    )
    async with Console(stack["api"], world["dispatcher"].token) as console:
        sent = time.monotonic()
        answer = await panel.contact_id(1, 120, zone=3)
        assert answer.kind == "*ACK", answer
        msg = await console.wait_for(
            lambda m: m["type"] == "incident" and m["event"] == "reported", 10
        )
        took = time.monotonic() - sent
        print(f"\nDC-09 panic on the console {took * 1000:.0f} ms after it was sent")
        incident = msg["incident"]
        assert incident["source"] == "sensor" and incident["trigger"] == "alarm_panic"
        assert incident["district_code"] == "A"
        # Then the panel's duress: the same emergency, now duress and silent, escalated.
        assert (await panel.contact_id(1, 121, zone=2)).kind == "*ACK"
        await console.wait_for(
            lambda m: (
                m["type"] == "incident"
                and m["event"] == "duress"
                and m["incident"]["id"] == incident["id"]
            ),
            10,
        )
    await panel.close()


async def test_a_silent_panel_shows_offline_on_the_console_and_back_online(stack, world, pool):
    from app.receiver import protocol as dc09

    panel = Panel(
        "127.0.0.1", stack["receiver"], world["account"]["account"], key=dc09.parse_key(KEY)
    )
    assert (await panel.link_test()).kind == "*ACK"
    await pool.execute("UPDATE device SET offline_after_s = 1.0")
    async with Console(stack["api"], world["dispatcher"].token) as console:
        silent_since = time.monotonic()
        msg = await console.wait_for(
            lambda m: m["type"] == "device" and m["event"] == "offline", 10
        )
        took = time.monotonic() - silent_since
        print(f"\nsupervision: offline on the console {took:.2f} s into a 1 s interval")
        assert msg["device"]["id"] == world["account"]["device_id"]
        assert msg["device"]["store"]["name"] == "GS25 A"
        assert (await panel.link_test()).kind == "*ACK"
        await console.wait_for(lambda m: m["type"] == "device" and m["event"] == "online", 10)
    await panel.close()


async def test_a_panel_in_her_flat_reaches_her_districts_console_at_her_address(
    stack, pool, make_district, make_member, make_staff
):
    import httpx

    from app.receiver import protocol as dc09
    from tests.homes.helpers import ADDRESS, DISTRICT, make_home

    district = await make_district(*DISTRICT)
    her = await make_member()
    home = await make_home(pool, her.id)
    number = f"{next(_numbers):X}"
    async with pool.acquire() as conn:
        account = await accounts.create_account(
            conn, home_id=home.id, account=number, key=KEY, supervision_s=600
        )
    dispatcher = await make_staff("dispatcher", district_ids=(district,))
    panel = Panel("127.0.0.1", stack["receiver"], number, key=dc09.parse_key(KEY))
    async with Console(stack["api"], dispatcher.token) as console:
        assert (await panel.contact_id(3, 401, zone=1)).kind == "*ACK"  # she arms: a closing
        assert (await panel.contact_id(1, 130, zone=4)).kind == "*ACK"  # burglary
        msg = await console.wait_for(
            lambda m: m["type"] == "incident" and m["event"] == "reported", 10
        )
        incident = msg["incident"]
        assert incident["source"] == "sensor" and incident["trigger"] == "alarm_burglary"
        assert incident["district_code"] == DISTRICT[0]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack['api']}") as http:
            r = await http.get(
                f"/v1/console/incidents/{incident['id']}", headers=dispatcher.headers
            )
        shown = r.json()["home"]
        assert shown["address"] == ADDRESS and shown["state"] == "away"
        assert shown["sensor"]["id"] == account["device_id"] and shown["sensor"]["zone"] == "004"
        assert [(e["kind"], e["via"]) for e in shown["arming_history"]] == [
            ("arm_away", "panel"),
            ("alarm", "panel"),
        ]
        # The panel's duress code: the same emergency, now duress and silent, escalated.
        assert (await panel.contact_id(1, 121, zone=2)).kind == "*ACK"
        await console.wait_for(
            lambda m: (
                m["type"] == "incident"
                and m["event"] == "escalated"
                and m["incident"]["id"] == incident["id"]
                and m["incident"]["duress"]
            ),
            10,
        )
    await panel.close()
