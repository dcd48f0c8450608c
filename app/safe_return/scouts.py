"""Safe Return Scouts: pairs of volunteers who meet her at a subway exit and walk her home.

She (or a call-taker at 120 or a district office, for someone without the app) books a meeting
point, a time and a destination; a team is assigned (the least loaded that evening, then the
nearest to the meeting point at that time: its base, or where its previous escort ended); both
scouts and she are told; a one-time code on her app and theirs lets her check it is them. The
walk is a safe-return session (``service.start``) with the scouts attached: an SOS during it
names them and assigns them to the incident. Scouts not at the meeting point in time are a
no-show (``sweep``).

Every refusal comes before anything is written, and a refusal for time or capacity says the
next slot that is free. Bookings in one district are serialised on its teams' rows, so two
bookings racing for the last team get one team and one refusal."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from app.config import Settings
from app.errors import AppError, Conflict, Forbidden, NotFound
from app.geo.nearest import district_at
from app.notifications.service import enqueue
from app.safe_return import service as walks
from app.safe_return.service import LIVE, OutsideServiceArea, Point

LIVE_BOOKING = ("booked", "walking")
#: Seoul's programme: Monday 22:00-24:00, Tuesday to Friday 22:00-01:00, no weekends.
SEOUL_HOURS: tuple[tuple[int, time, time], ...] = (
    (0, time(22), time(0)),
    *((d, time(22), time(1)) for d in range(1, 5)),
)
#: Shown where a scout has no photo on file.
PHOTO_PLACEHOLDER = "/static/web/scout-placeholder.svg"


class BookingRefused(AppError):
    """A refusal that says when the next free slot is (``next_free_at``; None: none within the
    days bookings are taken for)."""

    status_code = 422

    def __init__(self, detail: str, *, next_free_at: datetime | None = None) -> None:
        super().__init__(detail)
        self.next_free_at = next_free_at
        self.extra = {"next_free_at": next_free_at.isoformat() if next_free_at else None}


class OutsideServiceHours(BookingRefused):
    pass


class BookingTooLate(BookingRefused):
    pass


class NoScoutTeamFree(BookingRefused):
    status_code = 409


class OutsideDistrict(AppError):
    status_code = 422


class BookingTimeInvalid(AppError):
    status_code = 422


class BookingAlreadyActive(Conflict):
    pass


class CodeMismatch(AppError):
    status_code = 422


@dataclass(frozen=True)
class Booker:
    """Who books: her (``member_id``), or a call-taker for a guest without the app."""

    via: str = "app"
    member_id: uuid.UUID | None = None
    guest_name: str | None = None
    guest_phone: str | None = None
    staff_id: uuid.UUID | None = None
    #: The call-taker's districts (None: her own booking, any district).
    scope: frozenset[uuid.UUID] | None = None
    city_wide: bool = False


@dataclass(frozen=True)
class BookingRequest:
    meeting_point: Point
    meet_at: datetime
    destination: Point
    meeting_label: str | None = None
    destination_label: str | None = None


@dataclass(frozen=True)
class Window:
    """One evening's service: meetings from ``opens_at`` until ``closes_at``."""

    evening: date
    opens_at: datetime
    closes_at: datetime


def _tz(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.local_timezone)


def windows(
    hours: dict[int, tuple[time, time]],
    closed: set[date],
    tz: ZoneInfo,
    start: datetime,
    days: int,
) -> list[Window]:
    """The district's evenings from the one before ``start`` for ``days`` days (an evening
    that closes after midnight covers the small hours of the next day)."""
    first = start.astimezone(tz).date() - timedelta(days=1)
    out = []
    for n in range(days + 2):
        day = first + timedelta(days=n)
        if day.weekday() not in hours or day in closed:
            continue
        opens, closes = hours[day.weekday()]
        opens_at = datetime.combine(day, opens, tz)
        closes_at = datetime.combine(day, closes, tz)
        if closes_at <= opens_at:
            closes_at += timedelta(days=1)
        out.append(Window(day, opens_at, closes_at))
    return out


def window_of(ws: list[Window], at: datetime) -> Window | None:
    return next((w for w in ws if w.opens_at <= at < w.closes_at), None)


# --- reading the district's rules ---------------------------------------------------------

_RULES_SQL = """
SELECT sd.min_lead_s, sd.active,
       coalesce((SELECT array_agg(weekday ORDER BY weekday) FROM scout_hours h
                 WHERE h.district_id = sd.district_id), '{}') AS weekdays,
       coalesce((SELECT array_agg(opens ORDER BY weekday) FROM scout_hours h
                 WHERE h.district_id = sd.district_id), '{}') AS opens,
       coalesce((SELECT array_agg(closes ORDER BY weekday) FROM scout_hours h
                 WHERE h.district_id = sd.district_id), '{}') AS closes,
       coalesce((SELECT array_agg(day) FROM scout_closed_day c
                 WHERE (c.district_id = sd.district_id OR c.district_id IS NULL)
                   AND c.day BETWEEN $2::date AND $3::date), '{}') AS closed
FROM scout_district sd WHERE sd.district_id = $1
"""


@dataclass(frozen=True)
class Rules:
    district_id: uuid.UUID
    district_code: str
    district_name: str
    min_lead_s: float
    windows: list[Window]


