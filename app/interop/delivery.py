"""The documents as they leave: an export for a dispatcher, a delivery to an agency.

Both read the incident, log the position they carry in ``location_access`` (a staff read for
an export; the subscription for a delivery) in the same transaction, and render it.

A delivery is one signed POST (the gateways' signature, ``app/dispatch/gateways.py``) made by
the notification sender (``app/notifications/sender.py``) like any push or text: it runs in
every dispatcher, and its queue's claim lets an incident's deliveries to one agency out one at
a time, in the order the changes were queued."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import httpx
import orjson

from app.config import Settings
from app.dispatch.gateways import Attempt, post_signed
from app.errors import NotFound
from app.incidents.console_service import in_scope, log_location_access
from app.interop import cap, eido, subscriptions
from app.interop.snapshot import Snapshot, load

log = logging.getLogger(__name__)

Format = Literal["cap", "eido"]
EXPORT_REASON = "agency_export"
DELIVERY_REASON = "agency_delivery"


@dataclass(frozen=True)
class Document:
    body: bytes
    media_type: str
    snapshot: Snapshot


def render(settings: Settings, snapshot: Snapshot, format: str) -> Document:
    if format == "cap":
        return Document(cap.render(settings, snapshot), cap.MEDIA_TYPE, snapshot)
    return Document(orjson.dumps(eido.render(settings, snapshot)), eido.MEDIA_TYPE, snapshot)


async def export(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    incident_id: uuid.UUID,
    format: Format,
    staff_id: uuid.UUID,
    city_wide: bool,
    district_ids: frozenset[uuid.UUID],
) -> Document:
    """A dispatcher's export, scoped like the incident detail (another district's incident is
    a 404); the position it carries is logged as her read."""
    async with pool.acquire() as conn, conn.transaction():
        snapshot = await load(conn, incident_id)
        if snapshot is None or not in_scope(
            city_wide=city_wide,
            district_ids=district_ids,
            district_id=snapshot.district_id,
            covered_by=snapshot.covered_by,
        ):
            raise NotFound(f"incident {incident_id} not found")
        if snapshot.located:
            await log_location_access(
                conn, staff_id=staff_id, incident_ids=[incident_id], reason=EXPORT_REASON
            )
    return render(settings, snapshot, format)


_LOG_DELIVERY_SQL = """
INSERT INTO location_access (incident_id, staff_ids, agency_subscription_id, reason)
VALUES ($1, '{}', $2, $3)
"""


class AgencyGateway:
    """The ``agency`` channel of the notification sender: ``target`` names the subscription;
    the document is made now, from the incident as it stands."""

    channel = subscriptions.CHANNEL

    def __init__(self, *, pool: asyncpg.Pool, settings: Settings, http: httpx.AsyncClient) -> None:
        self.pool = pool
        self.settings = settings
        self.http = http

    async def send(self, *, target: str, message: dict[str, Any], idempotency_key: str) -> Attempt:
        subscription_id = uuid.UUID(target.partition(":")[2])
        incident_id = uuid.UUID(str(message["incident_id"]))
        async with self.pool.acquire() as conn, conn.transaction():
            sub = await subscriptions.secret_of(conn, subscription_id)
            if sub is None or not sub["enabled"]:
                return Attempt(False, None, "subscription disabled or removed")
            snapshot = await load(conn, incident_id)
            if snapshot is None:
                return Attempt(False, None, "incident gone")
            # Logged before it leaves: a position is never sent unrecorded (an attempt that
            # never reached the agency is logged too).
            if snapshot.located:
                await conn.execute(_LOG_DELIVERY_SQL, incident_id, subscription_id, DELIVERY_REASON)
        document = render(self.settings, snapshot, sub["format"])
        return await post_signed(
            self.http,
            sub["url"],
            key=sub["secret"],
            body=document.body,
            headers={
                "Content-Type": document.media_type,
                "Idempotency-Key": idempotency_key,
                "X-Ansim-Incident": str(incident_id),
                "X-Ansim-Change": str(message.get("kind", "")),
                "X-Ansim-Sequence": str(message["sequence"]),
            },
            timeout_s=self.settings.interop_timeout_s,
        )
