"""A walk home, as her phone and her guardians see it: start, trail, "I'm OK", extend, end.

The checks themselves are decided in PostgreSQL: ``safe_return_due`` (migration
0015_safe_return) gives a session's earliest check and its reason, and a trigger keeps
``next_check_at`` true on every write, so nothing here computes a timer; the sweeper
(``app/safe_return/sweeper.py``) raises what comes due."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.config import Settings
from app.errors import AppError, Conflict, Forbidden, NotFound
from app.incidents import alerts
from app.notifications.service import MAX_GUARDIANS, enqueue
from app.safe_return import links
from app.security.passwords import verify_secret

LIVE = ("active", "asking")
#: Where a walk's messages go: her phone's push, her guardians' texts.
ACTOR = "safe_return"


class OutsideServiceArea(AppError):
    status_code = 422


class ArrivalTimeInvalid(AppError):
    status_code = 422


class RouteInvalid(AppError):
    status_code = 422


class SessionAlreadyActive(Conflict):
    pass


class SessionEnded(Conflict):
    pass


class WalkViewClosed(AppError):
    status_code = 410


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float


@dataclass(frozen=True)
class StartRequest:
    destination: Point
    destination_label: str | None = None
    origin: Point | None = None
    expected_arrival_at: datetime | None = None
    route: tuple[Point, ...] = ()
    tell_guardians: bool = True
    share_with_control_centre: bool = False
    battery_pct: int | None = None


# --- start --------------------------------------------------------------------------------

_PLAN_SQL = """
WITH dest AS (SELECT ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography AS g),
route AS (
  SELECT CASE WHEN cardinality($5::float8[]) >= 2 THEN ST_SetSRID(ST_MakeLine(ARRAY(
    SELECT ST_MakePoint(lon, lat) FROM unnest($5::float8[], $6::float8[])
      WITH ORDINALITY AS p(lat, lon, n) ORDER BY n)), 4326)::geography END AS g
)
SELECT (SELECT d.id FROM district d, dest WHERE ST_Covers(d.boundary, dest.g::geometry)
        ORDER BY d.code LIMIT 1) AS district_id,
       CASE WHEN route.g IS NOT NULL THEN ST_Length(route.g)
            WHEN $3::float8 IS NOT NULL THEN
              ST_Distance(dest.g, ST_SetSRID(ST_MakePoint($4, $3), 4326)::geography)
       END AS distance_m,
       route.g IS NOT NULL AND NOT ST_DWithin(route.g, dest.g, $7) AS route_misses_destination
FROM dest, route
"""

_INSERT_SQL = """
INSERT INTO safe_return_session (
  id, member_id, status, share_with_control_centre, tell_guardians, destination,
  destination_label, district_id, route, expected_arrival_at, arrival_due_at, geofence_m,
  no_position_s, corridor_m, off_route_s, stationary_m, stationary_s, low_battery_pct, ask_s,
  battery_pct, last_position, last_point_at, anchor, anchor_at)
SELECT $1, $2, 'active', $3, $4, ST_SetSRID(ST_MakePoint($6, $5), 4326)::geography, $7, $8,
  CASE WHEN cardinality($9::float8[]) >= 2 THEN ST_SetSRID(ST_MakeLine(ARRAY(
    SELECT ST_MakePoint(lon, lat) FROM unnest($9::float8[], $10::float8[])
      WITH ORDINALITY AS p(lat, lon, n) ORDER BY n)), 4326)::geography END,
  $11::timestamptz, $11::timestamptz + make_interval(secs => $12::float8),
  $13, $14, $15, $16, $17, $18, $19, $20, $21,
  o.g, CASE WHEN o.g IS NOT NULL THEN now() END, o.g, CASE WHEN o.g IS NOT NULL THEN now() END
FROM (SELECT CASE WHEN $22::float8 IS NOT NULL
             THEN ST_SetSRID(ST_MakePoint($23, $22), 4326)::geography END AS g) o
