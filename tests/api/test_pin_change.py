"""Changing her PIN and duress PIN (POST /v1/me/pin): with her current PIN, a duress PIN that
answers exactly like it (and raises a silent SOS), wrong PINs counted toward the lockout."""

from __future__ import annotations

import pytest

from app.security import member_pins
from app.security.passwords import verify_secret

VOLATILE = {"date", "x-request-id", "content-length"}


async def change(client, member, current: str, new: str = "2468", duress: str = "1357"):
    return await client.post(
        "/v1/me/pin",
        json={"current_pin": current, "new_pin": new, "new_duress_pin": duress},
        headers=member.headers,
    )


async def hashes(pool, member):
    return await pool.fetchrow(
        "SELECT pin_hash, duress_pin_hash, wrong_pin_count FROM member WHERE id = $1", member.id
    )


async def test_her_pin_changes_both_and_the_old_ones_stop_working(client, pool, make_member):
    m = await make_member()
    r = await change(client, m, m.pin)
    assert r.status_code == 200 and set(r.json()) == {"changed_at"}
    row = await hashes(pool, m)
    assert verify_secret(row["pin_hash"], "2468") and verify_secret(row["duress_pin_hash"], "1357")
    assert not verify_secret(row["pin_hash"], m.pin)
    assert not verify_secret(row["duress_pin_hash"], m.duress_pin)
    # The old PIN is now a wrong one.
    assert (await change(client, m, m.pin)).status_code == 403
    assert await pool.fetchval("SELECT count(*) FROM incident") == 0


async def test_the_duress_pin_as_current_answers_alike_and_raises_a_silent_sos(
    client, pool, make_member, monkeypatch
):
    real_m, duress_m = await make_member(), await make_member()
    costs: dict[str, int] = {}

    def counting(name, fn):
        def wrapped(*args):
            costs[name] = costs.get(name, 0) + 1
            return fn(*args)

        return wrapped

    monkeypatch.setattr(member_pins, "verify_secret", counting("verify", verify_secret))
    monkeypatch.setattr(member_pins, "hash_secret", counting("hash", member_pins.hash_secret))
    real = await change(client, real_m, real_m.pin)
    real_cost, costs = dict(costs), {}
    duress = await change(client, duress_m, duress_m.duress_pin)
    assert real_cost == costs == {"verify": 2, "hash": 2}
    assert real.status_code == duress.status_code == 200
    assert set(real.json()) == set(duress.json()) == {"changed_at"}

    def headers(r):
        return {k: v for k, v in r.headers.items() if k not in VOLATILE}

    assert headers(real) == headers(duress)

    row = await hashes(pool, duress_m)
    # Her real PIN stays hers; the PIN he watched her choose is now her duress PIN; the duress
    # PIN she typed is dead, as an old PIN is after a change.
    assert verify_secret(row["pin_hash"], duress_m.pin)
    assert verify_secret(row["duress_pin_hash"], "2468")
    assert not verify_secret(row["duress_pin_hash"], duress_m.duress_pin)
    incidents = await pool.fetch("SELECT member_id, silent, duress, trigger FROM incident")
    assert [(i["member_id"], i["silent"], i["duress"], i["trigger"]) for i in incidents] == [
        (duress_m.id, True, True, "duress_pin")
    ]
    kinds = await pool.fetch(
        "SELECT kind FROM incident_event WHERE incident_id = (SELECT id FROM incident)"
    )
    assert {k["kind"] for k in kinds} >= {"reported", "duress"}
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE payload->>'kind' = 'duress'") == 1
    # Whatever he now believes is her PIN answers like it: another change with it (which makes
    # the next one he watches her choose the duress PIN), then a cancel with that one.
    again = await change(client, duress_m, "2468", "1111", "2222")
    assert again.status_code == 200
    incident_id = await pool.fetchval("SELECT id FROM incident")
    cancel = await client.post(
        f"/v1/alerts/{incident_id}/cancel", json={"pin": "1111"}, headers=duress_m.headers
    )
    assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
    assert await pool.fetchval("SELECT status FROM incident") != "cancelled"
    assert verify_secret((await hashes(pool, duress_m))["pin_hash"], duress_m.pin)


async def test_wrong_current_pins_count_toward_the_lockout_and_duress_still_escalates(
    client, pool, make_member, settings
):
    m = await make_member()
    for n in range(settings.cancel_pin_lockout_after):
        r = await change(client, m, "0000")
        assert r.status_code == 403 and r.json() == {"error": "WrongPin", "detail": "wrong PIN"}
        assert (await hashes(pool, m))["wrong_pin_count"] == n + 1
    right = await change(client, m, m.pin)
    duress = await change(client, m, m.duress_pin)
    for r in (right, duress):
        assert r.status_code == 429 and r.json()["error"] == "PinLockedOut"
        assert 0 < int(r.headers["Retry-After"]) <= settings.cancel_pin_lockout_s
    assert right.json() == duress.json()
    row = await hashes(pool, m)
    assert verify_secret(row["pin_hash"], m.pin) and verify_secret(
        row["duress_pin_hash"], m.duress_pin
    )
    # The duress PIN during the lockout changed nothing but raised the silent SOS.
    assert await pool.fetchval("SELECT count(*) FROM incident WHERE duress AND silent") == 1
    events = await pool.fetch("SELECT kind FROM security_event ORDER BY id")
    assert [e["kind"] for e in events].count("wrong_pin_change") == 5


async def test_a_wrong_pin_change_counts_with_her_cancels(client, pool, make_member, settings):
    m = await make_member()
    await pool.execute(
        "UPDATE member SET wrong_pin_count = $2 WHERE id = $1",
        m.id, settings.cancel_pin_lockout_after - 1,
    )  # fmt: skip
    assert (await change(client, m, "0000")).status_code == 403
    locked = await pool.fetchval("SELECT pin_locked_until > now() FROM member WHERE id = $1", m.id)
    assert locked is True


@pytest.mark.parametrize(
    "body",
    [
        {"current_pin": "1234", "new_pin": "2468", "new_duress_pin": "2468"},
        {"current_pin": "1234", "new_pin": "12", "new_duress_pin": "1357"},
        {"current_pin": "1234", "new_pin": "2468"},
        {"current_pin": "", "new_pin": "2468", "new_duress_pin": "1357"},
    ],
)
async def test_bad_new_pins_are_a_clear_422_and_count_nothing(client, pool, make_member, body):
    m = await make_member()
    r = await client.post("/v1/me/pin", json=body, headers=m.headers)
    assert r.status_code == 422 and r.json()["error"] == "ValidationError"
    assert (await hashes(pool, m))["wrong_pin_count"] == 0
