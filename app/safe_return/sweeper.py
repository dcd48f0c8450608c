"""The checks of every walk home, raised on the server (the phone's own timers are held back by
its OS, and die with it).

Every dispatcher runs ``sweep`` every ``safe_return_sweep_s``. Due sessions are the head of the
partial index on ``next_check_at`` (kept true by a trigger, migration 0015_safe_return), taken
``FOR UPDATE SKIP LOCKED`` in batches: any number of dispatchers share the work, none does a
session twice, and a due session is found without reading the others.

- an ``active`` session that is due asks her "Are you OK?" (a push; she answers with her PIN,
  ``service.answer_ok``) and waits ``ask_s``;
- an ``asking`` session whose time ran out becomes an SOS (``escalate``): an incident with source
  ``safe_return`` written by the SOS intake's own statement (``insert_incident``), her whole trail
  copied to it, the destination and the reason on it; its outbox row goes through the relay to
  the dispatchers like any report, so it reaches her district's consoles and her guardians are
  told through the normal path."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import asyncpg

from app.config import Settings
from app.incidents.store import NewIncident, insert_incident
from app.safe_return import scouts

log = logging.getLogger(__name__)

_ASK_SQL = """
WITH due AS (
  SELECT s.id, s.next_check_at AS due_at, (safe_return_due(s)).reason AS reason
  FROM safe_return_session s
  WHERE s.status = 'active' AND s.next_check_at <= now()
  ORDER BY s.next_check_at LIMIT $1
  FOR UPDATE SKIP LOCKED
), asked AS (
  UPDATE safe_return_session s SET status = 'asking', asked_at = now(), check_reason = due.reason,
    low_battery_asked = s.low_battery_asked OR due.reason = 'low_battery', updated_at = now()
  FROM due WHERE s.id = due.id
  RETURNING s.id, s.member_id, s.check_reason, s.asked_at, s.next_check_at, due.due_at
), pushed AS (
  INSERT INTO notification (safe_return_id, channel, target, message, dedupe_key, deadline_at)
  SELECT id, 'push', 'member:' || member_id,
         jsonb_build_object('type', 'safe_return_check', 'session_id', id,
                            'reason', check_reason, 'answer_by', next_check_at,
                            'text', 'Are you OK? Answer with your PIN.'),
         'walk:' || id || ':ask:' || extract(epoch FROM asked_at), next_check_at
  FROM asked
  ON CONFLICT (dedupe_key) DO NOTHING
)
SELECT id, check_reason, extract(epoch FROM now() - due_at)::float8 AS late_s FROM asked
"""

_EXPIRED_SQL = """
SELECT id, check_reason, extract(epoch FROM now() - next_check_at)::float8 AS late_s
FROM safe_return_session
WHERE status = 'asking' AND next_check_at <= now()
ORDER BY next_check_at LIMIT 1
FOR UPDATE SKIP LOCKED
"""

_SESSION_SQL = """
SELECT s.id, s.member_id, s.status, s.check_reason, s.battery_pct, s.expected_arrival_at,
       s.destination_label, s.last_point_at, s.share_with_control_centre,
       ST_Y(s.destination::geometry) AS dest_lat, ST_X(s.destination::geometry) AS dest_lon,
       ST_Y(s.last_position::geometry) AS lat, ST_X(s.last_position::geometry) AS lon
FROM safe_return_session s WHERE s.id = $1 FOR UPDATE
"""

_COPY_TRAIL_SQL = """
INSERT INTO location_point (incident_id, geog, accuracy_m, captured_at)
SELECT $1, geog, accuracy_m, coalesce(captured_at, received_at)
FROM safe_return_point WHERE session_id = $2 ORDER BY id
"""

_ASSIGN_SCOUT_SQL = """
WITH a AS (
  INSERT INTO assignment (id, incident_id, kind, volunteer_id)
  VALUES (gen_random_uuid(), $1, 'volunteer', $2::text::uuid)
  RETURNING volunteer_id
)
INSERT INTO incident_event (incident_id, kind, actor, data)
SELECT $1, 'volunteer_assigned', 'safe_return',
       jsonb_build_object('volunteer_id', a.volunteer_id, 'name', s.name, 'scout', true)