ON CONFLICT (member_id) WHERE status IN ('active','asking') DO NOTHING
RETURNING id, started_at, expected_arrival_at, arrival_due_at, next_check_at
"""

_GUARDIANS_SQL = """
SELECT g.id, g.phone, m.name FROM member m JOIN guardian g ON g.member_id = m.id
WHERE m.id = $1 ORDER BY g.created_at LIMIT $2
"""


def _validate_points(req: StartRequest, settings: Settings) -> None:
    if len(req.route) > settings.safe_return_route_max_points:
        raise RouteInvalid(
            f"a route has at most {settings.safe_return_route_max_points} points"
            f" ({len(req.route)} sent); simplify it"
        )
    if len(req.route) == 1:
        raise RouteInvalid("a route needs at least two points")


async def start(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    member_id: uuid.UUID,
    req: StartRequest,
    now: datetime | None = None,
    conn: asyncpg.Connection | None = None,
) -> dict[str, Any]:
    """Check the plan, then write the session and the guardians' "set off" texts in one
    transaction (the caller's, when ``conn`` is given: a scouts booking starting its walk).
    Every refusal comes before anything is written."""
    now = now or datetime.now(UTC)
    _validate_points(req, settings)
    lats = [p.lat for p in req.route]
    lons = [p.lon for p in req.route]
    origin = req.origin or (req.route[0] if req.route else None)
    plan = await pool.fetchrow(
        _PLAN_SQL,
        req.destination.lat,
        req.destination.lon,
        origin.lat if origin else None,
        origin.lon if origin else None,
        lats,
        lons,
        settings.safe_return_geofence_m + settings.safe_return_corridor_m,
    )
    if plan["district_id"] is None:
        raise OutsideServiceArea("the destination is outside every district this service covers")
    if plan["route_misses_destination"]:
        raise RouteInvalid("the route does not reach the destination")
    latest = now + timedelta(seconds=settings.safe_return_max_duration_s)
    if req.expected_arrival_at is not None:
        eta = req.expected_arrival_at
        if eta.tzinfo is None:
            raise ArrivalTimeInvalid("expected_arrival_at needs a time zone")
        if eta <= now + timedelta(seconds=settings.safe_return_min_lead_s):
            raise ArrivalTimeInvalid(
                "expected_arrival_at is in the past"
                f" (or less than {settings.safe_return_min_lead_s:g} s ahead)"
            )
        if eta > latest:
            raise ArrivalTimeInvalid(
                f"expected_arrival_at is more than {settings.safe_return_max_duration_s / 3600:g}"
                " hours ahead; a walk home is monitored for that long at most"
            )
    else:
        if plan["distance_m"] is None:
            raise ArrivalTimeInvalid(
                "give expected_arrival_at, or an origin (or a route) to compute it from"
            )
        eta = now + timedelta(
            seconds=max(60.0, plan["distance_m"] / settings.safe_return_walking_mps)
        )
        if eta > latest:
            raise ArrivalTimeInvalid("the destination is too far to walk within the monitored time")

    session_id = uuid.uuid4()
    async with contextlib.AsyncExitStack() as stack:
        if conn is None:
            own: asyncpg.Connection = await stack.enter_async_context(pool.acquire())
            await stack.enter_async_context(own.transaction())
            conn = own
        row = await conn.fetchrow(
            _INSERT_SQL,
            session_id,
            member_id,
            req.share_with_control_centre,
            req.tell_guardians,
            req.destination.lat,
            req.destination.lon,
            req.destination_label,
            plan["district_id"],
            lats,
            lons,
            eta,
            settings.safe_return_grace_s,
            settings.safe_return_geofence_m,
            settings.safe_return_no_position_s,
            settings.safe_return_corridor_m,
            settings.safe_return_off_route_s,
            settings.safe_return_stationary_m,
            settings.safe_return_stationary_s,
            settings.safe_return_low_battery_pct,
            settings.safe_return_ask_s,
            req.battery_pct,
            req.origin.lat if req.origin else None,
            req.origin.lon if req.origin else None,
        )
        if row is None:
            raise SessionAlreadyActive("you already have a walk home running; end it first")
        guardians = 0
        if req.tell_guardians:
            local = eta.astimezone(_tz(settings)).strftime("%H:%M")
            guardians = await tell_guardians(
                conn,
                settings,
                session_id=session_id,
                member_id=member_id,
                part="set_off",
                text="{name} has set off home and expects to arrive by " + local + ".",
                link=True,
            )
    return {
        "session_id": str(session_id),
        "status": "active",
        "started_at": row["started_at"].isoformat(),
        "expected_arrival_at": row["expected_arrival_at"].isoformat(),
        "arrival_due_at": row["arrival_due_at"].isoformat(),
        "guardians_told": guardians,
        "share_with_control_centre": req.share_with_control_centre,
    }


def _tz(settings: Settings) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(settings.local_timezone)


async def tell_guardians(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    session_id: uuid.UUID,
    member_id: uuid.UUID,
    part: str,
    text: str,
    link: bool = False,
) -> int:
    """Queue one text to each of her guardians (in the caller's transaction); ``{name}`` in
    ``text`` is her name. Kick the sender after the commit."""
    guardians = await conn.fetch(_GUARDIANS_SQL, member_id, MAX_GUARDIANS)
    queued = 0
    for g in guardians:
        target = f"guardian:{g['id']}"
        queued += await enqueue(
            conn,
            incident_id=None,
            safe_return_id=session_id,
            channel="sms",
            target=target,
            message={
                "type": f"walk_{part}",
                "phone": g["phone"],
                "text": text.format(name=g["name"]),
                "session_id": str(session_id),
                **({"walk_view": True} if link else {}),
            },
            dedupe_key=f"walk:{session_id}:{part}:{target}",
            deadline_s=settings.notify_deadline_s,
        )
    return queued


# --- the trail -------------------------------------------------------------------------------

_TRAIL_SQL = """
WITH s AS (
  SELECT * FROM safe_return_session WHERE id = $1 AND member_id = $2 FOR UPDATE
), pts AS (
  SELECT ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)::geography AS g, p.accuracy_m,
         p.captured_at, least(coalesce(p.captured_at, now()), now()) AS at, p.n
  FROM unnest($3::float8[], $4::float8[], $5::float8[], $6::timestamptz[])
    WITH ORDINALITY AS p(lat, lon, accuracy_m, captured_at, n)
), ins AS (
  INSERT INTO safe_return_point (session_id, geog, accuracy_m, captured_at)
  SELECT s.id, pts.g, pts.accuracy_m, pts.captured_at FROM s, pts
  WHERE s.status IN ('active','asking','sos')
  RETURNING session_id
), latest AS (
  SELECT g, at FROM pts ORDER BY at DESC, n DESC LIMIT 1
), f AS (
  -- A late batch (buffered while she was offline) fills the trail but never moves her back.
  SELECT latest.g, latest.at, s.last_point_at IS NULL OR latest.at >= s.last_point_at AS fresh,
         s.status IN ('active','asking') AND EXISTS (
           SELECT 1 FROM pts WHERE ST_DWithin(pts.g, s.destination, s.geofence_m)) AS home
  FROM s, latest WHERE s.status IN ('active','asking','sos')
), upd AS (
  UPDATE safe_return_session t SET
    last_position = CASE WHEN f.fresh THEN f.g ELSE t.last_position END,
    last_point_at = CASE WHEN f.fresh THEN f.at ELSE t.last_point_at END,
    battery_pct = coalesce($7::int, t.battery_pct),
    off_route_since = CASE
      WHEN NOT f.fresh OR t.route IS NULL THEN t.off_route_since
      WHEN ST_DWithin(f.g, t.route, t.corridor_m) THEN NULL
      ELSE coalesce(t.off_route_since, f.at) END,
    anchor = CASE WHEN f.fresh AND (t.anchor IS NULL
                  OR NOT ST_DWithin(t.anchor, f.g, t.stationary_m))
             THEN f.g ELSE t.anchor END,
    anchor_at = CASE WHEN f.fresh AND (t.anchor IS NULL
                     OR NOT ST_DWithin(t.anchor, f.g, t.stationary_m))
                THEN f.at ELSE t.anchor_at END,
    status = CASE WHEN f.home THEN 'arrived' ELSE t.status END,
    ended_at = CASE WHEN f.home THEN now() ELSE t.ended_at END,
    updated_at = now()
  FROM f
  WHERE t.id = $1
  RETURNING t.status, t.next_check_at
)
SELECT s.status AS before, s.member_status, s.incident_id, s.tell_guardians,
       (SELECT status FROM upd) AS after, (SELECT next_check_at FROM upd) AS next_check_at,
       (SELECT count(*) FROM ins) AS stored
FROM s
"""


@dataclass(frozen=True)
class TrailPoint:
    lat: float
    lon: float
    accuracy_m: float | None = None
    captured_at: datetime | None = None


async def add_trail(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    member_id: uuid.UUID,
    session_id: uuid.UUID,
    points: list[TrailPoint],
    battery_pct: int | None = None,
) -> dict[str, Any]:
    """Store the points, move her position and the checks' clocks, and end the session when a
    point is inside the destination's geofence (her guardians are told). After an SOS the
    points go on to the incident's trail too."""
    args = (
        [p.lat for p in points],
        [p.lon for p in points],
        [p.accuracy_m for p in points],
        [p.captured_at for p in points],
    )
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_TRAIL_SQL, session_id, member_id, *args, battery_pct)
        if row is None:
            raise NotFound("no such walk")
        if row["after"] is None:
            # Over (arrived or ended): the points are not kept, and the answer is the one a
            # walk ended under duress gives (whose points are kept): nothing tells them apart.
            return {"session_id": str(session_id), "status": row["before"], "stored": len(points)}
        arrived = row["before"] in LIVE and row["after"] == "arrived"
        if arrived and row["tell_guardians"]:
            await tell_guardians(
                conn,
                settings,
                session_id=session_id,
                member_id=member_id,
                part="arrived",
                text="{name} has arrived home safely.",
            )
    if row["incident_id"] is not None and points:
        # After an SOS (a duress one included, which her phone cannot know of) police need every
        # position she sends.
        # (Closed or gone: the session's own trail still has them.)
        with contextlib.suppress(Conflict, NotFound):
            await alerts.add_trail(
                pool=pool,
                member_id=member_id,
                incident_id=row["incident_id"],
                points=[
                    alerts.TrailPoint(p.lat, p.lon, p.accuracy_m, p.captured_at) for p in points
                ],
            )
    status = row["member_status"] or row["after"]
    return {"session_id": str(session_id), "status": status, "stored": len(points)}