async def _rules(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: Settings,
    *,
    lat: float,
    lon: float,
    now: datetime,
) -> Rules:
    district = await district_at(conn, lat=lat, lon=lon)
    tz = _tz(settings)
    days = settings.scout_max_days_ahead
    today = now.astimezone(tz).date()
    row = None
    if district is not None:
        row = await conn.fetchrow(
            _RULES_SQL, district.id, today - timedelta(days=1), today + timedelta(days=days + 1)
        )
    if district is None or row is None or not row["active"]:
        raise OutsideServiceArea("Safe Return Scouts do not serve this meeting point")
    hours = {
        wd: (o, c) for wd, o, c in zip(row["weekdays"], row["opens"], row["closes"], strict=True)
    }
    return Rules(
        district.id,
        district.code,
        district.name,
        row["min_lead_s"],
        windows(hours, set(row["closed"]), tz, now, days),
    )


# --- which team -----------------------------------------------------------------------------

_LOCK_TEAMS_SQL = (
    "SELECT id FROM scout_team WHERE district_id = $1 AND active ORDER BY id FOR UPDATE"
)
# The free teams for [meet_at, ends_at), best first: the least loaded that evening, then the
# nearest to the meeting point at that time (where its previous escort ends, or its base).
_PICK_SQL = """
WITH m AS (SELECT ST_SetSRID(ST_MakePoint($4, $3), 4326)::geography AS g)
SELECT t.id, t.name,
  (SELECT count(*) FROM scout_booking b WHERE b.team_id = t.id
     AND b.status IN ('booked','walking','completed')
     AND b.meet_at >= $7 AND b.meet_at < $8) AS load,
  ST_Distance(coalesce(
     (SELECT b.destination FROM scout_booking b WHERE b.team_id = t.id
        AND b.status IN ('booked','walking','completed') AND b.destination IS NOT NULL
        AND b.ends_at <= $5 AND b.meet_at >= $7 ORDER BY b.ends_at DESC LIMIT 1),
     t.base), m.g) AS distance_m
FROM scout_team t, m
WHERE t.district_id = $1 AND t.active AND $2::smallint = ANY(t.weekdays)
  AND t.id <> ALL($9::uuid[])
  AND NOT EXISTS (SELECT 1 FROM scout_booking b WHERE b.team_id = t.id
                    AND b.status IN ('booked','walking') AND b.meet_at < $6 AND b.ends_at > $5)
ORDER BY load, distance_m, t.name
LIMIT 1
"""
# The first candidate time at which some team is free (the next slot a refusal offers).
_FIRST_FREE_SQL = """
SELECT c.at FROM unnest($2::timestamptz[], $3::smallint[]) WITH ORDINALITY AS c(at, weekday, n)
WHERE EXISTS (
  SELECT 1 FROM scout_team t
  WHERE t.district_id = $1 AND t.active AND c.weekday = ANY(t.weekdays)
    AND NOT EXISTS (SELECT 1 FROM scout_booking b WHERE b.team_id = t.id
                      AND b.status IN ('booked','walking')
                      AND b.meet_at < c.at + make_interval(secs => $4::float8)
                      AND b.ends_at > c.at))
ORDER BY c.n LIMIT 1
"""


def _slot_s(settings: Settings, distance_m: float) -> float:
    return distance_m / settings.safe_return_walking_mps + settings.scout_turnaround_s


