"""A store button's and a home sensor's signals carry their X-Request-ID to the console, as a
phone's SOS does (app/logs.py): in the outbox payload of what they raise (which the console
message copies into ``request_id``: app/dispatch/console_log.py), for the panic, the store's
cancel and duress, the in-home button, the door at night and her duress PIN at the door."""

from __future__ import annotations

import uuid

import orjson

from app.devices.signing import sign_request
from app.dispatch.console_log import incident_message
from tests.devices.helpers import make_device
from tests.homes.helpers import DISTRICT, make_home

IN_GANGNAM = (37.4979, 127.0276)


async def _post(client, url, secret, body, request_id):
    raw = orjson.dumps(body)
    headers = {**sign_request(secret, raw), "X-Request-ID": request_id}
    r = await client.post(url, content=raw, headers=headers)
    assert r.headers["x-request-id"] == request_id
    return r


async def _request_ids(pool):
    rows = await pool.fetch(
        "SELECT payload->>'kind' AS kind, payload->>'request_id' AS rid FROM outbox ORDER BY id"
    )
    return [(r["kind"], r["rid"]) for r in rows]


async def test_a_store_buttons_signals_carry_their_request_id(client, pool, make_place):
    place = await make_place("GS25 A", *IN_GANGNAM)
    button = await make_device(pool, place)
    r = await _post(client, button.url, button.secret, {"type": "panic"}, "btn-panic-1")
    assert r.status_code == 201, r.text
    await _post(client, button.url, button.secret, {"type": "cancel"}, "btn-cancel-2")
    await _post(client, button.url, button.secret, {"type": "duress"}, "btn-duress-3")
    assert await _request_ids(pool) == [
        ("reported", "btn-panic-1"),
        ("cancel_requested", "btn-cancel-2"),
        ("duress", "btn-duress-3"),
    ]
    # And the console message names it (what a dispatcher greps the logs for).
    payload = await pool.fetchval("SELECT payload FROM outbox ORDER BY id LIMIT 1")
    assert incident_message("reported", payload, {}, None)["request_id"] == "btn-panic-1"


async def test_a_home_sensors_alarms_and_her_duress_disarm_carry_their_request_id(
    client, pool, make_district, make_member
):
    await make_district(*DISTRICT)
    her = await make_member()
    home = await make_home(pool, her.id)
    r = await _post(client, home.button.url, home.button.secret, {"type": "panic"}, "home-panic-1")
    assert r.status_code == 201, r.text
    await pool.execute("UPDATE incident SET status = 'resolved', closed_at = now()")
    await _post(client, home.keypad.url, home.keypad.secret, {"type": "arm_night"}, "kp-arm")
    await _post(
        client, home.door.url, home.door.secret,
        {"type": "open", "signal_id": str(uuid.uuid4())}, "door-night-2",
    )  # fmt: skip
    await pool.execute("UPDATE incident SET status = 'resolved', closed_at = now()")
    r = await client.post(
        f"/v1/me/homes/{home.id}/disarm",
        json={"pin": her.duress_pin},
        headers={**her.headers, "X-Request-ID": "app-duress-3"},
    )
    assert r.status_code == 200
    assert await _request_ids(pool) == [
        ("reported", "home-panic-1"),
        ("reported", "door-night-2"),
        ("reported", "app-duress-3"),
        ("duress", "app-duress-3"),
    ]