# --- "I'm OK", extend, end -------------------------------------------------------------------

_LOCK_SQL = """
SELECT s.id, s.status, s.member_status, s.check_reason, s.incident_id, s.tell_guardians,
       m.pin_hash, m.duress_pin_hash, m.wrong_pin_count,
       ceil(extract(epoch FROM m.pin_locked_until - now()))::int AS locked_for_s
FROM safe_return_session s JOIN member m ON m.id = s.member_id
WHERE s.id = $1 AND s.member_id = $2 FOR UPDATE OF s, m
"""
# Wrong PINs count with her SOS cancel's and her home's disarm (one counter): after
# ``cancel_pin_lockout_after`` in a row every PIN is refused for ``cancel_pin_lockout_s``.
_WRONG_PIN_SQL = """
UPDATE member SET wrong_pin_count = wrong_pin_count + 1,
  pin_locked_until = CASE WHEN wrong_pin_count + 1 >= $2
    THEN now() + make_interval(secs => $3::float8) ELSE pin_locked_until END
WHERE id = $1
"""
_OK_SQL = """
UPDATE safe_return_session SET status = 'active', check_reason = NULL, asked_at = NULL,
  ok_at = now(),
  arrival_due_at = CASE WHEN check_reason = 'no_arrival'
                        THEN greatest(arrival_due_at, now() + make_interval(secs => $2::float8))
                        ELSE arrival_due_at END,
  updated_at = now()
WHERE id = $1
RETURNING status, arrival_due_at, next_check_at
"""


