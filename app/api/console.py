"""Police consoles: REST for reading and acting on incidents (docs/dispatch.md).

The live WebSocket stream is app/api/console_stream.py."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Query, Request
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.api import answers
from app.api.deps import (
    CurrentDispatcher,
    CurrentStaff,
    PoolDep,
    RedisDep,
    SessionDep,
    SettingsDep,
    StaffPrincipal,
    kick_relay,
)
from app.api.schemas import StrictModel
from app.dispatch.coverage import coverage_status
from app.dispatch.worker import read_dead_letters
from app.errors import Conflict, Forbidden, NotFound
from app.incidents import lifecycle, timeline
from app.incidents.console_service import (
    incident_detail,
    incident_summary,
    list_incidents,
    log_location_access,
)
from app.models import Assignment, Staff

router = APIRouter(prefix="/v1/console", tags=["console"])


#: ``status`` of the incident list: open, closed, all, or one status.
IncidentFilter = Literal[
    "open", "closed", "all", "new", "acknowledged", "responding", "on_scene", "resolved",
    "false_alarm", "cancelled",
]  # fmt: skip


class AckIn(StrictModel):
    pass


class AssignIn(StrictModel):
    kind: Literal["unit", "volunteer"]
    unit: str | None = Field(None, min_length=1, max_length=64)
    volunteer_id: uuid.UUID | None = None


class StatusIn(StrictModel):
    status: Literal["responding", "on_scene", "resolved", "false_alarm"]
    disposition: str | None = Field(None, max_length=500)


def _actor(staff: StaffPrincipal) -> str:
    return f"staff:{staff.id}"


async def _in_scope(pool: Any, staff: StaffPrincipal, incident_id: uuid.UUID) -> dict[str, Any]:
    summary = await incident_summary(pool, incident_id)
    if summary is None or not staff.sees(summary["district_id"], summary["covered_by"]):
        raise NotFound(f"incident {incident_id} not found")
    return summary


@router.get(
    "/incidents",
    summary="Incidents in the dispatcher's scope, newest first",
    response_model=answers.IncidentList,
)
async def get_incidents(
    staff: CurrentDispatcher,
    pool: PoolDep,
    status: IncidentFilter = "open",
    district_id: uuid.UUID | None = None,
    source: Literal["app", "button", "sensor", "safe_return"] | None = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    incidents = await list_incidents(
        pool,
        city_wide=staff.city_wide,
        district_ids=staff.district_ids,
        status=status,
        district_id=district_id,
        source=source,
        since=since,
        limit=limit,
    )
    await log_location_access(
        pool,
        staff_id=staff.id,
        incident_ids=[uuid.UUID(i["id"]) for i in incidents if i["lat"] is not None],
        reason="console_list",
    )
    return {"incidents": incidents}


@router.get(
    "/incidents/{incident_id}",
    summary="One incident: timeline, trail, responders",
    response_model=answers.IncidentDetail,
)
async def get_incident(
    incident_id: uuid.UUID, staff: CurrentDispatcher, pool: PoolDep
) -> dict[str, Any]:
    return await incident_detail(
        pool,
        incident_id=incident_id,
        staff_id=staff.id,
        city_wide=staff.city_wide,
        district_ids=staff.district_ids,
    )


@router.post(
    "/incidents/{incident_id}/ack",
    summary="Acknowledge (stops the escalation clock)",
    response_model=answers.IncidentSummary,
)
async def ack(
    incident_id: uuid.UUID,
    staff: CurrentDispatcher,
    session: SessionDep,
    pool: PoolDep,
    request: Request,
    body: AckIn | None = None,
) -> dict[str, Any]:
    await _in_scope(pool, staff, incident_id)
    await lifecycle.acknowledge(session, incident_id=incident_id, actor=_actor(staff))
    return await _commit_and_kick(request, session, pool, incident_id)


async def _commit_and_kick(
    request: Request, session: AsyncSession, pool: asyncpg.Pool, incident_id: uuid.UUID
) -> dict[str, Any]:
    # Commit here (not in the dependency's teardown) so the relay is kicked after the commit.
    await session.commit()
    kick_relay(request)
    summary = await incident_summary(pool, incident_id)
    assert summary is not None
    return summary


@router.post(
    "/incidents/{incident_id}/status",
    summary="responding, on_scene, resolved, false_alarm",
    response_model=answers.IncidentSummary,
)
async def set_status(
    incident_id: uuid.UUID,
    body: StatusIn,
    staff: CurrentDispatcher,
    session: SessionDep,
    pool: PoolDep,
    request: Request,
) -> dict[str, Any]:
    await _in_scope(pool, staff, incident_id)
    incident = await lifecycle.lock_incident(session, incident_id)
    await lifecycle.transition(
        session,
        incident=incident,
        target=body.status,
        actor=_actor(staff),
        disposition=body.disposition,
    )
    return await _commit_and_kick(request, session, pool, incident_id)


@router.post(
    "/incidents/{incident_id}/assign",
    summary="Assign a police unit or a volunteer",
    response_model=answers.AssignOut,
)
async def assign(
    incident_id: uuid.UUID,
    body: AssignIn,
    staff: CurrentDispatcher,
    session: SessionDep,
    pool: PoolDep,
    request: Request,
) -> dict[str, Any]:
    await _in_scope(pool, staff, incident_id)
    if (body.kind == "unit") == (body.unit is None) or (body.kind == "volunteer") == (
        body.volunteer_id is None
    ):
        raise Conflict("give `unit` for kind=unit or `volunteer_id` for kind=volunteer")
    incident = await lifecycle.lock_incident(session, incident_id)
    if incident.status in lifecycle.CLOSED:
        raise Conflict(f"incident is {incident.status}")
    if body.volunteer_id is not None:
        volunteer = await session.get(Staff, body.volunteer_id)
        if volunteer is None or volunteer.role != "volunteer" or not volunteer.active:
            raise NotFound(f"volunteer {body.volunteer_id} not found")
    assignment = Assignment(
        incident_id=incident_id,
        kind=body.kind,
        unit=body.unit,
        volunteer_id=body.volunteer_id,
        assigned_by=staff.id,
    )
    session.add(assignment)
    await session.flush()
    await timeline.record(
        session,
        incident_id=incident_id,
        kind="assigned",
        actor=_actor(staff),
        data={"kind": body.kind, "unit": body.unit, "volunteer_id": str(body.volunteer_id or "")},
    )
    summary = await _commit_and_kick(request, session, pool, incident_id)
    return {
        "assignment": {
            "id": str(assignment.id),
            "kind": assignment.kind,
            "unit": assignment.unit,
            "volunteer_id": str(assignment.volunteer_id) if assignment.volunteer_id else None,
        },
        "incident": summary,
    }


def _operator_or_supervisor(staff: StaffPrincipal) -> None:
    if not (staff.role == "operator" or (staff.role == "dispatcher" and staff.city_wide)):
        raise Forbidden("operators and city-wide dispatchers only")


@router.get(
    "/dead-letters",
    summary="Stream entries that could not be processed",
    response_model=answers.DeadLetters,
)
async def dead_letters(
    staff: CurrentStaff,
    redis: RedisDep,
    settings: SettingsDep,
    count: Annotated[int, Query(ge=1, description="At most 1,000 are returned")] = 100,
) -> dict[str, Any]:
    _operator_or_supervisor(staff)
    return {"entries": await read_dead_letters(redis, settings, count=min(count, 1000))}


@router.get(
    "/coverage",
    summary="Open consoles per district; the districts nobody watches",
    response_model=answers.CoverageOut,
)
async def coverage(
    staff: CurrentStaff, pool: PoolDep, redis: RedisDep, settings: SettingsDep
) -> dict[str, Any]:
    _operator_or_supervisor(staff)
    return await coverage_status(pool, redis, settings)
