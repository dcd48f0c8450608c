"""Registering alarm accounts: the CLI (a real process) and the operator API, bad input as 4xx."""

from __future__ import annotations

import json
import uuid

from app.receiver import protocol as dc09
from tests.receiver.conftest import IN_A
from tests.test_cli import ansim


async def test_the_cli_registers_an_account_with_a_generated_key_shown_once(
    pool, make_place, running
):
    place = await make_place("GS25 A", *IN_A)
    out = ansim(
        "alarm-accounts", "create", "--place-id", str(place), "--account", "abc123",
        "--generate-key", "--supervision-s", "90", "--json",
    )  # fmt: skip
    created = json.loads(out.stdout)
    assert created["account"] == "ABC123" and created["encrypted"] is True
    assert "shown only this once" in out.stderr
    key = dc09.parse_key(created["key"])
    assert len(key) == 32  # AES-256, as hex
    assert (
        await pool.fetchval(
            "SELECT offline_after_s FROM device WHERE id = $1::uuid", created["device_id"]
        )
        == 90.0
    )
    # The panel programmed with that key is understood.
    line = dc09.build("NULL", 1, "ABC123", "", key=key)
    reply = await running.receiver.handle(line)
    assert reply is not None and b'"*ACK"' in reply
    listed = json.loads(ansim("alarm-accounts", "list", "--json").stdout)
    assert [a["account"] for a in listed] == ["ABC123"]
    assert "key" not in listed[0] and "aes_key" not in listed[0]
    # Twice: refused, clearly.
    again = ansim(
        "alarm-accounts", "create", "--place-id", str(place), "--account", "ABC123",
        check=False,
    )  # fmt: skip
    assert again.returncode == 1 and "already registered" in again.stderr


async def test_the_operator_api_registers_accounts_and_refuses_bad_input(
    client, pool, make_place, make_staff
):
    operator = await make_staff("operator")
    place = await make_place("GS25 A", *IN_A)
    body = {"place_id": str(place), "account": "1234", "key": "K" * 24, "window_past_s": 120}
    r = await client.post("/v1/admin/alarm-accounts", json=body, headers=operator.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["encrypted"] and created["window_past_s"] == 120
    assert "K" * 24 not in r.text
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM security_event WHERE kind = 'admin_alarm_account_created'"
        )
        == 1
    )
    bad = [
        ({**body, "account": "12"}, 422),
        ({**body, "account": "12G4"}, 400),
        ({**body, "key": "short"}, 400),
        ({**body, "prefix": "XYZ"}, 400),
        ({**body, "place_id": str(uuid.uuid4()), "account": "9999"}, 404),
        (body, 409),
        ({**body, "extra": 1}, 422),
    ]
    for payload, status in bad:
        r = await client.post("/v1/admin/alarm-accounts", json=payload, headers=operator.headers)
        assert r.status_code == status, (payload, r.text)
        assert {"error", "detail"} <= set(r.json())
    assert await pool.fetchval("SELECT count(*) FROM alarm_account") == 1
    assert await pool.fetchval("SELECT count(*) FROM device") == 1  # nothing half-made
    listed = (await client.get("/v1/admin/alarm-accounts", headers=operator.headers)).json()
    assert [a["id"] for a in listed["accounts"]] == [created["id"]]
    log = await client.get(
        f"/v1/admin/alarm-accounts/{created['id']}/log", headers=operator.headers
    )
    assert log.status_code == 200 and log.json() == {"events": []}
    missing = await client.get(
        f"/v1/admin/alarm-accounts/{uuid.uuid4()}/log", headers=operator.headers
    )
    assert missing.status_code == 404