@dataclass(frozen=True)
class Answer:
    body: dict[str, Any]
    #: The duress PIN was given: the sweeper's escalation is to run for this session now.
    duress: bool = False
    #: Her PINs are locked out (too many wrong ones): seconds until they are not.
    locked_for_s: int | None = None


async def _pin_gate(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    member_id: uuid.UUID,
    session_id: uuid.UUID,
    pin: str,
    member_status: str,
) -> tuple[asyncpg.Record, Answer | None, bool]:
    """Lock her walk and check her PIN against the lockout shared with her SOS cancels: the
    walk, a refusal to return (a wrong PIN, or any PIN while locked out: her duress PIN then
    still raises its silent SOS) or None, and whether it was her duress PIN."""
    from app.safe_return import sweeper

    row = await conn.fetchrow(_LOCK_SQL, session_id, member_id)
    if row is None:
        raise NotFound("no such walk")
    is_pin, is_duress = await _verify(row, pin)
    locked_for_s = row["locked_for_s"]
    if locked_for_s is not None and locked_for_s > 0:
        if is_duress and row["status"] in LIVE:
            await sweeper.escalate(
                conn, settings, session_id=session_id, reason="duress", member_status=member_status
            )
        await _security_event(conn, "walk_pin_locked_out", member_id, session_id)
        return row, Answer(body={}, duress=is_duress, locked_for_s=locked_for_s), is_duress
    if not (is_pin or is_duress):
        await conn.execute(
            _WRONG_PIN_SQL,
            member_id,
            settings.cancel_pin_lockout_after,
            settings.cancel_pin_lockout_s,
        )
        await _security_event(conn, "wrong_walk_pin", member_id, session_id)
        return row, Answer(body={}), False
    if row["wrong_pin_count"] or locked_for_s is not None:
        await conn.execute(
            "UPDATE member SET wrong_pin_count = 0, pin_locked_until = NULL WHERE id = $1",
            member_id,
        )
    return row, None, is_duress


