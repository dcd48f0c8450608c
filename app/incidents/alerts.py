"""A member's own alerts: raise (the hot path), replay, view, trail, cancel (with duress)."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import Conflict, NotFound
from app.geo.nearest import nearest_places
from app.incidents import lifecycle, timeline
from app.incidents.intake import ParsedSOS
from app.incidents.status import OPEN, sql_list
from app.incidents.store import (
    TOPIC_CREATED,
    Folded,
    NewIncident,
    OutboxRow,
    StoredIncident,
    fold_report,
    insert_incident,
    outbox_row,
)
from app.models import Incident, Member, SecurityEvent
from app.security.passwords import verify_secret
from app.security.tokens import hash_token

# A replay also returns the SOS's outbox row when the API published it itself and no dispatcher
# has routed it yet: the first attempt may have died between its commit and its publish.
_EXISTING_SQL = """
SELECT i.id, i.status, i.member_cancelled_at, i.received_at,
       ST_Y(i.location::geometry) AS lat, ST_X(i.location::geometry) AS lon,
       d.code AS district_code, d.name AS district_name,
       o.id AS outbox_id, o.topic AS outbox_topic, o.payload AS outbox_payload,
       o.created_at AS outbox_created_at
FROM incident i LEFT JOIN district d ON d.id = i.district_id
LEFT JOIN outbox o ON o.incident_id = i.id AND o.topic = $3 AND o.published_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM dispatch_receipt r WHERE r.outbox_id = o.id)
WHERE i.member_id = $1 AND i.client_alert_id = $2
"""


@dataclass(frozen=True)
class RaisedAlert:
    created: bool
    body: dict[str, Any]
    #: Joined to her alert that was still open (not created, not a replay).
    folded: bool = False
    #: The caller publishes this outbox row (``OutboxRelay.publish``) before answering.
    to_publish: OutboxRow | None = None


def member_status(status: str, member_cancelled_at: datetime | None) -> str:
    """What her own app shows: a duress cancel must look exactly like a real one."""
    return "cancelled" if member_cancelled_at is not None else status


async def _places_json(
    pool: asyncpg.Pool, settings: Settings, lat: float | None, lon: float | None
) -> list[dict[str, Any]]:
    if lat is None or lon is None:
        return []
    places = await nearest_places(
        pool,
        lat=lat,
        lon=lon,
        limit=settings.nearest_default_limit,
        open_now=True,
        tz=settings.local_timezone,
    )
    return [p.as_json() for p in places]


def _district_json(code: str | None, name: str | None) -> dict[str, str] | None:
    return {"code": code, "name": name} if code is not None and name is not None else None


async def raise_alert(
    *,
    pool: asyncpg.Pool,
    settings: Settings,
    token: str,
    sos: ParsedSOS,
    request_id: str | None = None,
) -> RaisedAlert:
    """Commit the incident (with its timeline event and outbox row), then answer with the
    nearest open safe places. Her member token is checked by the insert statement itself (one
    round trip less on every SOS): ``Unauthorized`` if it is unknown or revoked, and nothing
    is written.

    A known ``client_alert_id`` replays the first answer. A new report while her alert is open
    is folded into it (one emergency, one incident; a flood never opens a hundred)."""
    insert = insert_incident(
        pool,
        NewIncident(
            source="app",
            trigger=sos.trigger,
            actor=None,
            member_token_hash=hash_token(token),
            client_alert_id=sos.client_alert_id,
            silent=sos.silent,
            lat=sos.lat,
            lon=sos.lon,
            accuracy_m=sos.accuracy_m,
            captured_at=sos.captured_at,
            battery_pct=sos.battery_pct,
            note=sos.note,
            flags=sos.flags,
            event_data={"flags": list(sos.flags)} if sos.flags else {},
            request_id=request_id,
        ),
        fold_window_s=settings.sos_fold_window_s,
        publish=True,
        ack_deadline_s=settings.ack_deadline_s,
        route=True,
        link_window_s=settings.link_window_s,
        link_radius_m=settings.link_radius_m,
    )
    # The nearest places do not depend on the insert: both run at once (on two pooled
    # connections), so an SOS waits for the slower of the two rather than for their sum. The
    # answer still leaves only after the commit.
    result, places = await asyncio.gather(insert, _places_json(pool, settings, sos.lat, sos.lon))
    if isinstance(result, StoredIncident):
        body = {
            "incident_id": str(result.id),
            "status": result.status,
            "received_at": result.received_at.isoformat(),
            "district": _district_json(result.district_code, result.district_name),
            "nearest_safe_places": places,
            "flags": list(sos.flags),
            "warnings": [w.as_json() for w in sos.warnings],
        }
        return RaisedAlert(created=True, body=body, to_publish=result.to_publish)

    to_publish = None
    member_id = result.member_id
    folded = isinstance(result, Folded)
    if isinstance(result, Folded):
        sos.warn(
            "folded_into_open_alert",
            "client_alert_id",
            "you already have an open alert; this report was joined to it",
        )
        row = await fold_report(
            pool,
            incident_id=result.into,
            actor=f"member:{member_id}",
            data={"trigger": sos.trigger, "flags": list(sos.flags)},
            lat=sos.lat,
            lon=sos.lon,
            accuracy_m=sos.accuracy_m,
            captured_at=sos.captured_at,
        )
        lat, lon = row["lat"], row["lon"]
    else:
        row = await pool.fetchrow(_EXISTING_SQL, member_id, sos.client_alert_id, TOPIC_CREATED)
        if row is None:  # only if the alert was erased between the two statements
            raise Conflict("the alert could not be stored; retry")
        lat, lon = row["lat"], row["lon"]
        to_publish = outbox_row(row)
    body = {
        "incident_id": str(row["id"]),
        "status": member_status(row["status"], row["member_cancelled_at"]),
        "received_at": row["received_at"].isoformat(),
        "district": _district_json(row["district_code"], row["district_name"]),
        "nearest_safe_places": places
        if (lat, lon) == (sos.lat, sos.lon)
        else await _places_json(pool, settings, lat, lon),
        "flags": list(sos.flags),
        "warnings": [w.as_json() for w in sos.warnings],
    }
    return RaisedAlert(created=False, body=body, folded=folded, to_publish=to_publish)


# --- the live trail -------------------------------------------------------------------------

_TRAIL_SQL = f"""
WITH owned AS (
  SELECT id, status, member_cancelled_at, duress FROM incident
  WHERE id = $1 AND member_id = $2
), pts AS (
  -- ``at``: when the point was where it says (a point without a time, or dated in the future
  -- by a wrong clock, counts as now).
  SELECT p.*, least(coalesce(p.captured_at, now()), now()) AS at
  FROM unnest($3::float8[], $4::float8[], $5::float8[], $6::timestamptz[])
    WITH ORDINALITY AS p(lat, lon, accuracy_m, captured_at, n)
), ins AS (
  INSERT INTO location_point (incident_id, geog, accuracy_m, captured_at)
  SELECT owned.id, ST_SetSRID(ST_MakePoint(pts.lon, pts.lat), 4326)::geography,
         pts.accuracy_m, pts.captured_at
  FROM owned, pts
  WHERE owned.status IN ({sql_list(OPEN)})
  RETURNING incident_id
), latest AS (
  SELECT lat, lon, accuracy_m, at FROM pts ORDER BY at DESC, n DESC LIMIT 1
), upd AS (
  -- The live position never moves backwards: a late batch (buffered while she was offline)
  -- goes into the trail but moves the incident only if it is newer than its position. (In the
  -- WHERE clause, so that it is checked again on the newest row if a writer got there first.)
  UPDATE incident i SET
    location = ST_SetSRID(ST_MakePoint(latest.lon, latest.lat), 4326)::geography,
    accuracy_m = latest.accuracy_m,
    location_captured_at = latest.at,
    district_id = coalesce(i.district_id, (
      SELECT d.id FROM district d
      WHERE ST_Covers(d.boundary, ST_SetSRID(ST_MakePoint(latest.lon, latest.lat), 4326))
      ORDER BY d.code LIMIT 1)),
    updated_at = now()
  FROM latest
  WHERE i.id = $1 AND EXISTS (SELECT 1 FROM ins)
    AND (i.location IS NULL OR latest.at > coalesce(i.location_captured_at, i.received_at))
  RETURNING i.id
), ob AS (
  INSERT INTO outbox (topic, incident_id, payload)
  SELECT 'incident.updated', id,
         jsonb_build_object('incident_id', id, 'kind', 'location', 'points', $7::int)
  FROM upd
)
SELECT owned.status, owned.member_cancelled_at, (SELECT count(*) FROM ins) AS stored
FROM owned
"""


@dataclass(frozen=True)
class TrailPoint:
    lat: float
    lon: float
    accuracy_m: float | None
    captured_at: datetime | None


async def add_trail(
    *, pool: asyncpg.Pool, member_id: uuid.UUID, incident_id: uuid.UUID, points: list[TrailPoint]
) -> int:
    """Store trail points and move the incident's position to the newest one, if that is newer
    than its position (one statement)."""
    row = await pool.fetchrow(
        _TRAIL_SQL,
        incident_id,
        member_id,
        [p.lat for p in points],
        [p.lon for p in points],
        [p.accuracy_m for p in points],
        [p.captured_at for p in points],
        len(points),
    )
    if row is None:
        raise NotFound("no such alert")
    if row["member_cancelled_at"] is not None:
        # After her cancel the answer is the same whether the points were stored (a duress
        # cancel: police need them) or not (a real one closed the alert): every point taken.
        return len(points)
    if row["stored"] == 0 and points:
        raise Conflict(f"the alert is {row['status']}; it takes no more locations")
    stored: int = row["stored"]
    return stored


# --- her own view ---------------------------------------------------------------------------

_VIEW_SQL = """
SELECT i.id, i.status, i.member_cancelled_at, i.duress, i.received_at, i.closed_at,
       i.acknowledged_at, i.trigger, i.silent, i.flags, i.accuracy_m, i.location_captured_at,
       ST_Y(i.location::geometry) AS lat, ST_X(i.location::geometry) AS lon,
       d.code AS district_code, d.name AS district_name
