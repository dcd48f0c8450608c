"""The escalation ladder: levels, deadlines and pages; the stages after the acknowledgement
(real PostgreSQL and Redis)."""

from __future__ import annotations

import uuid

import pytest

from app.config import EscalationStep
from app.dispatch import routing
from app.incidents.store import NewIncident, insert_incident


@pytest.fixture
def ladder(settings):
    return settings.model_copy(
        update={
            "ack_deadline_s": 15.0,
            "escalation_ladder": [
                EscalationStep(after_s=30, page=False),
                EscalationStep(after_s=60, page=True),
            ],
            "escalation_repeat_s": 120.0,
            "respond_deadline_s": 300.0,
            "on_scene_deadline_s": 900.0,
        }
    )


def test_the_ladder_says_when_the_next_level_comes_and_who_is_paged(ladder):
    assert [routing.next_step_s(ladder, level) for level in range(5)] == [15, 30, 60, 120, 120]
    assert [routing.pages_at(ladder, level, "ack_timeout") for level in range(1, 6)] == [
        False,  # level 1: the consoles' alarm only
        False,  # level 2: a step that does not page
        True,  # level 3: a step that pages
        True,  # and every repeat after the last step
        True,
    ]
    # A duress, a wrong PIN or a stage overdue pages at any level.
    for reason in ("duress", "wrong_pin_escalation", "not_on_scene"):
        assert routing.pages_at(ladder, 1, reason)
    never_again = ladder.model_copy(update={"escalation_repeat_s": 0.0})
    assert routing.next_step_s(never_again, 3) is None


async def _on_call(pool, phone="+821011112222"):
    staff_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO staff (id, username, name, role, password_hash, city_wide, phone, on_call,"
        " active) VALUES ($1, $2, 'Duty officer', 'dispatcher', 'x', true, $3, true, true)",
        staff_id,
        f"duty-{staff_id.hex[:8]}",
        phone,
    )
    return staff_id


async def _incident(pool, make_member):
    member = await make_member()
    stored = await insert_incident(
        pool,
        NewIncident(
            source="app", trigger="sos", actor="t", member_id=member.id, lat=37.52, lon=126.92
        ),
    )
    assert stored is not None
    return stored.id


async def _overdue(pool, incident_id, column="ack_deadline_at"):
    await pool.execute(
        f"UPDATE incident SET {column} = now() - interval '1 second' WHERE id = $1", incident_id
    )


async def _pages(pool, incident_id):
    return await pool.fetch(
        "SELECT target, message FROM notification WHERE incident_id = $1"
        " AND message->>'type' = 'page' ORDER BY id",
        incident_id,
    )


async def test_an_unacknowledged_incident_climbs_the_ladder_and_pages_where_it_says(
    pool, ladder, make_member
):
    duty = await _on_call(pool)
    incident_id = await _incident(pool, make_member)
    waits = []
    for _level in range(1, 5):
        await _overdue(pool, incident_id)
        assert await routing.escalate_overdue(pool, ladder) == 1
        waits.append(
            await pool.fetchval(
                "SELECT round(extract(epoch FROM ack_deadline_at - now())) FROM incident"
                " WHERE id = $1",
                incident_id,
            )
        )
    assert waits == [30, 60, 120, 120]
    events = await pool.fetch(
        "SELECT data FROM incident_event WHERE incident_id = $1 AND kind = 'escalated' ORDER BY id",
        incident_id,
    )
    assert [(e["data"]["level"], e["data"].get("paged")) for e in events] == [
        (1, None),
        (2, None),
        (3, 1),
        (4, 1),
    ]
    pages = await _pages(pool, incident_id)
    assert [p["target"] for p in pages] == [f"staff:{duty}"] * 2
    assert [p["message"]["level"] for p in pages] == [3, 4]
    assert "37.52" not in pages[0]["message"]["text"]  # never her position in an SMS


async def test_an_acknowledgement_stops_the_ladder(pool, ladder, make_member, sessionmaker):
    from app.incidents import lifecycle

    incident_id = await _incident(pool, make_member)
    async with sessionmaker() as session:
        await lifecycle.acknowledge(session, incident_id=incident_id, actor="staff:x")
        await session.commit()
    await _overdue(pool, incident_id)  # a stale deadline: not 'new' any more
    assert await routing.escalate_overdue(pool, ladder) == 0