async def _verify(row: asyncpg.Record, pin: str) -> tuple[bool, bool]:
    # Both hashes, always: the duress PIN costs the same time as her real one.
    is_pin, is_duress = await asyncio.gather(
        asyncio.to_thread(verify_secret, row["pin_hash"], pin),
        asyncio.to_thread(verify_secret, row["duress_pin_hash"], pin),
    )
    return is_pin, is_duress


async def answer_ok(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    member_id: uuid.UUID,
    session_id: uuid.UUID,
    pin: str,
) -> Answer:
    """Her answer to "Are you OK?" (or an "I'm OK" before anyone asked). Her PIN clears the
    check (an arrival check gives her the grace again); her duress PIN answers exactly the
    same, and raises a silent SOS (``sweeper.escalate``)."""
    from app.safe_return import sweeper

    async with pool.acquire() as conn, conn.transaction():
        row, refused, is_duress = await _pin_gate(
            conn,
            settings,
            member_id=member_id,
            session_id=session_id,
            pin=pin,
            member_status="active",
        )
        if refused is not None:
            return refused
        seen = row["member_status"] or row["status"]
        if seen not in LIVE:
            raise SessionEnded(f"this walk has {seen}")
        if is_duress:
            if row["status"] in LIVE:
                await sweeper.escalate(
                    conn, settings, session_id=session_id, reason="duress", member_status="active"
                )
            return Answer(body={"session_id": str(session_id), "status": "active"}, duress=True)
        if row["status"] not in LIVE:
            # Her real PIN after her duress PIN: still under duress as far as police know.
            return Answer(body={"session_id": str(session_id), "status": "active"})
        await conn.fetchrow(_OK_SQL, session_id, settings.safe_return_grace_s)
    return Answer(body={"session_id": str(session_id), "status": "active"})


async def _security_event(
    conn: asyncpg.Connection, kind: str, member_id: uuid.UUID, session_id: uuid.UUID
) -> None:
    await conn.execute(
        "INSERT INTO security_event (kind, member_id, detail) VALUES ($1, $2, $3)",
        kind,
        member_id,
        {"session_id": str(session_id)},
    )


