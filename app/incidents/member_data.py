"""A member's own data: guardians, export, and erasure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, NotFound
from app.incidents.retention import forget_positions
from app.models import (
    Guardian,
    Incident,
    IncidentEvent,
    LocationPoint,
    Member,
    MemberToken,
    Notification,
)
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


async def export(session: AsyncSession, *, member_id: uuid.UUID) -> dict[str, Any]:
    """Everything we hold about her, in one document."""
    data = await profile(session, member_id=member_id)
    lat = func.ST_Y(func.ST_GeomFromWKB(func.ST_AsBinary(Incident.location)))
    lon = func.ST_X(func.ST_GeomFromWKB(func.ST_AsBinary(Incident.location)))
    incidents = (
        await session.execute(
            select(Incident, lat.label("lat"), lon.label("lon"))
            .where(Incident.member_id == member_id)
            .order_by(Incident.received_at)
        )
    ).all()
    alerts = []
    for incident, i_lat, i_lon in incidents:
        events = (
            await session.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.incident_id == incident.id)
                .order_by(IncidentEvent.id)
            )
        ).all()
        points = (
            await session.execute(
                select(
                    func.ST_Y(func.ST_GeomFromWKB(func.ST_AsBinary(LocationPoint.geog))),
                    func.ST_X(func.ST_GeomFromWKB(func.ST_AsBinary(LocationPoint.geog))),
                    LocationPoint.accuracy_m,
                    LocationPoint.captured_at,
                    LocationPoint.received_at,
                )
                .where(LocationPoint.incident_id == incident.id)
                .order_by(LocationPoint.id)
            )
        ).all()
        alerts.append(
            {
                "incident_id": str(incident.id),
                "received_at": incident.received_at.isoformat(),
                # Her own export shows what her app showed: a duress cancel stays a cancel.
                "status": "cancelled" if incident.member_cancelled_at else incident.status,
                "trigger": incident.trigger,
                "note": incident.note,
                "location": {"lat": i_lat, "lon": i_lon, "accuracy_m": incident.accuracy_m}
                if i_lat is not None
                else None,
                "timeline": [
                    {"kind": e.kind, "at": e.at.isoformat()}
                    for e in events
                    if e.kind not in {"duress_cancel", "wrong_pin_escalation"}
                ],
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
            }
        )
    data["alerts"] = alerts
    data["exported_at"] = datetime.now(UTC).isoformat()
    return data


async def erase(session: AsyncSession, *, member_id: uuid.UUID, pin: str) -> bool:
    """Delete her account: tokens revoked, identity and guardians removed, trails deleted and
    positions coarsened, the outbox's positions dropped and the Redis streams' entries of her
    incidents deleted after the commit (``forget_positions``). Refused while an alert of hers
    is open (it may be a rescue in progress). Returns False for a wrong PIN."""
    member = await session.get_one(Member, member_id, with_for_update=True)
    if not await asyncio.to_thread(verify_secret, member.pin_hash, pin):
        return False
    open_alert = await session.scalar(
        select(Incident.id).where(Incident.member_id == member_id, Incident.closed_at.is_(None))
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
    # The outbox's and Redis's copies of her positions (the streams, after the commit).
    await forget_positions(session, incident_ids=list(await session.scalars(incident_ids)))
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
    member.name = "(erased)"
    member.phone = f"-{member.id.hex[:30]}"  # unique, and not a phone number
    member.deleted_at = now
    await session.flush()
    return True