async def _route(pool, redis, settings, incident_id, kind):
    """What a dispatcher does with the outbox row of ``kind`` for the incident."""
    row = await pool.fetchrow(
        "SELECT id, topic, payload FROM outbox WHERE incident_id = $1"
        " AND payload->>'kind' = $2 ORDER BY id DESC LIMIT 1",
        incident_id,
        kind,
    )
    entry = routing.Entry(
        outbox_id=row["id"],
        topic=row["topic"],
        incident_id=incident_id,
        kind=kind,
        payload=row["payload"],
        committed_at=None,
    )
    await routing.handle(routing.Context(pool, redis, settings, {}), entry)


async def test_each_stage_after_the_acknowledgement_escalates_once_when_overdue(
    pool, redis, ladder, make_member, sessionmaker
):
    from app.incidents import lifecycle

    await _on_call(pool)
    incident_id = await _incident(pool, make_member)
    async with sessionmaker() as session:
        await lifecycle.acknowledge(session, incident_id=incident_id, actor="staff:x")
        await session.commit()
    await _route(pool, redis, ladder, incident_id, "acknowledged")
    due = await pool.fetchval(
        "SELECT round(extract(epoch FROM stage_deadline_at - now())) FROM incident WHERE id = $1",
        incident_id,
    )
    assert due == 300
    assert await routing.escalate_overdue(pool, ladder) == 0  # not yet

    await _overdue(pool, incident_id, "stage_deadline_at")
    assert await routing.escalate_overdue(pool, ladder) == 1
    assert await routing.escalate_overdue(pool, ladder) == 0  # once per stage

    async with sessionmaker() as session:
        incident = await lifecycle.lock_incident(session, incident_id)
        await lifecycle.transition(session, incident=incident, target="responding", actor="staff:x")
        await session.commit()
    await _route(pool, redis, ladder, incident_id, "responding")
    due = await pool.fetchval(
        "SELECT round(extract(epoch FROM stage_deadline_at - now())) FROM incident WHERE id = $1",
        incident_id,
    )
    assert due == 900
    await _overdue(pool, incident_id, "stage_deadline_at")
    assert await routing.escalate_overdue(pool, ladder) == 1

    async with sessionmaker() as session:
        incident = await lifecycle.lock_incident(session, incident_id)
        await lifecycle.transition(session, incident=incident, target="on_scene", actor="staff:x")
        await session.commit()
    await _route(pool, redis, ladder, incident_id, "on_scene")
    assert (
        await pool.fetchval("SELECT stage_deadline_at FROM incident WHERE id = $1", incident_id)
        is None
    )
    events = await pool.fetch(
        "SELECT data FROM incident_event WHERE incident_id = $1 AND kind = 'escalated' ORDER BY id",
        incident_id,
    )
    assert [(e["data"]["reason"], e["data"]["level"], e["data"]["paged"]) for e in events] == [
        ("no_unit_assigned", 1, 1),
        ("not_on_scene", 2, 1),
    ]
    assert len(await _pages(pool, incident_id)) == 2


async def test_an_acknowledged_incident_with_a_unit_that_does_not_respond_says_so(
    pool, ladder, make_member, sessionmaker
):
    from app.incidents import lifecycle

    incident_id = await _incident(pool, make_member)
    async with sessionmaker() as session:
        await lifecycle.acknowledge(session, incident_id=incident_id, actor="staff:x")
        await session.commit()
    await pool.execute(
        "INSERT INTO assignment (id, incident_id, kind, unit) VALUES ($1, $2, 'unit', '강남-12')",
        uuid.uuid4(),
        incident_id,
    )
    await _overdue(pool, incident_id, "stage_deadline_at")
    assert await routing.escalate_overdue(pool, ladder) == 1
    reason = await pool.fetchval(
        "SELECT data->>'reason' FROM incident_event WHERE incident_id = $1 AND kind = 'escalated'",
        incident_id,
    )
    assert reason == "not_responding"


async def test_a_duress_escalation_pages_the_on_call_supervisor_at_once(
    pool, redis, ladder, make_member
):
    duty = await _on_call(pool)
    incident_id = await _incident(pool, make_member)
    await pool.execute(
        "INSERT INTO outbox (topic, incident_id, payload) VALUES ('incident.updated', $1,"
        " jsonb_build_object('incident_id', $1::uuid::text, 'kind', 'duress'))",
        incident_id,
    )
    await _route(pool, redis, ladder, incident_id, "duress")
    pages = await _pages(pool, incident_id)
    assert [(p["target"], p["message"]["reason"]) for p in pages] == [(f"staff:{duty}", "duress")]