async def end(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    member_id: uuid.UUID,
    session_id: uuid.UUID,
    pin: str,
) -> Answer:
    """She ends the walk with her PIN (her guardians are told); her duress PIN answers the
    same, and raises a silent SOS instead."""
    from app.safe_return import sweeper

    async with pool.acquire() as conn, conn.transaction():
        row, refused, is_duress = await _pin_gate(
            conn,
            settings,
            member_id=member_id,
            session_id=session_id,
            pin=pin,
            member_status="ended",
        )
        if refused is not None:
            return refused
        seen = row["member_status"] or row["status"]
        body = {"session_id": str(session_id), "status": "ended"}
        if seen not in LIVE:
            raise SessionEnded(f"this walk has {seen}")
        if is_duress or row["status"] not in LIVE:
            if row["status"] in LIVE:
                await sweeper.escalate(
                    conn, settings, session_id=session_id, reason="duress", member_status="ended"
                )
            else:
                await conn.execute(
                    "UPDATE safe_return_session SET member_status = 'ended' WHERE id = $1",
                    session_id,
                )
            return Answer(body=body, duress=is_duress)
        await conn.execute(
            "UPDATE safe_return_session SET status = 'ended', ended_at = now(), updated_at = now()"
            " WHERE id = $1",
            session_id,
        )
        if row["tell_guardians"]:
            await tell_guardians(
                conn,
                settings,
                session_id=session_id,
                member_id=member_id,
                part="ended",
                text="{name} has ended her walk home.",
            )
    return Answer(body=body)


_EXTEND_SQL = """
UPDATE safe_return_session SET
  expected_arrival_at = expected_arrival_at + make_interval(secs => $3::float8),
  arrival_due_at = arrival_due_at + make_interval(secs => $3::float8),
  updated_at = now()
WHERE id = $1 AND member_id = $2 AND status IN ('active','asking')
  AND expected_arrival_at + make_interval(secs => $3::float8)
      <= started_at + make_interval(secs => $4::float8)
RETURNING expected_arrival_at, arrival_due_at
"""


async def extend(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    member_id: uuid.UUID,
    session_id: uuid.UUID,
    minutes: int,
) -> dict[str, Any]:
    """She needs longer: the arrival time and its check move on (within the monitored time)."""
    row = await pool.fetchrow(
        _EXTEND_SQL, session_id, member_id, minutes * 60.0, settings.safe_return_max_duration_s
    )
    if row is None:
        existing = await pool.fetchrow(
            "SELECT status, member_status FROM safe_return_session"
            " WHERE id = $1 AND member_id = $2",
            session_id,
            member_id,
        )
        if existing is None:
            raise NotFound("no such walk")
        seen = existing["member_status"] or existing["status"]
        if seen not in LIVE:
            raise SessionEnded(f"this walk has {seen}")
        if existing["status"] not in LIVE:
            # Under duress: answer as if it was extended (police have it already).
            return {"session_id": str(session_id), "status": "active"}
        raise ArrivalTimeInvalid(
            "that would go past the longest time a walk home is monitored; end it and start again"
        )
    return {
        "session_id": str(session_id),
        "status": "active",
        "expected_arrival_at": row["expected_arrival_at"].isoformat(),
        "arrival_due_at": row["arrival_due_at"].isoformat(),
    }


# --- views -----------------------------------------------------------------------------------

_VIEW_SQL = """
SELECT s.id, s.status, s.member_status, s.check_reason, s.asked_at, s.next_check_at,
       s.started_at, s.expected_arrival_at, s.arrival_due_at, s.ended_at, s.incident_id,
       s.destination_label, s.share_with_control_centre, s.tell_guardians,
       ST_Y(s.destination::geometry) AS dest_lat, ST_X(s.destination::geometry) AS dest_lon,
       ST_Y(s.last_position::geometry) AS lat, ST_X(s.last_position::geometry) AS lon,
       s.last_point_at, s.ask_s
FROM safe_return_session s WHERE s.id = $1 AND s.member_id = $2
"""


def _point(lat: float | None, lon: float | None) -> dict[str, float] | None:
    return {"lat": lat, "lon": lon} if lat is not None and lon is not None else None


