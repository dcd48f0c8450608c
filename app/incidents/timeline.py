"""Timeline events for the ORM paths (console actions, cancels, escalations).

Each recorded event also writes an outbox row in the same transaction, so dispatch hears of it
only after the commit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.incidents.store import TOPIC_UPDATED
from app.models import IncidentEvent, Outbox

#: ``session.info`` key: this unit of work wrote an outbox row (the relay is kicked on commit).
OUTBOX_WRITTEN = "outbox_written"


async def record(
    session: AsyncSession,
    *,
    incident_id: uuid.UUID,
    kind: str,
    actor: str | None,
    data: dict[str, Any] | None = None,
    publish: bool = True,
    message: dict[str, Any] | None = None,
) -> IncidentEvent:
    """Add a timeline event (and, when ``publish``, its outbox row); flushes, never commits.
    ``message``: more fields for the outbox payload, which consoles get as the message's
    ``data`` (e.g. the store's phone to call)."""
    event = IncidentEvent(incident_id=incident_id, kind=kind, actor=actor, data=data or {})
    session.add(event)
    if publish:
        session.info[OUTBOX_WRITTEN] = True
        session.add(
            Outbox(
                topic=TOPIC_UPDATED,
                incident_id=incident_id,
                payload={**(message or {}), "incident_id": str(incident_id), "kind": kind},
            )
        )
    await session.flush()
    return event
