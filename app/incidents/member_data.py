"""A member's own data: guardians, export, and erasure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, NotFound
from app.homes.member_data import erase_homes, export_homes
from app.incidents.retention import forget_positions
from app.models import (
    AgencySubscription,
    District,
    Guardian,
    Home,
    Incident,
    IncidentEvent,
    LocationAccess,
    LocationPoint,
    Member,
    MemberToken,
    Notification,
    Staff,
    staff_district,
)
from app.safe_return import erasure as safe_return_erasure
from app.security.passwords import verify_secret

MAX_GUARDIANS = 5


async def add_guardian(
    session: AsyncSession, *, member_id: uuid.UUID, name: str, phone: str
) -> Guardian:
    count = await session.scalar(
        select(func.count()).select_from(Guardian).where(Guardian.member_id == member_id)
    )
    if (count or 0) >= MAX_GUARDIANS:
        raise Conflict(f"at most {MAX_GUARDIANS} guardians")
    guardian = Guardian(member_id=member_id, name=name, phone=phone)
    session.add(guardian)
    await session.flush()
    return guardian


async def remove_guardian(
    session: AsyncSession, *, member_id: uuid.UUID, guardian_id: uuid.UUID
) -> None:
    result = await session.execute(
        delete(Guardian).where(Guardian.id == guardian_id, Guardian.member_id == member_id)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound("no such guardian")


def _guardian_json(g: Guardian) -> dict[str, Any]:
    return {"id": str(g.id), "name": g.name, "phone": g.phone}


async def profile(session: AsyncSession, *, member_id: uuid.UUID) -> dict[str, Any]:
    member = await session.get_one(Member, member_id)
    guardians = (
        await session.scalars(
            select(Guardian).where(Guardian.member_id == member_id).order_by(Guardian.created_at)
        )
    ).all()
    return {
        "member_id": str(member.id),
        "name": member.name,
        "phone": member.phone,
        "created_at": member.created_at.isoformat(),
        "guardians": [_guardian_json(g) for g in guardians],
    }


#: Why her position was read (``location_access.reason``), in the words her export uses.
READ_REASONS = {
    "console_detail": "a police dispatcher opened your alert",
    "console_list": "your alert was on a police console's list of incidents",
    "console_stream": "your alert was shown live on police consoles",
    "console_nearby": "a police dispatcher looked up safe places and police near you",
    "console_assets": "a police dispatcher looked up CCTV cameras and emergency bells near you",
    "volunteer_assigned": "an escort volunteer was assigned to your alert",
    "volunteer_view": "the escort volunteer assigned to you looked at your position",
    "guardian_view": "a guardian of yours opened the link texted to them",
    "agency_export": "a police dispatcher handed your alert to another agency (police, 112)",
    "agency_delivery": "your alert was sent to another emergency agency that takes your district",
}

#: Timeline entries her export leaves out: they would tell a duress cancel from a real one
#: (a real cancel's own entry is left out too, and one ``cancelled`` entry stands for either).
_HIDDEN_KINDS = frozenset({"duress_cancel", "wrong_pin_escalation"})


async def export(
    session: AsyncSession, *, member_id: uuid.UUID, cancel_hold_s: float
) -> dict[str, Any]:
    """Everything we hold about her, in one document, with every read of her positions by
    staff or guardians (who by role, badge and unit, when, why: Korea's Location Information
    Act, Art. 16).

    An alert she cancelled shows as it stood at her cancel (no position beyond its trail up to
    then, no entry or read after it) until it has been closed for ``cancel_hold_s``: under
    duress the police go on working on it, and whoever holds her phone may ask for this."""
    data = await profile(session, member_id=member_id)
    now = datetime.now(UTC)
    lat = func.ST_Y(func.ST_GeomFromWKB(func.ST_AsBinary(Incident.location)))
    lon = func.ST_X(func.ST_GeomFromWKB(func.ST_AsBinary(Incident.location)))
    incidents = (
        await session.execute(
            select(Incident, lat.label("lat"), lon.label("lon"))
            .where(Incident.member_id == member_id)
            .order_by(Incident.received_at)
        )
    ).all()
    reads = await _reads(session, [i.id for i, _, _ in incidents])
    alerts = []
    for incident, i_lat, i_lon in incidents:
        cancelled_at = incident.member_cancelled_at
        held = cancelled_at is not None and (
            incident.closed_at is None
            or incident.closed_at > now - timedelta(seconds=cancel_hold_s)
        )
        until = cancelled_at if held else None
        events = (
            await session.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == incident.id)
                .order_by(IncidentEvent.at, IncidentEvent.id)
            )
        ).all()
        timeline = [
            (e.at, e.kind)
            for e in events
            if e.kind not in _HIDDEN_KINDS
            and not (e.kind == "cancelled" and (e.actor or "").startswith("member:"))
            and (until is None or e.at <= until)
        ]
        if cancelled_at is not None:
            timeline = sorted([*timeline, (cancelled_at, "cancelled")])
        points = (
            await session.execute(
                select(
                    func.ST_Y(func.ST_GeomFromWKB(func.ST_AsBinary(LocationPoint.geog))),
                    func.ST_X(func.ST_GeomFromWKB(func.ST_AsBinary(LocationPoint.geog))),
                    LocationPoint.accuracy_m,
                    LocationPoint.captured_at,
                    LocationPoint.received_at,
                )
                .where(
                    LocationPoint.incident_id == incident.id,
                    true() if until is None else LocationPoint.received_at <= until,
                )
                .order_by(LocationPoint.id)
            )
        ).all()
        alerts.append(
            {
                "incident_id": str(incident.id),
                "received_at": incident.received_at.isoformat(),
                # Her own export shows what her app showed: a duress cancel stays a cancel.
                "status": "cancelled" if cancelled_at else incident.status,
                "trigger": incident.trigger,
                # The free text she wrote with her SOS (erased with her account).
                "note": incident.note,
                "location": {"lat": i_lat, "lon": i_lon, "accuracy_m": incident.accuracy_m}
                if i_lat is not None and not held
                else None,
                "timeline": [{"kind": kind, "at": at.isoformat()} for at, kind in timeline],
                "trail": [
                    {
                        "lat": p[0],
                        "lon": p[1],
                        "accuracy_m": p[2],
                        "captured_at": p[3].isoformat() if p[3] else None,
                        "received_at": p[4].isoformat(),
                    }
                    for p in points
                ],
                "location_reads": [
                    r["read"]
                    for r in reads.get(incident.id, [])
                    if until is None or r["at"] <= until
                ],
            }
        )
    data["alerts"] = alerts
    # Her homes (app/homes/): address, position, devices, arming history, alarms there.
    data["homes"] = await export_homes(session, member_id=member_id, cancel_hold_s=cancel_hold_s)
    data["exported_at"] = now.isoformat()
    return data


async def _reads(
    session: AsyncSession, incident_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Every logged read of these incidents' positions, oldest first, by incident. A staff
    reader is named by role, badge number and unit (the districts of a dispatcher), never by
    name or account id; a guardian as ``guardian`` (with the name she gave, while she has
    them)."""
    if not incident_ids:
        return {}
    rows = (
        await session.scalars(
            select(LocationAccess)
            .where(LocationAccess.incident_id.in_(incident_ids))
            .order_by(LocationAccess.at, LocationAccess.id)
        )
    ).all()
    staff_ids = {s for r in rows for s in r.staff_ids}
    guardian_ids = {r.guardian_id for r in rows if r.guardian_id is not None}
    found = await session.scalars(select(Staff).where(Staff.id.in_(staff_ids)))
    staff = {s.id: s for s in found}
    units: dict[uuid.UUID, list[str]] = {}
    for staff_id, name in (
        await session.execute(
            select(staff_district.c.staff_id, District.name)
            .join(District, District.id == staff_district.c.district_id)
            .where(staff_district.c.staff_id.in_(staff_ids))
            .order_by(District.code)
        )
    ).all():
        units.setdefault(staff_id, []).append(name)
    guardians = {
        g.id: g.name
        for g in (await session.scalars(select(Guardian).where(Guardian.id.in_(guardian_ids))))
    }
    agency_ids = {r.agency_subscription_id for r in rows if r.agency_subscription_id is not None}
    agencies = {
        a.id: a.name
        for a in await session.scalars(
            select(AgencySubscription).where(AgencySubscription.id.in_(agency_ids))
        )
    }

    def reader(staff_id: uuid.UUID) -> dict[str, Any]:
        s = staff.get(staff_id)
        if s is None:  # the account is gone; the record of its read is not
            return {"role": "staff", "badge_number": None, "unit": None}
        unit = "city-wide" if s.city_wide else ", ".join(units.get(s.id, [])) or None
        return {"role": s.role, "badge_number": s.badge_number, "unit": unit}

    by_incident: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for r in rows:
        readers = [reader(s) for s in r.staff_ids]
        if r.guardian_id is not None:
            readers.append({"role": "guardian", "name": guardians.get(r.guardian_id)})
        if r.agency_subscription_id is not None:
            readers.append({"role": "agency", "name": agencies.get(r.agency_subscription_id)})
        by_incident.setdefault(r.incident_id, []).append(
            {
                "at": r.at,
                "read": {
                    "at": r.at.isoformat(),
                    "reason": r.reason,
                    "why": READ_REASONS.get(r.reason, r.reason),
                    "by": readers,
                },
            }
        )
    return by_incident