async def view(
    pool: asyncpg.Pool, *, member_id: uuid.UUID, session_id: uuid.UUID
) -> dict[str, Any]:
    """Her own view. Under duress it shows what she would have seen (answered, or ended)."""
    row = await pool.fetchrow(_VIEW_SQL, session_id, member_id)
    if row is None:
        raise NotFound("no such walk")
    duress = row["member_status"] is not None
    status = row["member_status"] or row["status"]
    asking = status == "asking"
    return {
        "session_id": str(row["id"]),
        "status": status,
        "check": {
            "reason": row["check_reason"],
            "asked_at": row["asked_at"].isoformat(),
            "answer_by": row["next_check_at"].isoformat(),
        }
        if asking and row["asked_at"] and row["next_check_at"]
        else None,
        "started_at": row["started_at"].isoformat(),
        "expected_arrival_at": row["expected_arrival_at"].isoformat(),
        "arrival_due_at": row["arrival_due_at"].isoformat(),
        "ended_at": None if duress or row["ended_at"] is None else row["ended_at"].isoformat(),
        "destination": _point(row["dest_lat"], row["dest_lon"]),
        "destination_label": row["destination_label"],
        "incident_id": None if duress or row["incident_id"] is None else str(row["incident_id"]),
        "share_with_control_centre": row["share_with_control_centre"],
    }


_WALK_VIEW_SQL = """
SELECT s.id, s.status, s.member_status, s.started_at, s.expected_arrival_at, s.ended_at,
       s.destination_label, s.incident_id, s.tell_guardians,
       ST_Y(s.destination::geometry) AS dest_lat, ST_X(s.destination::geometry) AS dest_lon,
       ST_Y(s.last_position::geometry) AS lat, ST_X(s.last_position::geometry) AS lon,
       s.last_point_at, m.name
FROM safe_return_session s JOIN member m ON m.id = s.member_id
JOIN guardian g ON g.member_id = s.member_id AND g.id = $2
WHERE s.id = $1
"""
_WALK_TRAIL_SQL = """
SELECT lat, lon, accuracy_m, captured_at FROM (
  SELECT ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon, accuracy_m,
         coalesce(captured_at, received_at) AS captured_at, id
  FROM safe_return_point WHERE session_id = $1 ORDER BY id DESC LIMIT 200
) t ORDER BY id
"""


async def guardian_view(pool: asyncpg.Pool, settings: Settings, *, token: str) -> dict[str, Any]:
    """A guardian's link: her live position and trail while the walk runs (every read logged);
    410 once it is over (an SOS is followed on the incident's own link)."""
    ids = links.read_walk_token(settings, token)
    if ids is None:
        raise NotFound("no such link")
    session_id, guardian_id = ids
    row = await pool.fetchrow(_WALK_VIEW_SQL, session_id, guardian_id)
    if row is None or not row["tell_guardians"]:
        raise NotFound("no such link")
    status = row["member_status"] or row["status"]
    if status not in LIVE:
        raise WalkViewClosed(f"her walk home has {status}")
    async with pool.acquire() as conn, conn.transaction():
        trail = await conn.fetch(_WALK_TRAIL_SQL, session_id)
        await conn.execute(
            "INSERT INTO safe_return_access (session_id, guardian_id, reason)"
            " VALUES ($1, $2, 'guardian_view')",
            session_id,
            guardian_id,
        )
    return {
        "session_id": str(session_id),
        "name": row["name"],
        "status": status,
        "started_at": row["started_at"].isoformat(),
        "expected_arrival_at": row["expected_arrival_at"].isoformat(),
        "destination": _point(row["dest_lat"], row["dest_lon"]),
        "destination_label": row["destination_label"],
        "location": {
            **(_point(row["lat"], row["lon"]) or {}),
            "captured_at": row["last_point_at"].isoformat() if row["last_point_at"] else None,
        }
        if row["lat"] is not None
        else None,
        "trail": [
            {
                "lat": t["lat"],
                "lon": t["lon"],
                "accuracy_m": t["accuracy_m"],
                "captured_at": t["captured_at"].isoformat(),
            }
            for t in trail
        ],
    }


# --- the console -----------------------------------------------------------------------------

