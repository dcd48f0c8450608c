"""The notification queue against real PostgreSQL: dedupe, paging, backoff, the deadline."""

from __future__ import annotations

import random
import uuid

import pytest

from app.config import get_settings
from app.dispatch.gateways import Attempt
from app.incidents.store import NewIncident, insert_incident
from app.notifications import service


async def _incident(pool, member_id=None):
    stored = await insert_incident(
        pool,
        NewIncident(
            source="app", trigger="sos", actor="t", member_id=member_id, lat=37.52, lon=126.92
        ),
    )
    assert stored is not None
    return stored.id


async def _enqueue(pool, incident_id, key, **kw):
    async with pool.acquire() as conn, conn.transaction():
        return await service.enqueue(
            conn,
            incident_id=incident_id,
            channel=kw.get("channel", "sms"),
            target=kw.get("target", "guardian:x"),
            message={"text": "hi"},
            dedupe_key=key,
            deadline_s=kw.get("deadline_s"),
        )


async def test_one_event_is_enqueued_once(pool, make_member):
    incident_id = await _incident(pool, (await make_member()).id)
    assert await _enqueue(pool, incident_id, f"{incident_id}:reported:guardian:x") is True
    assert await _enqueue(pool, incident_id, f"{incident_id}:reported:guardian:x") is False
    assert await _enqueue(pool, incident_id, f"{incident_id}:acknowledged:guardian:x") is True
    assert await pool.fetchval("SELECT count(*) FROM notification") == 2
    row = await pool.fetchrow("SELECT * FROM notification ORDER BY id LIMIT 1")
    assert row["status"] == "pending" and row["attempts"] == 0
    # The default deadline comes from the settings: well past a 10-minute outage.
    assert (row["deadline_at"] - row["created_at"]).total_seconds() == pytest.approx(1800, abs=2)


async def test_an_enqueue_rolled_back_with_its_transaction_leaves_nothing(pool, make_member):
    incident_id = await _incident(pool, (await make_member()).id)
    with pytest.raises(RuntimeError):
        async with pool.acquire() as conn, conn.transaction():
            await service.enqueue(
                conn,
                incident_id=incident_id,
                channel="push",
                target="volunteer:x",
                message={},
                dedupe_key="k",
            )
            raise RuntimeError("the caller's work failed")
    assert await pool.fetchval("SELECT count(*) FROM notification") == 0


async def _staff(pool, *, on_call, phone, city_wide=False, active=True, role="dispatcher"):
    staff_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO staff (id, username, name, role, password_hash, city_wide, phone, on_call,"
        " active) VALUES ($1, $2, 'S', $3, 'x', $4, $5, $6, $7)",
        staff_id,
        f"s-{staff_id.hex[:8]}",
        role,
        city_wide,
        phone,
        on_call,
        active,
    )
    return staff_id


async def _page(pool, incident_id, dedupe="ack_timeout:1"):
    async with pool.acquire() as conn, conn.transaction():
        return await service.page_on_call(
            conn,
            get_settings(),
            incident_id=incident_id,
            reason="nobody acknowledged",
            level=2,
            dedupe=dedupe,
        )


async def test_page_on_call_texts_the_on_call_supervisors_once(pool, make_district):
    await make_district("A", "District A", 126.90, 37.50, 126.95, 37.55)
    on_call = await _staff(pool, on_call=True, phone="+821011110001")
    await _staff(pool, on_call=True, phone=None)  # no phone: cannot be paged
    await _staff(pool, on_call=True, phone="+821011110002", active=False)
    await _staff(pool, on_call=True, phone="+821011110003", role="volunteer")
    await _staff(pool, on_call=False, phone="+821011110004", city_wide=True)  # not the fallback
    incident_id = await _incident(pool)
    assert await _page(pool, incident_id) == 1
    assert await _page(pool, incident_id) == 1  # a redelivery: the same answer, nothing new
    rows = await pool.fetch("SELECT * FROM notification")
    assert len(rows) == 1
    (row,) = rows
    assert row["channel"] == "sms" and row["target"] == f"staff:{on_call}"
    assert row["dedupe_key"] == f"{incident_id}:page:ack_timeout:1:staff:{on_call}"
    msg = row["message"]
    assert msg["phone"] == "+821011110001" and msg["type"] == "page"
    assert str(incident_id) in msg["text"] and "nobody acknowledged" in msg["text"]
    assert "District A" in msg["text"] and "level 2" in msg["text"]
    # Never her position in a text message.
    assert "37.52" not in msg["text"] and "126.92" not in msg["text"]
    assert await _page(pool, incident_id, dedupe="ack_timeout:2") == 1
    assert await pool.fetchval("SELECT count(*) FROM notification") == 2


async def test_with_nobody_on_call_the_city_wide_dispatchers_are_paged(pool):
    a = await _staff(pool, on_call=False, phone="+821011110005", city_wide=True)
    b = await _staff(pool, on_call=False, phone="+821011110006", city_wide=True)
    await _staff(pool, on_call=False, phone="+821011110007")  # a district dispatcher
    await _staff(pool, on_call=False, phone=None, city_wide=True)
    incident_id = await _incident(pool)
    assert await _page(pool, incident_id) == 2
    targets = {r["target"] for r in await pool.fetch("SELECT target FROM notification")}
    assert targets == {f"staff:{a}", f"staff:{b}"}
    assert "unlocated" not in (await pool.fetchval("SELECT message->>'text' FROM notification"))