async def erase(session: AsyncSession, *, member_id: uuid.UUID, pin: str) -> bool:
    """Delete her account: tokens revoked, identity and guardians removed, trails deleted and
    positions coarsened, the outbox's positions dropped and the Redis streams' entries of her
    incidents deleted after the commit (``forget_positions``). Refused while an alert of hers
    is open (it may be a rescue in progress). Returns False for a wrong PIN."""
    member = await session.get_one(Member, member_id, with_for_update=True)
    if not await asyncio.to_thread(verify_secret, member.pin_hash, pin):
        return False
    open_alert = await session.scalar(
        select(Incident.id).where(
            or_(
                Incident.member_id == member_id,
                Incident.home_id.in_(select(Home.id).where(Home.member_id == member_id)),
            ),
            Incident.closed_at.is_(None),
        )
    )
    if open_alert is not None:
        raise Conflict("an alert of yours is still open; it must be closed first")
    now = datetime.now(UTC)
    await session.execute(
        update(MemberToken)
        .where(MemberToken.member_id == member_id, MemberToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.execute(delete(Guardian).where(Guardian.member_id == member_id))
    incident_ids = select(Incident.id).where(Incident.member_id == member_id)
    # Her homes (app/homes/member_data.py): the address, arming history and sensors go.
    home_incidents = await erase_homes(session, member_id=member_id)
    # The outbox's and Redis's copies of her positions (the streams, after the commit), her
    # home's position among them (the alarms raised there).
    await forget_positions(
        session, incident_ids=[*await session.scalars(incident_ids), *home_incidents]
    )
    await session.execute(delete(LocationPoint).where(LocationPoint.incident_id.in_(incident_ids)))
    # Queued texts hold her name and her guardians' numbers (their attempts stay, unlinked).
    await session.execute(delete(Notification).where(Notification.incident_id.in_(incident_ids)))
    await session.execute(
        update(Incident)
        .where(Incident.member_id == member_id)
        .values(
            location=text("ST_SnapToGrid(location::geometry, 0.01)::geography"),
            accuracy_m=None,
            note=None,
        )
    )
    # Her walks home, saved places and scouts bookings (app/safe_return/).
    await safe_return_erasure.erase_member(session, member_id=member_id)
    member.name = "(erased)"
    member.phone = f"-{member.id.hex[:30]}"  # unique, and not a phone number
    member.deleted_at = now
    await session.flush()
    return True