FROM a JOIN staff s ON s.id = a.volunteer_id
"""

REASON_TEXT = {
    "no_arrival": "she has not arrived by the time she expected",
    "no_position": "no position from her phone",
    "off_route": "she left her route",
    "not_moving": "she has not moved, away from her destination",
    "low_battery": "her battery is almost empty",
    "duress": "she answered with her duress PIN",
}


@dataclass
class SweepResult:
    asked: int = 0
    escalated: int = 0
    #: Scouts bookings whose scouts did not come.
    no_shows: int = 0
    #: Seconds each check was raised after its due time.
    lateness_s: list[float] = field(default_factory=list)
    #: Seconds each SOS was raised after her time to answer ran out.
    escalation_lateness_s: list[float] = field(default_factory=list)


async def escalate(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    session_id: uuid.UUID,
    reason: str,
    member_status: str | None = None,
) -> uuid.UUID | None:
    """Turn the (locked) session into an SOS, in the caller's transaction; returns the incident.
    A duress (``member_status`` set: what her phone goes on showing) is a silent SOS."""
    s = await conn.fetchrow(_SESSION_SQL, session_id)
    if s is None or s["status"] not in ("active", "asking"):
        return None
    duress = reason == "duress"
    destination = {
        "lat": s["dest_lat"],
        "lon": s["dest_lon"],
        "label": s["destination_label"],
    }
    escort = await scouts.scouts_of_walk(conn, s["id"])
    note = (
        f"Safe return: {REASON_TEXT.get(reason, reason)}."
        f" Going to {s['destination_label'] or 'her destination'}"
        f" ({s['dest_lat']:.5f}, {s['dest_lon']:.5f}),"
        f" expected by {s['expected_arrival_at'].isoformat(timespec='minutes')}."
    )
    if escort:
        note += f" Escorted by Safe Return Scouts ({escort[0]['team']}): " + ", ".join(
            f"{e['name']} (badge {e['badge_number'] or '—'}"
            f"{', ☎ ' + e['phone'] if e['phone'] else ''})"
            for e in escort
        )
        note += "."
    stored = await insert_incident(
        conn,
        NewIncident(
            source="safe_return",
            trigger=reason,
            actor="safe_return",
            member_id=s["member_id"],
            # The session's id: a retried escalation finds the incident instead of a second one.
            client_alert_id=s["id"],
            silent=duress,
            lat=s["lat"],
            lon=s["lon"],
            captured_at=s["last_point_at"],
            battery_pct=s["battery_pct"],
            note=note,
            flags=("safe_return", reason)
            if s["lat"] is not None
            else ("safe_return", reason, "no_location"),
            event_data={
                "safe_return_id": str(s["id"]),
                "reason": reason,
                "destination": destination,
                "expected_arrival_at": s["expected_arrival_at"].isoformat(),
                **({"scouts": escort} if escort else {}),
            },
        ),
        ack_deadline_s=settings.ack_deadline_s,
    )
    incident_id = getattr(stored, "id", None)
    if incident_id is None:
        incident_id = await conn.fetchval(
            "SELECT id FROM incident WHERE member_id = $1 AND client_alert_id = $2",
            s["member_id"],
            s["id"],
        )
    else:
        await conn.execute(_COPY_TRAIL_SQL, incident_id, s["id"])
        if escort:
            # The scouts walking with her are the volunteers nearest to her: assigned at once,
            # so the console names them and they may follow the incident (app/api/volunteers).
            await conn.executemany(_ASSIGN_SCOUT_SQL, [(incident_id, e["id"]) for e in escort])
        if duress:
            await conn.execute(
                "UPDATE incident SET duress = true, escalation_level = escalation_level + 1"
                " WHERE id = $1",
                incident_id,
            )
    await conn.execute(
        "UPDATE safe_return_session SET status = 'sos', check_reason = $2, incident_id = $3,"
        " member_status = $4, ended_at = now(), updated_at = now() WHERE id = $1",
        s["id"],
        reason,
        incident_id,
        member_status,
    )
    log.info("safe return session became an SOS (%s)", reason)
    return incident_id  # type: ignore[no-any-return]


async def sweep(pool: asyncpg.Pool, settings: Settings, *, max_batches: int = 1000) -> SweepResult:
    """Raise every check that is due now; returns what it did (the caller kicks the relay when
    it escalated, and the notification sender when it asked)."""
    result = SweepResult()
    for _ in range(max_batches):
        rows = await pool.fetch(_ASK_SQL, settings.safe_return_sweep_batch)
        result.asked += len(rows)
        result.lateness_s.extend(r["late_s"] for r in rows)
        if len(rows) < settings.safe_return_sweep_batch:
            break
    for _ in range(max_batches):
        async with pool.acquire() as conn, conn.transaction():
            expired = await conn.fetchrow(_EXPIRED_SQL)
            if expired is None:
                break
            reason = expired["check_reason"] or "no_arrival"
            if await escalate(conn, settings, session_id=expired["id"], reason=reason):
                result.escalated += 1
                result.escalation_lateness_s.append(expired["late_s"])
    result.no_shows = await scouts.sweep(pool, settings)
    return result


async def purge_ended(pool: asyncpg.Pool, *, retention_s: float) -> int:
    """Walks over for longer than the trail retention lose their trail and every position (an
    SOS's copy lives on its incident, purged with it)."""
    async with pool.acquire() as conn, conn.transaction():
        ids = await conn.fetch(
            "UPDATE safe_return_session SET destination = NULL, route = NULL,"
            " last_position = NULL, anchor = NULL, destination_label = NULL"
            " WHERE status NOT IN ('active','asking')"
            " AND ended_at < now() - make_interval(secs => $1::float8)"
            " AND (destination IS NOT NULL OR last_position IS NOT NULL)"
            " RETURNING id",
            retention_s,
        )
        if ids:
            await conn.execute(
                "DELETE FROM safe_return_point WHERE session_id = ANY($1::uuid[])",
                [r["id"] for r in ids],
            )
    return len(ids) + await scouts.purge_ended(pool, retention_s=retention_s)


def grace(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.safe_return_grace_s)