async def test_with_nobody_to_page_page_on_call_says_zero(pool):
    await _staff(pool, on_call=False, phone="+821011110008")
    assert await _page(pool, await _incident(pool)) == 0
    assert await pool.fetchval("SELECT count(*) FROM notification") == 0


def test_the_backoff_doubles_to_its_cap_with_jitter():
    rng = random.Random(1)
    for attempts, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)):
        for _ in range(50):
            d = service.retry_delay(attempts, base_s=1.0, cap_s=60.0, rng=rng)
            assert ceiling / 2 <= d <= ceiling
    spread = {round(service.retry_delay(5, base_s=1.0, cap_s=60.0, rng=rng), 3) for _ in range(20)}
    assert len(spread) > 10  # jittered: a gateway coming back is not hit all at once


async def test_a_failed_attempt_schedules_the_next_with_backoff(pool, settings, make_member):
    incident_id = await _incident(pool, (await make_member()).id)
    await _enqueue(pool, incident_id, "k1")
    s = settings.model_copy(update={"notify_backoff_base_s": 4.0, "notify_backoff_cap_s": 60.0})
    (n,) = await service.claim_due(pool, limit=10, lease_s=30)
    assert n.attempts == 1
    # Leased: another sender does not take it meanwhile.
    assert await service.claim_due(pool, limit=10, lease_s=30) == []
    status = await service.record_attempt(pool, s, n, Attempt(False, 503, "busy", retry=True))
    assert status == "pending"
    row = await pool.fetchrow(
        "SELECT status, lease_until, last_error,"
        " extract(epoch FROM next_attempt_at - now()) AS wait FROM notification"
    )
    assert row["status"] == "pending" and row["lease_until"] is None
    assert row["last_error"] == "HTTP 503"
    assert 2.0 - 0.5 <= row["wait"] <= 4.0
    assert await service.claim_due(pool, limit=10, lease_s=30) == []  # not due yet
    await pool.execute("UPDATE notification SET next_attempt_at = now()")
    (again,) = await service.claim_due(pool, limit=10, lease_s=30)
    assert again.attempts == 2
    assert await service.record_attempt(pool, s, again, Attempt(True, 200, None)) == "sent"
    attempts = await pool.fetch(
        "SELECT attempt, ok, http_status, notification_id FROM delivery_attempt ORDER BY id"
    )
    assert [(a["attempt"], a["ok"], a["http_status"]) for a in attempts] == [
        (1, False, 503),
        (2, True, 200),
    ]
    assert {a["notification_id"] for a in attempts} == {n.id}
    kinds = [r["kind"] for r in await pool.fetch("SELECT kind FROM incident_event ORDER BY id")]
    assert kinds.count("notified") == 1 and "notify_failed" not in kinds


async def test_a_claim_whose_lease_passed_is_taken_again(pool, settings, make_member):
    """A sender killed between its claim and its record: the message is not lost."""
    incident_id = await _incident(pool, (await make_member()).id)
    await _enqueue(pool, incident_id, "k1")
    (n,) = await service.claim_due(pool, limit=10, lease_s=30)
    await pool.execute("UPDATE notification SET lease_until = now() - interval '1 second'")
    (again,) = await service.claim_due(pool, limit=10, lease_s=30)
    assert again.id == n.id and again.attempts == 2
    # The first sender's late failure does not overwrite the second's claim.
    stale = await service.record_attempt(
        pool, settings, n, Attempt(False, None, "ConnectError", retry=True)
    )
    assert stale == "lost"


async def test_past_the_deadline_it_fails_visibly(pool, settings, make_member):
    incident_id = await _incident(pool, (await make_member()).id)
    await _enqueue(pool, incident_id, "k1", target="guardian:abc", deadline_s=0.0)
    (n,) = await service.claim_due(pool, limit=10, lease_s=30)
    status = await service.record_attempt(
        pool, settings, n, Attempt(False, None, "ConnectError", retry=True)
    )
    assert status == "failed"
    assert await pool.fetchval("SELECT status FROM notification") == "failed"
    event = await pool.fetchrow(
        "SELECT data FROM incident_event WHERE kind = 'notify_failed' AND incident_id = $1",
        incident_id,
    )
    assert event["data"]["channel"] == "sms" and event["data"]["target"] == "abc"
    assert event["data"]["recipient"] == "guardian" and event["data"]["attempts"] == 1
    # Published to the consoles through the outbox.
    payload = await pool.fetchval(
        "SELECT payload FROM outbox WHERE payload->>'kind' = 'notify_failed' AND incident_id = $1",
        incident_id,
    )
    assert payload["target"] == "abc"
    assert await service.claim_due(pool, limit=10, lease_s=30) == []


async def test_a_refusal_fails_at_once(pool, settings, make_member):
    incident_id = await _incident(pool, (await make_member()).id)
    await _enqueue(pool, incident_id, "k1")
    (n,) = await service.claim_due(pool, limit=10, lease_s=30)
    status = await service.record_attempt(pool, settings, n, Attempt(False, 400, "bad number"))
    assert status == "failed"
