"""The incident lifecycle as an explicit state machine.

```
new -> acknowledged -> responding -> on_scene -> resolved(disposition)
acknowledged -> on_scene | resolved;  responding -> resolved
any open state -> false_alarm (console) | cancelled (member_cancel)
cancelled -> new (duress_reopen: her duress PIN after her own cancel)
```
This module is the only writer of ``incident.status``. Every transition is a timeline event
(with its outbox row, so consoles hear of it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import BadRequest, Conflict, NotFound
from app.incidents import timeline
from app.incidents.status import CLOSED, OPEN, IncidentStatus
from app.models import Incident

__all__ = ["CLOSED", "OPEN", "TRANSITIONS", "IncidentStatus", "transition"]

S = IncidentStatus
#: The moves a person makes through ``transition``; the member's cancel and the duress reopen
#: have functions of their own (they set more than the status).
TRANSITIONS: Final[dict[str, frozenset[IncidentStatus]]] = {
    S.NEW: frozenset({S.ACKNOWLEDGED, S.FALSE_ALARM, S.CANCELLED}),
    S.ACKNOWLEDGED: frozenset({S.RESPONDING, S.ON_SCENE, S.RESOLVED, S.FALSE_ALARM, S.CANCELLED}),
    S.RESPONDING: frozenset({S.ON_SCENE, S.RESOLVED, S.FALSE_ALARM, S.CANCELLED}),
    S.ON_SCENE: frozenset({S.RESOLVED, S.FALSE_ALARM, S.CANCELLED}),
    S.RESOLVED: frozenset(),
    S.FALSE_ALARM: frozenset(),
    S.CANCELLED: frozenset(),
}


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


async def lock_incident(session: AsyncSession, incident_id: uuid.UUID) -> Incident:
    incident = await session.scalar(
        select(Incident).where(Incident.id == incident_id).with_for_update()
    )
    if incident is None:
        raise NotFound(f"incident {incident_id} not found")
    return incident


async def transition(
    session: AsyncSession,
    *,
    incident: Incident,
    target: str,
    actor: str,
    disposition: str | None = None,
    data: dict[str, object] | None = None,
) -> Incident:
    """Move a locked incident to ``target``; an illegal move is a 409. Flushes, never commits."""
    if target not in TRANSITIONS:
        raise BadRequest(f"unknown status {target!r}")
    if not can_transition(incident.status, target):
        raise Conflict(f"cannot go from {incident.status} to {target}")
    if target == "resolved" and not (disposition and disposition.strip()):
        raise BadRequest("a disposition is required to resolve an incident")
    now = datetime.now(UTC)
    previous = incident.status
    incident.status = target
    incident.updated_at = now
    if target == "acknowledged":
        incident.acknowledged_at = now
        incident.unwatched_at = None  # a person has it
    if target != "new":
        # Once a human has it (or it is closed) no acknowledgement deadline is running.
        incident.ack_deadline_at = None
    if target in CLOSED:
        incident.closed_at = now
        incident.disposition = disposition.strip() if disposition else target
    await timeline.record(
        session,
        incident_id=incident.id,
        kind=target,
        actor=actor,
        data={
            "from": previous,
            **({"disposition": disposition} if disposition else {}),
            **(data or {}),
        },
    )
    return incident


async def acknowledge(session: AsyncSession, *, incident_id: uuid.UUID, actor: str) -> Incident:
    incident = await lock_incident(session, incident_id)
    if incident.status != "new":
        raise Conflict(f"incident is already {incident.status}")
    return await transition(session, incident=incident, target="acknowledged", actor=actor)


async def member_cancel(
    session: AsyncSession, *, incident: Incident, actor: str, now: datetime
) -> None:
    """Her own cancel with her real PIN, on a locked open incident not under duress: closed as
    ``cancelled_by_member`` (a console's cancel goes through ``transition``)."""
    if incident.status not in OPEN or incident.duress:
        raise Conflict(f"a member cannot cancel an incident that is {incident.status}")
    incident.status = S.CANCELLED
    incident.closed_at = now
    incident.disposition = "cancelled_by_member"
    await timeline.record(session, incident_id=incident.id, kind="cancelled", actor=actor)


def duress_reopen(incident: Incident) -> None:
    """Her duress PIN after her own cancel: the cancel was forced, so the incident is new
    again (the caller records the ``duress_cancel`` event that says why)."""
    if incident.status == S.CANCELLED:
        incident.status = S.NEW
        incident.closed_at = None
        incident.disposition = None