FROM incident i LEFT JOIN district d ON d.id = i.district_id
WHERE i.id = $1 AND i.member_id = $2
"""

_RESPONDERS_SQL = """
SELECT s.name, s.badge_number, a.created_at
FROM assignment a JOIN staff s ON s.id = a.volunteer_id
WHERE a.incident_id = $1 AND a.kind = 'volunteer'
ORDER BY a.created_at
"""


async def view_alert(
    *, pool: asyncpg.Pool, settings: Settings, member_id: uuid.UUID, incident_id: uuid.UUID
) -> dict[str, Any]:
    row = await pool.fetchrow(_VIEW_SQL, incident_id, member_id)
    if row is None:
        raise NotFound("no such alert")
    cancelled_for_her = row["member_cancelled_at"] is not None
    location = (
        {
            "lat": row["lat"],
            "lon": row["lon"],
            "accuracy_m": row["accuracy_m"],
            "captured_at": _iso(row["location_captured_at"]),
        }
        if row["lat"] is not None and not cancelled_for_her
        else None
    )
    district = (
        None if cancelled_for_her else _district_json(row["district_code"], row["district_name"])
    )
    if cancelled_for_her:
        # After a cancel (real or under duress) her screen shows a closed alert and nothing
        # about responders, nor a position or district (the trail she keeps sending moves them
        # only under duress): someone may be looking at it.
        responders: list[dict[str, Any]] = []
        police_acknowledged = False
    else:
        rows = await pool.fetch(_RESPONDERS_SQL, incident_id)
        responders = [
            {
                "kind": "volunteer",
                "name": r["name"],
                "badge_number": r["badge_number"],
                "assigned_at": r["created_at"].isoformat(),
            }
            for r in rows
        ]
        police_acknowledged = row["acknowledged_at"] is not None
    return {
        "incident_id": str(row["id"]),
        "status": member_status(row["status"], row["member_cancelled_at"]),
        "received_at": row["received_at"].isoformat(),
        "trigger": row["trigger"],
        "silent": row["silent"],
        "location": location,
        "district": district,
        "police_acknowledged": police_acknowledged,
        "responders": responders,
        "nearest_safe_places": []
        if cancelled_for_her
        else await _places_json(pool, settings, row["lat"], row["lon"]),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- cancel, with the duress PIN ------------------------------------------------------------


@dataclass(frozen=True)
class CancelResult:
    refused: bool
    body: dict[str, Any]
    #: Set while her cancels are locked out (too many wrong PINs): seconds until they are not.
    locked_for_s: int | None = None


async def cancel_alert(
    *,
    session: AsyncSession,
    settings: Settings,
    member_id: uuid.UUID,
    incident_id: uuid.UUID,
    pin: str,
    source_ip: str | None,
) -> CancelResult:
    """The right PIN cancels. The duress PIN answers exactly the same, but escalates.

    A wrong PIN is refused; ``max_wrong_pins`` in a row escalate the incident too (someone may
    be forcing her to guess), and ``cancel_pin_lockout_after`` in a row lock her cancels out for
    ``cancel_pin_lockout_s``: every cancel is then refused alike, whatever the PIN, so the
    lockout gives nothing away, but her duress PIN still escalates, silently."""
    incident = await session.scalar(
        select(Incident)
        .where(Incident.id == incident_id, Incident.member_id == member_id)
        .with_for_update()
    )
    if incident is None:
        raise NotFound("no such alert")
    member = await session.get_one(Member, member_id, with_for_update=True)
    # Both hashes are always checked, so a duress PIN costs the same time as a real one.
    is_pin, is_duress = await asyncio.gather(
        asyncio.to_thread(verify_secret, member.pin_hash, pin),
        asyncio.to_thread(verify_secret, member.duress_pin_hash, pin),
    )
    now = datetime.now(UTC)
    actor = f"member:{member_id}"

    if member.pin_locked_until is not None and member.pin_locked_until > now:
        if is_duress:
            await _duress(session, incident, actor=actor, now=now, during_lockout=True)
        session.add(
            SecurityEvent(
                kind="cancel_locked_out",
                member_id=member_id,
                source_ip=source_ip,
                detail={"incident_id": str(incident_id)},
            )
        )
        await session.flush()
        return CancelResult(
            refused=True,
            body={},
            locked_for_s=math.ceil((member.pin_locked_until - now).total_seconds()),
        )

    if not (is_pin or is_duress):
        member.wrong_pin_count += 1
        escalate = member.wrong_pin_count >= settings.max_wrong_pins
        if member.wrong_pin_count >= settings.cancel_pin_lockout_after:
            member.pin_locked_until = now + timedelta(seconds=settings.cancel_pin_lockout_s)
        session.add(
            SecurityEvent(
                kind="wrong_cancel_pin",
                member_id=member_id,
                source_ip=source_ip,
                detail={"incident_id": str(incident_id), "count": member.wrong_pin_count},
            )
        )
        if escalate and incident.status in OPEN:
            incident.escalation_level += 1
            incident.updated_at = now
            await timeline.record(
                session,
                incident_id=incident.id,
                kind="wrong_pin_escalation",
                actor=actor,
                data={"wrong_pins": member.wrong_pin_count},
            )
        await session.flush()
        # Returned, not raised: the count and the escalation must commit with the refusal.
        return CancelResult(refused=True, body={})

    member.wrong_pin_count = 0
    member.pin_locked_until = None
    if incident.member_cancelled_at is None:
        incident.member_cancelled_at = now
        incident.updated_at = now
        if is_duress:
            await _duress(session, incident, actor=actor, now=now)
        elif incident.status in OPEN and not incident.duress:
            await lifecycle.member_cancel(session, incident=incident, actor=actor, now=now)
    elif is_duress:
        # A duress PIN after a real cancel: she is being forced; reopen quietly.
        await _duress(session, incident, actor=actor, now=now)
    cancelled_at = incident.member_cancelled_at or now
    await session.flush()
    return CancelResult(
        refused=False,
        body={
            "incident_id": str(incident.id),
            "status": "cancelled",
            "cancelled_at": cancelled_at.isoformat(),
        },
    )


async def _duress(
    session: AsyncSession,
    incident: Incident,
    *,
    actor: str,
    now: datetime,
    during_lockout: bool = False,
) -> None:
    """Her duress PIN: escalate (once), reopening an alert she had cancelled herself."""
    if incident.duress:
        return
    incident.duress = True
    incident.escalation_level += 1
    lifecycle.duress_reopen(incident)
    incident.updated_at = now
    await timeline.record(
        session,
        incident_id=incident.id,
        kind="duress_cancel",
        actor=actor,
        data={"during_lockout": True} if during_lockout else None,
    )