_COUNTS_SQL = """
SELECT d.id, d.code, d.name, count(*) AS active
FROM safe_return_session s JOIN district d ON d.id = s.district_id
WHERE s.status IN ('active','asking') AND ($1 OR s.district_id = ANY($2::uuid[]))
GROUP BY d.id, d.code, d.name ORDER BY d.code
"""
_SHOWN_SQL = """
SELECT s.id, s.status, s.check_reason, s.asked_at, s.started_at, s.expected_arrival_at,
       s.arrival_due_at, s.incident_id, s.share_with_control_centre, s.ended_at, d.code,
       s.destination_label,
       ST_Y(s.destination::geometry) AS dest_lat, ST_X(s.destination::geometry) AS dest_lon,
       ST_Y(s.last_position::geometry) AS lat, ST_X(s.last_position::geometry) AS lon,
       s.last_point_at
FROM safe_return_session s JOIN district d ON d.id = s.district_id
WHERE ($1 OR s.district_id = ANY($2::uuid[]))
  AND ((s.status IN ('active','asking') AND s.share_with_control_centre)
       OR (s.status = 'sos' AND s.ended_at > now() - make_interval(secs => $3::float8)))
ORDER BY s.status = 'sos' DESC, s.started_at
LIMIT 500
"""
#: How long a walk that became an SOS stays on the console's list, highlighted.
SOS_SHOWN_S = 6 * 3600.0


async def console_view(
    pool: asyncpg.Pool,
    *,
    staff_id: uuid.UUID,
    city_wide: bool,
    district_ids: frozenset[uuid.UUID],
) -> dict[str, Any]:
    """The district's walks: how many are running, each one she shared with the control centre
    on the map (every such read is logged), and the walks that became an SOS (highlighted, with
    their incident; a position only if she shared it)."""
    scope = list(district_ids)
    async with pool.acquire() as conn, conn.transaction():
        counts = await conn.fetch(_COUNTS_SQL, city_wide, scope)
        shown = await conn.fetch(_SHOWN_SQL, city_wide, scope, SOS_SHOWN_S)
        read = [r["id"] for r in shown if r["share_with_control_centre"] and r["lat"] is not None]
        if read:
            await conn.executemany(
                "INSERT INTO safe_return_access (session_id, staff_id, reason)"
                " VALUES ($1, $2, 'console')",
                [(sid, staff_id) for sid in read],
            )
    return {
        "active": sum(r["active"] for r in counts),
        "districts": [
            {"code": r["code"], "name": r["name"], "active": r["active"]} for r in counts
        ],
        "sessions": [
            {
                "session_id": str(r["id"]),
                "status": r["status"],
                "sos": r["status"] == "sos",
                "check_reason": r["check_reason"],
                "district": r["code"],
                "incident_id": str(r["incident_id"]) if r["incident_id"] else None,
                "started_at": r["started_at"].isoformat(),
                "expected_arrival_at": r["expected_arrival_at"].isoformat(),
                "shared": r["share_with_control_centre"],
                "destination": _point(r["dest_lat"], r["dest_lon"])
                if r["share_with_control_centre"]
                else None,
                "destination_label": r["destination_label"]
                if r["share_with_control_centre"]
                else None,
                "location": _point(r["lat"], r["lon"]) if r["share_with_control_centre"] else None,
                "last_point_at": r["last_point_at"].isoformat()
                if r["share_with_control_centre"] and r["last_point_at"]
                else None,
            }
            for r in shown
        ],
    }


_DUE_OF_SQL = "SELECT (safe_return_due(s)).* FROM safe_return_session s WHERE id = $1"


async def due_check(pool: asyncpg.Pool, session_id: uuid.UUID) -> tuple[datetime, str]:
    """The session's earliest check and its reason (for tests and the console)."""
    row = await pool.fetchrow(_DUE_OF_SQL, session_id)
    if row is None:
        raise NotFound("no such walk")
    return row["due_at"], row["reason"]


__all__ = [
    "Answer",
    "ArrivalTimeInvalid",
    "Forbidden",
    "OutsideServiceArea",
    "RouteInvalid",
    "SessionAlreadyActive",
    "SessionEnded",
    "StartRequest",
]