async def next_free(
    conn: asyncpg.Connection | asyncpg.Pool,
    settings: Settings,
    rules: Rules,
    *,
    after: datetime,
    slot_s: float,
    now: datetime,
) -> datetime | None:
    """The first meeting time from ``after`` (and at least the lead time from now) inside the
    district's hours at which a team is free."""
    step = timedelta(seconds=settings.scout_slot_step_s)
    earliest = max(after, now + timedelta(seconds=rules.min_lead_s))
    latest = now + timedelta(days=settings.scout_max_days_ahead)
    times: list[datetime] = []
    weekdays: list[int] = []
    for w in rules.windows:
        t = w.opens_at
        if t < earliest:
            # The first step of this evening's grid at or after the earliest time.
            t += step * -((w.opens_at - earliest) // step)
        while t < w.closes_at and t <= latest:
            times.append(t)
            weekdays.append(w.evening.weekday())
            t += step
    if not times:
        return None
    found: datetime | None = await conn.fetchval(
        _FIRST_FREE_SQL, rules.district_id, times, weekdays, slot_s
    )
    return found


# --- booking ----------------------------------------------------------------------------------

_PLAN_SQL = """
SELECT ST_Distance(ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography,
                   ST_SetSRID(ST_MakePoint($4, $3), 4326)::geography) AS distance_m
"""
_INSERT_SQL = """
INSERT INTO scout_booking (id, member_id, guest_name, guest_phone, booked_via,
  booked_by_staff_id, district_id, team_id, meet_at, ends_at, meeting_point, meeting_label,
  destination, destination_label, code)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
  ST_SetSRID(ST_MakePoint($12, $11), 4326)::geography, $13,
  ST_SetSRID(ST_MakePoint($15, $14), 4326)::geography, $16, $17)
ON CONFLICT DO NOTHING
RETURNING id
"""


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def _hhmm(settings: Settings, at: datetime) -> str:
    return at.astimezone(_tz(settings)).strftime("%a %H:%M")


async def book(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    req: BookingRequest,
    booker: Booker,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Check the booking against the district's rules, assign a team and tell everyone, in one
    transaction; every refusal comes first, and nothing is written for it."""
    now = now or datetime.now(UTC)
    if req.meet_at.tzinfo is None:
        raise BookingTimeInvalid("meet_at needs a time zone")
    rules = await _rules(
        pool, settings, lat=req.meeting_point.lat, lon=req.meeting_point.lon, now=now
    )
    if booker.scope is not None and not (booker.city_wide or rules.district_id in booker.scope):
        raise Forbidden(f"{rules.district_name} is not one of your districts")
    dest = await district_at(pool, lat=req.destination.lat, lon=req.destination.lon)
    if dest is None or dest.id != rules.district_id:
        raise OutsideDistrict(
            f"the destination is outside {rules.district_name}: scouts walk within their"
            " district (book a walk-me-home session instead)"
        )
    distance_m = await pool.fetchval(
        _PLAN_SQL,
        req.meeting_point.lat,
        req.meeting_point.lon,
        req.destination.lat,
        req.destination.lon,
    )
    slot_s = _slot_s(settings, distance_m)
    meet_at = req.meet_at
    if meet_at > now + timedelta(days=settings.scout_max_days_ahead):
        raise BookingTimeInvalid(
            f"bookings are taken at most {settings.scout_max_days_ahead} days ahead"
        )
    if meet_at < now + timedelta(seconds=rules.min_lead_s):
        raise BookingTooLate(
            f"{rules.district_name} takes bookings at least {rules.min_lead_s / 60:g} minutes"
            " ahead",
            next_free_at=await next_free(
                pool, settings, rules, after=meet_at, slot_s=slot_s, now=now
            ),
        )
    window = window_of(rules.windows, meet_at)
    if window is None:
        raise OutsideServiceHours(
            f"no scouts in {rules.district_name} at {_hhmm(settings, meet_at)}"
            " (evenings only; no weekends or holidays)",
            next_free_at=await next_free(
                pool, settings, rules, after=meet_at, slot_s=slot_s, now=now
            ),
        )
    if booker.member_id is not None and await pool.fetchval(
        "SELECT true FROM scout_booking WHERE member_id = $1 AND status IN ('booked','walking')",
        booker.member_id,
    ):
        raise BookingAlreadyActive("you already have a scouts booking; cancel it first")

    booking_id = uuid.uuid4()
    ends_at = meet_at + timedelta(seconds=slot_s)
    code = new_code()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(_LOCK_TEAMS_SQL, rules.district_id)
        team = await _pick(conn, rules, window, req, meet_at, ends_at)
        if team is None:
            raise NoScoutTeamFree(
                f"every scout team in {rules.district_name} is booked at"
                f" {_hhmm(settings, meet_at)}",
                next_free_at=await next_free(
                    conn, settings, rules, after=meet_at, slot_s=slot_s, now=now
                ),
            )
        inserted = await conn.fetchval(
            _INSERT_SQL,
            booking_id,
            booker.member_id,
            booker.guest_name,
            booker.guest_phone,
            booker.via,
            booker.staff_id,
            rules.district_id,
            team["id"],
            meet_at,
            ends_at,
            req.meeting_point.lat,
            req.meeting_point.lon,
            req.meeting_label,
            req.destination.lat,
            req.destination.lon,
            req.destination_label,
            code,
        )
        if inserted is None:
            raise BookingAlreadyActive("she already has a scouts booking; cancel it first")
        view = await _view(conn, booking_id)
        when = _hhmm(settings, meet_at)
        where = req.meeting_label or "the meeting point"
        await _tell_her(
            conn,
            settings,
            view,
            part="booked",
            text=f"Safe Return Scouts ({view['team']['name']}) meet you at {where}, {when}."
            f" Check their badges ({_badges(view)}) and the code {code}.",
        )
        await _tell_scouts(
            conn,
            settings,
            view,
            part="booked",
            text=f"New escort: {where}, {when}, to {req.destination_label or 'her destination'}.",
        )
    return view


async def _pick(
    conn: asyncpg.Connection,
    rules: Rules,
    window: Window,
    req: BookingRequest,
    meet_at: datetime,
    ends_at: datetime,
    exclude: tuple[uuid.UUID, ...] = (),
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        _PICK_SQL,
        rules.district_id,
        window.evening.weekday(),
        req.meeting_point.lat,
        req.meeting_point.lon,
        meet_at,
        ends_at,
        window.opens_at,
        window.closes_at,
        list(exclude),
    )
    return row


def _badges(view: dict[str, Any]) -> str:
    return ", ".join(s["badge_number"] or "—" for s in view["scouts"])


# --- what each side sees -----------------------------------------------------------------------

_VIEW_SQL = """
SELECT b.id, b.member_id, b.guest_name, b.guest_phone, b.booked_via, b.status, b.meet_at,
       b.ends_at, b.meeting_label, b.destination_label, b.code, b.scouts_arrived_at, b.met_at,
       b.safe_return_id, b.cancelled_at, b.cancelled_by, b.cancel_reason, b.no_show_at,
       b.completed_at, b.created_at, b.team_id,
       ST_Y(b.meeting_point::geometry) AS meet_lat, ST_X(b.meeting_point::geometry) AS meet_lon,
       ST_Y(b.destination::geometry) AS dest_lat, ST_X(b.destination::geometry) AS dest_lon,
       d.code AS district_code, d.name AS district_name, t.name AS team_name,
       coalesce(m.name, b.guest_name) AS her_name,
       a.id AS a_id, a.name AS a_name, a.badge_number AS a_badge, a.photo_url AS a_photo,
       c.id AS b_id, c.name AS b_name, c.badge_number AS b_badge, c.photo_url AS b_photo
FROM scout_booking b
JOIN district d ON d.id = b.district_id
JOIN scout_team t ON t.id = b.team_id
JOIN staff a ON a.id = t.scout_a_id
JOIN staff c ON c.id = t.scout_b_id
LEFT JOIN member m ON m.id = b.member_id
WHERE b.id = $1
"""


def _pt(lat: float | None, lon: float | None) -> dict[str, float] | None:
    return {"lat": lat, "lon": lon} if lat is not None and lon is not None else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _shape(r: asyncpg.Record) -> dict[str, Any]:
    live = r["status"] in LIVE_BOOKING
    return {
        "booking_id": str(r["id"]),
        "status": r["status"],
        "booked_via": r["booked_via"],
        "meet_at": r["meet_at"].isoformat(),
        "ends_at": r["ends_at"].isoformat(),
        "meeting_point": _pt(r["meet_lat"], r["meet_lon"]),
        "meeting_label": r["meeting_label"],
        "destination": _pt(r["dest_lat"], r["dest_lon"]),
        "destination_label": r["destination_label"],
        "district": {"code": r["district_code"], "name": r["district_name"]},
        "team": {"id": str(r["team_id"]), "name": r["team_name"]},
        "scouts": [
            {
                "id": str(r[f"{k}_id"]),
                "name": r[f"{k}_name"],
                "badge_number": r[f"{k}_badge"],
                "photo_url": r[f"{k}_photo"] or PHOTO_PLACEHOLDER,
            }
            for k in ("a", "b")
        ],
        # Only while it is to be walked: an old code proves nothing.
        "code": r["code"] if live else None,
        "scouts_arrived_at": _iso(r["scouts_arrived_at"]),
        "met_at": _iso(r["met_at"]),
        "safe_return_id": str(r["safe_return_id"]) if r["safe_return_id"] else None,
        "cancelled_at": _iso(r["cancelled_at"]),
        "cancelled_by": r["cancelled_by"],
        "cancel_reason": r["cancel_reason"],
        "no_show_at": _iso(r["no_show_at"]),
        "completed_at": _iso(r["completed_at"]),
        "created_at": r["created_at"].isoformat(),
        "her_name": r["her_name"],
        # Kept for the notifications; the API's models leave out what an audience must not see.
        "_member_id": r["member_id"],
        "_guest_phone": r["guest_phone"],
    }


async def _view(conn: asyncpg.Connection | asyncpg.Pool, booking_id: uuid.UUID) -> dict[str, Any]:
    row = await conn.fetchrow(_VIEW_SQL, booking_id)
    if row is None:
        raise NotFound("no such booking")
    return _shape(row)


async def her_view(
    pool: asyncpg.Pool, *, member_id: uuid.UUID, booking_id: uuid.UUID
) -> dict[str, Any]:
    """Her booking: the scouts' names, photos and badges and the one-time code to check them."""
    view = await _view(pool, booking_id)
    if view["_member_id"] != member_id:
        raise NotFound("no such booking")
    return view


async def _mine(
    conn: asyncpg.Connection | asyncpg.Pool, *, scout_id: uuid.UUID, booking_id: uuid.UUID
) -> dict[str, Any]:
    view = await _view(conn, booking_id)
    if str(scout_id) not in {s["id"] for s in view["scouts"]}:
        raise NotFound("no such booking")
    return view


_HER_POSITION_SQL = """
SELECT s.id, s.status, ST_Y(s.last_position::geometry) AS lat,
       ST_X(s.last_position::geometry) AS lon, s.last_point_at
FROM safe_return_session s WHERE s.id = $1
"""


async def scout_view(
    pool: asyncpg.Pool, *, scout_id: uuid.UUID, booking_id: uuid.UUID
) -> dict[str, Any]:
    """A booking of the scout's team. Her live position only while they walk her (each read
    logged in ``safe_return_access``, reason ``scout_escort``); never before or after."""
    view = await _mine(pool, scout_id=scout_id, booking_id=booking_id)
    view["her_position"] = None
    if view["status"] == "walking" and view["safe_return_id"]:
        async with pool.acquire() as conn, conn.transaction():
            s = await conn.fetchrow(_HER_POSITION_SQL, uuid.UUID(view["safe_return_id"]))
            if s is not None and s["status"] in (*LIVE, "sos") and s["lat"] is not None:
                await conn.execute(
                    "INSERT INTO safe_return_access (session_id, staff_id, reason)"
                    " VALUES ($1, $2, 'scout_escort')",
                    s["id"],
                    scout_id,
                )
                view["her_position"] = {
                    "lat": s["lat"],
                    "lon": s["lon"],
                    "captured_at": _iso(s["last_point_at"]),
                }
    return view


_SCOUT_LIST_SQL = """
SELECT b.id FROM scout_booking b JOIN scout_team t ON t.id = b.team_id
WHERE (t.scout_a_id = $1 OR t.scout_b_id = $1)
  AND b.meet_at > now() - interval '12 hours'
ORDER BY b.meet_at LIMIT 100
"""


async def scout_bookings(pool: asyncpg.Pool, *, scout_id: uuid.UUID) -> list[dict[str, Any]]:
    """The scout's team's bookings from the last 12 hours on (no live positions here)."""
    ids = await pool.fetch(_SCOUT_LIST_SQL, scout_id)
    return [await _view(pool, r["id"]) for r in ids]


# --- notifications -------------------------------------------------------------------------


async def _tell_her(
    conn: asyncpg.Connection, settings: Settings, view: dict[str, Any], *, part: str, text: str
) -> None:
    """Her app's push, or a text to the phone a call-taker booked for."""
    member_id = view["_member_id"]
    bid = uuid.UUID(view["booking_id"])
    target = f"member:{member_id}" if member_id else f"guest:{bid}"
    await enqueue(
        conn,
        incident_id=None,
        scout_booking_id=bid,
        channel="push" if member_id else "sms",
        target=target,
        message={
            "type": f"scouts_{part}",
            "booking_id": view["booking_id"],
            "text": text,
            **({} if member_id else {"phone": view["_guest_phone"]}),
        },
        dedupe_key=f"scouts:{bid}:{part}:{target}:{view['team']['id']}",
        deadline_s=settings.notify_deadline_s,
    )


async def _tell_scouts(
    conn: asyncpg.Connection, settings: Settings, view: dict[str, Any], *, part: str, text: str
) -> None:
    bid = uuid.UUID(view["booking_id"])
    for scout in view["scouts"]:
        target = f"volunteer:{scout['id']}"
        await enqueue(
            conn,
            incident_id=None,
            scout_booking_id=bid,
            channel="push",
            target=target,
            message={"type": f"scouts_{part}", "booking_id": view["booking_id"], "text": text},
            dedupe_key=f"scouts:{bid}:{part}:{target}",
            deadline_s=settings.notify_deadline_s,
        )


# --- the evening: arrival, the walk, cancellations, no-shows ----------------------------------

_LOCK_SQL = "SELECT status FROM scout_booking WHERE id = $1 FOR UPDATE"


class BookingClosed(Conflict):
    pass


async def _locked(conn: asyncpg.Connection, booking_id: uuid.UUID, expect: str) -> None:
    """Lock the booking; a booking not in the ``expect`` state is a 409."""
    status: str | None = await conn.fetchval(_LOCK_SQL, booking_id)
    if status is None:
        raise NotFound("no such booking")
    if status != expect:
        raise BookingClosed(f"this booking is {status}")


async def scouts_arrived(
    pool: asyncpg.Pool, settings: Settings, *, scout_id: uuid.UUID, booking_id: uuid.UUID
) -> dict[str, Any]:
    """The scouts' check-in at the meeting point: she is told who to look for."""
    async with pool.acquire() as conn, conn.transaction():
        view = await _mine(conn, scout_id=scout_id, booking_id=booking_id)
        await _locked(conn, booking_id, "booked")
        await conn.execute(
            "UPDATE scout_booking SET scouts_arrived_at = coalesce(scouts_arrived_at, now()),"
            " updated_at = now() WHERE id = $1",
            booking_id,
        )
        names = " and ".join(f"{s['name']} ({s['badge_number'] or '—'})" for s in view["scouts"])
        await _tell_her(
            conn,
            settings,
            view,
            part="arrived",
            text=f"Your scouts {names} are at {view['meeting_label'] or 'the meeting point'}."
            f" Their app shows the code {view['code']}.",
        )
        return await _view(conn, booking_id)


async def start_walk(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    member_id: uuid.UUID,
    booking_id: uuid.UUID,
    code: str | None,
    share_with_control_centre: bool,
    tell_guardians: bool,
    battery_pct: int | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """She met her scouts (and, if she typed it, the code on their phone is hers): the walk
    starts as a safe-return session with the scouts attached."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        view = await _view(conn, booking_id)
        if view["_member_id"] != member_id:
            raise NotFound("no such booking")
        await _locked(conn, booking_id, "booked")
        if code is not None and not secrets.compare_digest(code, view["code"] or ""):
            raise CodeMismatch("that is not the code of your booking: do not go with them")
        meet_at = datetime.fromisoformat(view["meet_at"])
        if now < meet_at - timedelta(seconds=settings.scout_start_early_s):
            raise BookingTimeInvalid("the walk starts when you meet your scouts")
        dest, meet = view["destination"], view["meeting_point"]
        walk = await walks.start(
            pool,
            settings,
            member_id=member_id,
            req=walks.StartRequest(
                destination=Point(dest["lat"], dest["lon"]),
                destination_label=view["destination_label"],
                origin=Point(meet["lat"], meet["lon"]),
                tell_guardians=tell_guardians,
                share_with_control_centre=share_with_control_centre,
                battery_pct=battery_pct,
            ),
            now=now,
            conn=conn,
        )
        await conn.execute(
            "UPDATE scout_booking SET status = 'walking', met_at = now(), safe_return_id = $2,"
            " updated_at = now() WHERE id = $1",
            booking_id,
            uuid.UUID(walk["session_id"]),
        )
        return {**await _view(conn, booking_id), "walk": walk}


async def scouts_start_guest(
    pool: asyncpg.Pool, *, scout_id: uuid.UUID, booking_id: uuid.UUID
) -> dict[str, Any]:
    """A call-taker's booking (she has no app, so no session): the scouts say they met her."""
    async with pool.acquire() as conn, conn.transaction():
        view = await _mine(conn, scout_id=scout_id, booking_id=booking_id)
        await _locked(conn, booking_id, "booked")
        if view["_member_id"] is not None:
            raise Conflict("she starts the walk from her app (it watches the walk)")
        await conn.execute(
            "UPDATE scout_booking SET status = 'walking', met_at = now(), updated_at = now()"
            " WHERE id = $1",
            booking_id,
        )
        return await _view(conn, booking_id)


async def complete(
    pool: asyncpg.Pool, *, scout_id: uuid.UUID, booking_id: uuid.UUID
) -> dict[str, Any]:
    """The scouts left her at her destination (her walk ends by its own geofence or PIN)."""
    async with pool.acquire() as conn, conn.transaction():
        await _mine(conn, scout_id=scout_id, booking_id=booking_id)
        await _locked(conn, booking_id, "walking")
        await conn.execute(
            "UPDATE scout_booking SET status = 'completed', completed_at = now(), code = NULL,"
            " updated_at = now() WHERE id = $1",
            booking_id,
        )
        return await _view(conn, booking_id)


async def cancel(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    booking_id: uuid.UUID,
    by: str,
    reason: str | None,
    member_id: uuid.UUID | None = None,
    scout_id: uuid.UUID | None = None,
    staff_scope: tuple[bool, frozenset[uuid.UUID]] | None = None,
) -> dict[str, Any]:
    """Cancelled by her, by the scouts, or by a call-taker. When the scouts cancel, another free
    team takes the booking if there is one (she is told of the change); otherwise it is
    cancelled and she is told."""
    async with pool.acquire() as conn, conn.transaction():
        if scout_id is not None:
            view = await _mine(conn, scout_id=scout_id, booking_id=booking_id)
        else:
            view = await _view(conn, booking_id)
        if member_id is not None and view["_member_id"] != member_id:
            raise NotFound("no such booking")
        if staff_scope is not None:
            city_wide, scope = staff_scope
            district_id = await conn.fetchval(
                "SELECT district_id FROM scout_booking WHERE id = $1", booking_id
            )
            if not (city_wide or district_id in scope):
                raise NotFound("no such booking")
        await _locked(conn, booking_id, "booked")
        if by == "scouts" and await _reassign(conn, settings, view, booking_id):
            return await _view(conn, booking_id)
        await conn.execute(
            "UPDATE scout_booking SET status = 'cancelled', cancelled_at = now(),"
            " cancelled_by = $2, cancel_reason = $3, code = NULL, updated_at = now()"
            " WHERE id = $1",
            booking_id,
            by,
            reason,
        )
        when = _hhmm(settings, datetime.fromisoformat(view["meet_at"]))
        if by != "member":
            await _tell_her(
                conn,
                settings,
                view,
                part="cancelled",
                text=f"Your Safe Return Scouts booking for {when} is cancelled"
                f"{f' ({reason})' if reason else ''}. Book again, or start walk-me-home.",
            )
        if by != "scouts":
            await _tell_scouts(
                conn, settings, view, part="cancelled", text=f"The escort at {when} is cancelled."
            )
        return await _view(conn, booking_id)


async def _reassign(
    conn: asyncpg.Connection, settings: Settings, view: dict[str, Any], booking_id: uuid.UUID
) -> bool:
    meet_at = datetime.fromisoformat(view["meet_at"])
    meet = view["meeting_point"]
    if meet is None:
        return False
    rules = await _rules(conn, settings, lat=meet["lat"], lon=meet["lon"], now=meet_at)
    window = window_of(rules.windows, meet_at)
    if window is None:
        return False
    await conn.execute(_LOCK_TEAMS_SQL, rules.district_id)
    declined = await conn.fetchval(
        "SELECT declined_team_ids FROM scout_booking WHERE id = $1", booking_id
    )
    dest = view["destination"] or meet
    req = BookingRequest(Point(meet["lat"], meet["lon"]), meet_at, Point(dest["lat"], dest["lon"]))
    team = await _pick(
        conn,
        rules,
        window,
        req,
        meet_at,
        datetime.fromisoformat(view["ends_at"]),
        exclude=(uuid.UUID(view["team"]["id"]), *declined),
    )
    await conn.execute(
        "UPDATE scout_booking SET declined_team_ids = array_append(declined_team_ids, team_id)"
        " WHERE id = $1",
        booking_id,
    )
    if team is None:
        return False
    await conn.execute(
        "UPDATE scout_booking SET team_id = $2, code = $3, updated_at = now() WHERE id = $1",
        booking_id,
        team["id"],
        new_code(),
    )
    new = await _view(conn, booking_id)
    await _tell_her(
        conn,
        settings,
        new,
        part="team_changed",
        text=f"Your scouts changed: {new['team']['name']} ({_badges(new)}) meet you at"
        f" {_hhmm(settings, meet_at)}. The new code is {new['code']}.",
    )
    await _tell_scouts(
        conn,
        settings,
        new,
        part="booked",
        text=f"New escort: {new['meeting_label'] or 'the meeting point'},"
        f" {_hhmm(settings, meet_at)}.",
    )
    return True


_NO_SHOW_SQL = """
UPDATE scout_booking SET status = 'no_show', no_show_at = now(), code = NULL, updated_at = now()
WHERE id IN (
  SELECT id FROM scout_booking
  WHERE status = 'booked' AND scouts_arrived_at IS NULL
    AND meet_at <= now() - make_interval(secs => $1::float8)
  ORDER BY meet_at LIMIT 200 FOR UPDATE SKIP LOCKED)
RETURNING id
"""
_DONE_SQL = """
UPDATE scout_booking b SET status = 'completed', completed_at = now(), code = NULL,
  updated_at = now()
FROM safe_return_session s
WHERE b.safe_return_id = s.id AND b.status = 'walking' AND s.status IN ('arrived','ended')
"""


async def sweep(pool: asyncpg.Pool, settings: Settings) -> int:
    """Scouts not at the meeting point ``scout_no_show_s`` after the time: a no-show; she is
    told and the district office sees it. A walk she ended (arrived) completes its booking."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_NO_SHOW_SQL, settings.scout_no_show_s)
        for r in rows:
            view = await _view(conn, r["id"])
            await _tell_her(
                conn,
                settings,
                view,
                part="no_show",
                text="Your scouts have not arrived. Stay somewhere lit and busy; start"
                " walk-me-home or press SOS if you feel unsafe. The district office is told.",
            )
        await conn.execute(_DONE_SQL)
    return len(rows)


async def purge_ended(pool: asyncpg.Pool, *, retention_s: float) -> int:
    """Bookings over for longer than the retention lose their places (hers: where she met them
    and where she lives)."""
    result = await pool.execute(
        "UPDATE scout_booking SET meeting_point = NULL, destination = NULL,"
        " meeting_label = NULL, destination_label = NULL, code = NULL"
        " WHERE status NOT IN ('booked','walking')"
        " AND updated_at < now() - make_interval(secs => $1::float8)"
        " AND (meeting_point IS NOT NULL OR destination IS NOT NULL)",
        retention_s,
    )
    return int(result.split()[-1])


# --- the SOS of an escorted walk ----------------------------------------------------------------

_SCOUTS_OF_WALK_SQL = """
SELECT t.name AS team, s.id, s.name, s.badge_number, s.phone
FROM scout_booking b JOIN scout_team t ON t.id = b.team_id
JOIN staff s ON s.id IN (t.scout_a_id, t.scout_b_id)
WHERE b.safe_return_id = $1 ORDER BY s.id = t.scout_b_id, s.name
"""


async def scouts_of_walk(conn: asyncpg.Connection, session_id: uuid.UUID) -> list[dict[str, Any]]:
    """The scouts escorting a walk (none for an ordinary walk home)."""
    return [
        {
            "id": str(r["id"]),
            "name": r["name"],
            "badge_number": r["badge_number"],
            "team": r["team"],
            "phone": r["phone"],
        }
        for r in await conn.fetch(_SCOUTS_OF_WALK_SQL, session_id)
    ]


# --- the district office's evening ------------------------------------------------------------

_EVENING_SQL = """
SELECT b.id FROM scout_booking b
WHERE ($1 OR b.district_id = ANY($2::uuid[])) AND b.meet_at >= $3 AND b.meet_at < $4
ORDER BY b.meet_at, b.id LIMIT 1000
"""


def evening_of(settings: Settings, now: datetime) -> date:
    """Tonight's evening: before noon it is still last night's."""
    local = now.astimezone(_tz(settings))
    return local.date() - timedelta(days=1) if local.hour < 12 else local.date()


async def district_evening(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    city_wide: bool,
    district_ids: frozenset[uuid.UUID],
    evening: date,
) -> dict[str, Any]:
    """An evening's bookings (noon to noon, local time) of the districts the staff member
    sees, with what became of each; no-shows are flagged."""
    tz = _tz(settings)
    start = datetime.combine(evening, time(12), tz)
    rows = await pool.fetch(
        _EVENING_SQL, city_wide, list(district_ids), start, start + timedelta(days=1)
    )
    bookings = [await _view(pool, r["id"]) for r in rows]
    counts: dict[str, int] = {}
    for b in bookings:
        counts[b["status"]] = counts.get(b["status"], 0) + 1
    return {"evening": evening.isoformat(), "counts": counts, "bookings": bookings}


# --- operators: districts, hours, teams ----------------------------------------------------------


async def configure_district(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    district_code: str,
    min_lead_s: float | None,
    hours: list[tuple[int, time, time]] | None,
    active: bool,
) -> dict[str, Any]:
    """A district's scouts service: its lead time and its evenings (Seoul's when not given)."""
    async with pool.acquire() as conn, conn.transaction():
        district = await conn.fetchrow(
            "SELECT id, code, name FROM district WHERE code = $1", district_code
        )
        if district is None:
            raise NotFound(f"no district {district_code}")
        lead = settings.scout_default_lead_s if min_lead_s is None else min_lead_s
        await conn.execute(
            "INSERT INTO scout_district (district_id, min_lead_s, active) VALUES ($1, $2, $3)"
            " ON CONFLICT (district_id) DO UPDATE SET min_lead_s = $2, active = $3",
            district["id"],
            lead,
            active,
        )
        await conn.execute("DELETE FROM scout_hours WHERE district_id = $1", district["id"])
        evenings = list(SEOUL_HOURS if hours is None else hours)
        await conn.executemany(
            "INSERT INTO scout_hours (district_id, weekday, opens, closes) VALUES ($1, $2, $3, $4)",
            [(district["id"], wd, o, c) for wd, o, c in evenings],
        )
    return {
        "district": {"code": district["code"], "name": district["name"]},
        "min_lead_s": lead,
        "active": active,
        "hours": [
            {"weekday": wd, "opens": o.strftime("%H:%M"), "closes": c.strftime("%H:%M")}
            for wd, o, c in sorted(evenings)
        ],
    }


async def add_closed_day(
    pool: asyncpg.Pool, *, day: date, district_code: str | None, label: str | None
) -> dict[str, Any]:
    district_id = None
    if district_code is not None:
        district_id = await pool.fetchval("SELECT id FROM district WHERE code = $1", district_code)
        if district_id is None:
            raise NotFound(f"no district {district_code}")
    await pool.execute(
        "INSERT INTO scout_closed_day (district_id, day, label) VALUES ($1, $2, $3)",
        district_id,
        day,
        label,
    )
    return {"day": day.isoformat(), "district": district_code, "label": label}


class NotAScout(AppError):
    status_code = 422


async def create_team(
    pool: asyncpg.Pool,
    *,
    district_code: str,
    name: str,
    scouts: tuple[str, str],
    base: Point,
    weekdays: list[int],
) -> dict[str, Any]:
    """A pair of volunteers (by username) in one district."""
    district_id = await pool.fetchval("SELECT id FROM district WHERE code = $1", district_code)
    if district_id is None:
        raise NotFound(f"no district {district_code}")
    if scouts[0] == scouts[1]:
        raise NotAScout("a team is two different scouts")
    rows = await pool.fetch(
        "SELECT id, username FROM staff WHERE username = ANY($1::text[])"
        " AND role = 'volunteer' AND active",
        list(scouts),
    )
    ids = {r["username"]: r["id"] for r in rows}
    missing = [u for u in scouts if u not in ids]
    if missing:
        raise NotAScout(f"not an active volunteer: {', '.join(missing)}")
    team_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO scout_team (id, district_id, name, scout_a_id, scout_b_id, base, weekdays)"
        " VALUES ($1, $2, $3, $4, $5, ST_SetSRID(ST_MakePoint($7, $6), 4326)::geography, $8)",
        team_id,
        district_id,
        name,
        ids[scouts[0]],
        ids[scouts[1]],
        base.lat,
        base.lon,
        weekdays,
    )
    return {
        "team_id": str(team_id),
        "district": district_code,
        "name": name,
        "scouts": list(scouts),
        "weekdays": weekdays,
    }


_TEAMS_SQL = """
SELECT t.id, t.name, t.weekdays, t.active, d.code, a.username AS a, b.username AS b
FROM scout_team t JOIN district d ON d.id = t.district_id
JOIN staff a ON a.id = t.scout_a_id JOIN staff b ON b.id = t.scout_b_id
ORDER BY d.code, t.name
"""


async def list_teams(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [
        {
            "team_id": str(r["id"]),
            "district": r["code"],
            "name": r["name"],
            "scouts": [r["a"], r["b"]],
            "weekdays": list(r["weekdays"]),
        }
        for r in await pool.fetch(_TEAMS_SQL)
    ]


async def seed_demo(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    district_code: str,
    usernames: tuple[str, str],
    base: Point,
) -> dict[str, Any]:
    """The demo city's scouts: one district with Seoul's hours and one team (idempotent)."""
    district_id = await conn.fetchval("SELECT id FROM district WHERE code = $1", district_code)
    await conn.execute(
        "INSERT INTO scout_district (district_id, min_lead_s) VALUES ($1, $2)"
        " ON CONFLICT (district_id) DO NOTHING",
        district_id,
        settings.scout_default_lead_s,
    )
    if not await conn.fetchval("SELECT true FROM scout_hours WHERE district_id = $1", district_id):
        await conn.executemany(
            "INSERT INTO scout_hours (district_id, weekday, opens, closes) VALUES ($1, $2, $3, $4)",
            [(district_id, wd, o, c) for wd, o, c in SEOUL_HOURS],
        )
    name = f"{district_code} scouts 1"
    if not await conn.fetchval(
        "SELECT true FROM scout_team WHERE district_id = $1 AND name = $2", district_id, name
    ):
        await conn.execute(
            "INSERT INTO scout_team (id, district_id, name, scout_a_id, scout_b_id, base)"
            " SELECT $1, $2, $3, a.id, b.id, ST_SetSRID(ST_MakePoint($7, $6), 4326)::geography"
            " FROM staff a, staff b WHERE a.username = $4 AND b.username = $5",
            uuid.uuid4(),
            district_id,
            name,
            usernames[0],
            usernames[1],
            base.lat,
            base.lon,
        )
    return {"district": district_code, "team": name, "scouts": list(usernames)}
