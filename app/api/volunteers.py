"""Escort volunteers: duty, live position, offers (accept / decline)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field
from sqlalchemy import func, select

from app.api import answers
from app.api.deps import CurrentVolunteer, PoolDep, RedisDep, SessionDep, SettingsDep, kick_relay
from app.api.schemas import StrictModel
from app.dispatch import presence
from app.errors import AppError, Conflict, NotFound
from app.incidents import lifecycle, timeline
from app.incidents.console_service import incident_summary, log_location_access
from app.models import Assignment, Offer

router = APIRouter(prefix="/v1/volunteers", tags=["volunteers"])


class AlreadyCovered(AppError):
    status_code = 409


# Volunteer positions live in a Redis GEO set, which takes latitudes up to ±85.05112878.
GEO_MAX_LAT = 85.05112878


class DutyIn(StrictModel):
    on_duty: bool
    lat: float | None = Field(None, ge=-GEO_MAX_LAT, le=GEO_MAX_LAT)
    lon: float | None = Field(None, ge=-180, le=180)


class LocationIn(StrictModel):
    lat: float = Field(ge=-GEO_MAX_LAT, le=GEO_MAX_LAT)
    lon: float = Field(ge=-180, le=180)
    accuracy_m: float | None = Field(None, ge=0, le=100_000)


class Empty(StrictModel):
    pass


@router.post("/duty", summary="Go on or off duty", response_model=answers.DutyOut)
async def duty(
    body: DutyIn, volunteer: CurrentVolunteer, redis: RedisDep, settings: SettingsDep
) -> dict[str, bool]:
    if not body.on_duty:
        await presence.off_duty(redis, settings, volunteer_id=volunteer.id)
    elif body.lat is not None and body.lon is not None:
        await presence.report(
            redis, settings, volunteer_id=volunteer.id, lat=body.lat, lon=body.lon
        )
    return {"on_duty": body.on_duty}


@router.post("/location", status_code=204, summary="Report the live position while on duty")
async def location(
    body: LocationIn, volunteer: CurrentVolunteer, redis: RedisDep, settings: SettingsDep
) -> Response:
    await presence.report(redis, settings, volunteer_id=volunteer.id, lat=body.lat, lon=body.lon)
    return Response(status_code=204)


@router.get(
    "/offers",
    summary="My open offers (distance only: no exact location before assignment)",
    response_model=answers.OffersOut,
)
async def offers(volunteer: CurrentVolunteer, pool: PoolDep) -> dict[str, Any]:
    rows = await pool.fetch(
        "SELECT o.id, o.incident_id, o.distance_m, o.offered_at, d.name AS district_name"
        " FROM offer o JOIN incident i ON i.id = o.incident_id"
        " LEFT JOIN district d ON d.id = i.district_id"
        " WHERE o.volunteer_id = $1 AND o.status = 'offered' AND i.closed_at IS NULL"
        " ORDER BY o.offered_at DESC",
        volunteer.id,
    )
    return {
        "offers": [
            {
                "id": str(r["id"]),
                "incident_id": str(r["incident_id"]),
                "distance_m": r["distance_m"],
                "district_name": r["district_name"],
                "offered_at": r["offered_at"].isoformat(),
            }
            for r in rows
        ]
    }


async def _my_offer(session: Any, offer_id: uuid.UUID, volunteer_id: uuid.UUID) -> Offer:
    offer: Offer | None = await session.scalar(
        select(Offer).where(Offer.id == offer_id).with_for_update()
    )
    if offer is None or offer.volunteer_id != volunteer_id:
        raise NotFound(f"offer {offer_id} not found")
    return offer


@router.post(
    "/offers/{offer_id}/accept",
    summary="Accept an offer: the first accepts up to the needed number are assigned",
    responses={409: {"description": "AlreadyCovered: enough volunteers already accepted"}},
    response_model=answers.AcceptOut,
)
async def accept(
    offer_id: uuid.UUID,
    volunteer: CurrentVolunteer,
    session: SessionDep,
    pool: PoolDep,
    settings: SettingsDep,
    request: Request,
    body: Empty | None = None,
) -> dict[str, Any]:
    offer = await _my_offer(session, offer_id, volunteer.id)
    # Locking the incident serialises concurrent accepts: the count below is exact.
    incident = await lifecycle.lock_incident(session, offer.incident_id)
    if incident.status in lifecycle.CLOSED:
        raise Conflict(f"incident is {incident.status}")
    if offer.status not in ("offered", "accepted"):
        raise Conflict(f"offer is {offer.status}")
    existing = await session.scalar(
        select(Assignment).where(
            Assignment.incident_id == incident.id, Assignment.volunteer_id == volunteer.id
        )
    )
    if existing is None:
        assigned = await session.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(Assignment.incident_id == incident.id, Assignment.kind == "volunteer")
        )
        if (assigned or 0) >= settings.volunteers_needed:
            raise AlreadyCovered(
                "this incident already has the volunteers it needs; thank you — stand by"
            )
        existing = Assignment(incident_id=incident.id, kind="volunteer", volunteer_id=volunteer.id)
        session.add(existing)
        offer.status = "accepted"
        offer.responded_at = datetime.now(UTC)
        await session.flush()
        await timeline.record(
            session,
            incident_id=incident.id,
            kind="volunteer_assigned",
            actor=f"staff:{volunteer.id}",
            data={"volunteer_id": str(volunteer.id), "name": volunteer.name},
        )
    await session.commit()
    kick_relay(request)
    summary = await incident_summary(pool, incident.id)
    await log_location_access(
        pool, staff_id=volunteer.id, incident_ids=[incident.id], reason="volunteer_assigned"
    )
    return {
        "assignment": {"id": str(existing.id), "incident_id": str(incident.id)},
        # Assigned now: the exact location is shown (promise 5).
        "incident": summary,
    }


@router.post(
    "/offers/{offer_id}/decline", summary="Decline an offer", response_model=answers.DeclineOut
)
async def decline(
    offer_id: uuid.UUID,
    volunteer: CurrentVolunteer,
    session: SessionDep,
    body: Empty | None = None,
) -> dict[str, str]:
    offer = await _my_offer(session, offer_id, volunteer.id)
    if offer.status != "offered":
        raise Conflict(f"offer is {offer.status}")
    offer.status = "declined"
    offer.responded_at = datetime.now(UTC)
    await timeline.record(
        session,
        incident_id=offer.incident_id,
        kind="offer_declined",
        actor=f"staff:{volunteer.id}",
    )
    # Published (the outbox row): a dispatcher offers the incident to the next nearest volunteer
    # not offered it yet.
    return {"status": "declined"}


@router.get(
    "/incidents/{incident_id}",
    summary="An incident she is assigned to, with its current exact location",
    responses={404: {"description": "No such incident, or she is not assigned to it"}},
    response_model=answers.IncidentSummary,
)
async def assigned_incident(
    incident_id: uuid.UUID, volunteer: CurrentVolunteer, pool: PoolDep
) -> dict[str, Any]:
    """Promise 5: the exact location only to an assigned volunteer (an offer shows the distance
    only); anyone else gets the same 404 as for an incident that does not exist. Each read is
    logged (promise 6). Once the incident is closed the location is no longer shown."""
    assigned = await pool.fetchval(
        "SELECT true FROM assignment WHERE incident_id = $1 AND volunteer_id = $2 LIMIT 1",
        incident_id,
        volunteer.id,
    )
    summary = await incident_summary(pool, incident_id) if assigned else None
    if summary is None:
        raise NotFound(f"incident {incident_id} not found")
    if summary["closed_at"] is not None:
        return {**summary, "lat": None, "lon": None, "accuracy_m": None}
    await log_location_access(
        pool, staff_id=volunteer.id, incident_ids=[incident_id], reason="volunteer_view"
    )
    return summary
