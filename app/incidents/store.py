"""Writing incidents on the hot path: one statement inserts the incident, its first timeline
event and its outbox row (a single statement is one transaction, so they commit together)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from app.errors import Unauthorized
from app.incidents.console_service import SUMMARY_COLUMNS, summary_from_row
from app.incidents.route_sql import link_lateral_sql, routed_event_sql
from app.interop.subscriptions import agency_takes_sql
from app.security.tokens import member_by_token_sql

#: Outbox topics. The payload is small; consumers read the current incident from PostgreSQL.
TOPIC_CREATED = "incident.created"
TOPIC_UPDATED = "incident.updated"

_INSERT_SQL = """
WITH who AS (
  -- $3 the member, or $21 a member token to resolve here (saves the SOS a round trip); with a
  -- token that resolves to nobody nothing is written and ``member_id`` comes back NULL.
  SELECT coalesce($3::uuid, ({MEMBER_BY_TOKEN})) AS member_id
), loc AS (
  SELECT CASE WHEN $9::float8 IS NULL OR $10::float8 IS NULL THEN NULL
              ELSE ST_SetSRID(ST_MakePoint($10, $9), 4326)::geography END AS g
), d AS (
  SELECT district.id, district.code, district.name FROM district, loc
  WHERE loc.g IS NOT NULL AND ST_Covers(district.boundary, loc.g::geometry)
  ORDER BY district.code LIMIT 1
), open_alert AS (
  -- A new report from the same member (or button) while its alert is still open is the same
  -- emergency: fold it in. The function (migration 0012_races) first takes an advisory lock
  -- keyed by her, held to the commit, and then reads with a fresh snapshot: her two reports at
  -- the same moment (phone and wearable) are one incident, not two.
  SELECT id FROM (
    SELECT incident_open_alert((SELECT member_id FROM who), $4::uuid, $19::float8, $6::uuid)
      AS id
  ) f WHERE id IS NOT NULL
), inc AS (
  INSERT INTO incident (id, source, member_id, device_id, safe_place_id, client_alert_id,
                        trigger, silent, location, accuracy_m, location_captured_at,
                        district_id, battery_pct, note, flags, emergency_id, ack_deadline_at)
  SELECT $1, $2, who.member_id, $4, $5, $6, $7, $8, loc.g, $11, $12, (SELECT id FROM d), $13,
         $14, $15, $1, now() + make_interval(secs => $22::float8)
  FROM loc, who
  WHERE NOT EXISTS (SELECT 1 FROM open_alert)
    AND ($21::bytea IS NULL OR who.member_id IS NOT NULL)
  ON CONFLICT (member_id, client_alert_id) WHERE client_alert_id IS NOT NULL DO NOTHING
  RETURNING *
), ev AS (
  INSERT INTO incident_event (incident_id, kind, actor, data)
  SELECT id, 'reported', coalesce($16::text, 'member:' || (SELECT member_id FROM who)),
         $17::jsonb
  FROM inc
  RETURNING incident_id
), lnk AS (
  SELECT l.link_id FROM inc i, {LINK} WHERE $23::bool
), routed AS (
  -- $23: route it here (a phone's SOS): the ``routed`` event, unless a dispatcher has more to
  -- do than show it on the consoles (her guardians to text, a button press near it to link;
  -- volunteers near it are looked up in Redis by ``OutboxRelay.publish``).
  {ROUTED}
  RETURNING incident_id
), ob AS (
  -- $20: the caller publishes this row itself right after the commit (``OutboxRelay.publish``),
  -- so it is written as published and the relay never claims it.
  INSERT INTO outbox (topic, incident_id, payload, published_at)
  -- The position lets a dispatcher look for volunteers before it touches the database.
  SELECT $18, id,
         jsonb_build_object('incident_id', id, 'kind', 'reported', 'source', $2::text,
                            'lat', $9::float8, 'lon', $10::float8)
         -- $26: the request id of the SOS (app/logs.py), for the dispatcher's log and consoles.
         || CASE WHEN $26::text IS NULL THEN '{}'::jsonb
                 ELSE jsonb_build_object('request_id', $26::text) END,
         CASE WHEN $20::bool THEN now() END
  FROM inc
  RETURNING id, topic, payload, created_at
)
SELECT {SUMMARY}, ob.id AS outbox_id, ob.topic AS outbox_topic, ob.payload AS outbox_payload,
       ob.created_at AS outbox_created_at, (SELECT id FROM open_alert) AS folded_into,
       (SELECT member_id FROM who) AS member_id, EXISTS (SELECT 1 FROM routed) AS routed
FROM (SELECT 1) AS one LEFT JOIN inc i ON true LEFT JOIN d ON true LEFT JOIN ob ON true
"""
for _name, _sql in {
    "{MEMBER_BY_TOKEN}": member_by_token_sql("$21::bytea"),
    "{LINK}": link_lateral_sql("app", "$24", "$25"),
    # (Joined to the ``reported`` event: it is written first, and ordered first by id.)
    "{ROUTED}": routed_event_sql(
        "inc r JOIN ev ON ev.incident_id = r.id",
        "'dispatch'",
        where="$23::bool AND NOT EXISTS (SELECT 1 FROM lnk)"
        " AND NOT EXISTS (SELECT 1 FROM guardian g WHERE g.member_id = r.member_id)"
        # An agency that takes it is sent it by a dispatcher (app/interop).
        f" AND NOT EXISTS ({agency_takes_sql('(SELECT id FROM d)')})",
        district_code="(SELECT code FROM d)",
        new_incident=True,
    ),
    "{SUMMARY}": SUMMARY_COLUMNS,
}.items():
    _INSERT_SQL = _INSERT_SQL.replace(_name, _sql)


@dataclass(frozen=True)
class NewIncident:
    source: str
    trigger: str
    #: ``None`` with ``member_token_hash``: ``member:<her id>``, once the token is resolved.
    actor: str | None
    member_id: uuid.UUID | None = None
    #: Instead of ``member_id``: her token's hash, resolved in the insert statement itself.
    member_token_hash: bytes | None = None
    device_id: uuid.UUID | None = None
    safe_place_id: uuid.UUID | None = None
    client_alert_id: uuid.UUID | None = None
    silent: bool = False
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    captured_at: datetime | None = None
    battery_pct: int | None = None
    note: str | None = None
    flags: tuple[str, ...] = ()
    event_data: dict[str, Any] = field(default_factory=dict)
    #: The HTTP request's id (app/logs.py): it travels in the outbox payload.
    request_id: str | None = None


@dataclass(frozen=True)
class OutboxRow:
    """An outbox row for the caller to publish itself (see ``OutboxRelay.publish``)."""

    id: int
    topic: str
    payload: dict[str, Any]
    created_at: datetime
    #: Set when the insert routed the report itself (``insert_incident(route=True)``): the
    #: summary the console message shows, which the publish appends to the console log.
    summary: dict[str, Any] | None = None


@dataclass(frozen=True)
class StoredIncident:
    id: uuid.UUID
    status: str
    received_at: datetime
    district_code: str | None
    district_name: str | None
    outbox_id: int | None
    #: Set when the incident was inserted with ``publish=True``: the caller publishes it.
    to_publish: OutboxRow | None = None


@dataclass(frozen=True)
class Folded:
    """The report was joined to the member's open alert instead of opening another."""

    into: uuid.UUID
    member_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Replay:
    """This member (or button) already sent this ``client_alert_id``: nothing was written."""

    member_id: uuid.UUID | None


async def insert_incident(
    conn: asyncpg.Connection | asyncpg.Pool,
    new: NewIncident,
    *,
    fold_window_s: float = 0,
    publish: bool = False,
    ack_deadline_s: float | None = None,
    route: bool = False,
    link_window_s: float = 0.0,
    link_radius_m: float = 0.0,
) -> StoredIncident | Folded | Replay:
    """Insert and commit; ``Replay`` when this member already sent this ``client_alert_id``.
    With ``new.member_token_hash``, a token that resolves to no member raises ``Unauthorized``
    and writes nothing.

    With ``fold_window_s`` > 0, a report while the same member (or, for a button, the same
    device) has an open, uncancelled alert received within that window is not inserted:
    ``Folded`` names the open alert (see ``fold_report``).

    With ``ack_deadline_s``, the acknowledgement deadline is set now, from ``received_at``
    (as routing would set it: the routing then leaves the row alone, one UPDATE less per SOS).

    With ``publish``, the outbox row is written as published and returned in ``to_publish``:
    the caller must hand it to ``OutboxRelay.publish`` (which gives it back to the relay if
    Redis refuses it).

    With ``route`` (a phone's SOS, with ``publish``), the report is routed here when nothing
    but the console message is left to do: no guardians of hers to text and no open button
    press within ``link_window_s`` and ``link_radius_m`` to link it with. The statement then
    writes the ``routed`` event and ``to_publish.summary`` is set: the publish appends the
    console message itself, and hands the entry to the dispatchers only if a volunteer is near
    (see ``OutboxRelay.publish``)."""
    row = await conn.fetchrow(
        _INSERT_SQL,
        uuid.uuid4(),
        new.source,
        new.member_id,
        new.device_id,
        new.safe_place_id,
        new.client_alert_id,
        new.trigger,
        new.silent,
        new.lat,
        new.lon,
        new.accuracy_m,
        new.captured_at,
        new.battery_pct,
        new.note,
        list(new.flags),
        new.actor,
        new.event_data,
        TOPIC_CREATED,
        fold_window_s,
        publish,
        new.member_token_hash,
        ack_deadline_s,
        route,
        link_window_s,
        link_radius_m,
        new.request_id,
    )
    if row["member_id"] is None and new.member_token_hash is not None:
        raise Unauthorized("invalid or revoked member token")
    if row["id"] is None:
        if row["folded_into"] is not None:
            return Folded(row["folded_into"], row["member_id"])
        return Replay(row["member_id"])
    return StoredIncident(
        id=row["id"],
        status=row["status"],
        received_at=row["received_at"],
        district_code=row["district_code"],
        district_name=row["district_name"],
        outbox_id=row["outbox_id"],
        to_publish=outbox_row(row, summary_from_row(row) if row["routed"] else None)
        if publish
        else None,
    )


def outbox_row(row: asyncpg.Record, summary: dict[str, Any] | None = None) -> OutboxRow | None:
    """The ``outbox_*`` columns of ``row``, if any."""
    if row["outbox_id"] is None:
        return None
    return OutboxRow(
        id=row["outbox_id"],
        topic=row["outbox_topic"],
        payload=row["outbox_payload"],
        created_at=row["outbox_created_at"],
        summary=summary,
    )


_FOLD_SQL = """
WITH pt AS (
  SELECT ST_SetSRID(ST_MakePoint($5, $4), 4326)::geography AS g,
         least(coalesce($7::timestamptz, now()), now()) AS at
  WHERE $4::float8 IS NOT NULL AND $5::float8 IS NOT NULL
), trail AS (
  INSERT INTO location_point (incident_id, geog, accuracy_m, captured_at)
  SELECT $1, pt.g, $6, $7 FROM pt
), upd AS (
  UPDATE incident i
  SET flags = CASE WHEN 'repeated' = ANY(flags) THEN flags ELSE flags || '{repeated}'::text[] END,
      location = CASE WHEN {NEWER} THEN (SELECT g FROM pt) ELSE i.location END,
      accuracy_m = CASE WHEN {NEWER} THEN $6 ELSE i.accuracy_m END,
      location_captured_at = CASE WHEN {NEWER} THEN (SELECT at FROM pt)
                                  ELSE i.location_captured_at END,
      district_id = coalesce(i.district_id, (
        SELECT d.id FROM district d, pt WHERE ST_Covers(d.boundary, pt.g::geometry)
        ORDER BY d.code LIMIT 1)),
      updated_at = now()
  WHERE i.id = $1
  RETURNING i.id, i.status, i.member_cancelled_at, i.received_at, i.district_id,
            ST_Y(i.location::geometry) AS lat, ST_X(i.location::geometry) AS lon
), ev AS (
  -- At most one timeline entry (and console message) per 10 s, however hard the phone floods;
  -- the console reads the incident's newest position along with it.
  INSERT INTO incident_event (incident_id, kind, actor, data)
  SELECT id, 'repeat_report', $2, $3::jsonb FROM upd
  WHERE NOT EXISTS (
    SELECT 1 FROM incident_event e
    WHERE e.incident_id = $1 AND e.kind = 'repeat_report' AND e.at > now() - interval '10 s')
  RETURNING incident_id
), ob AS (
  INSERT INTO outbox (topic, incident_id, payload)
  SELECT 'incident.updated', incident_id,
         jsonb_build_object('incident_id', incident_id, 'kind', 'repeat_report')
  FROM ev
)
SELECT upd.*, d.code AS district_code, d.name AS district_name
FROM upd LEFT JOIN district d ON d.id = upd.district_id
"""
#: The report's position is newer than the incident's: the live position never moves backwards
#: (as for the trail, ``add_trail``). A position without a time dates from its report.
_NEWER_SQL = (
    "(EXISTS (SELECT 1 FROM pt) AND (i.location IS NULL"
    " OR (SELECT at FROM pt) > coalesce(i.location_captured_at, i.received_at)))"
)
_FOLD_SQL = _FOLD_SQL.replace("{NEWER}", _NEWER_SQL)


async def fold_report(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    incident_id: uuid.UUID,
    actor: str,
    data: dict[str, Any],
    lat: float | None = None,
    lon: float | None = None,
    accuracy_m: float | None = None,
    captured_at: datetime | None = None,
) -> asyncpg.Record:
    """Join a repeated report to its open incident: flag it ``repeated``, add its position to
    the trail when it has one (and move the incident there if it is newer than its position),
    and put at most one entry per 10 s on the timeline."""
    row: asyncpg.Record = await conn.fetchrow(
        _FOLD_SQL, incident_id, actor, data, lat, lon, accuracy_m, captured_at
    )
    return row
