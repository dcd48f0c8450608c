"""Her homes in her data export, and what her erasure does to them (plain SQL on her session,
called by app/incidents/member_data.py).

Nothing in her export tells a duress disarm apart while it is held (Promise 9): an arming
entry tied to a silent incident at her home (her duress PIN at the door, a panel's duress
code, a silent panic) shows as a plain disarm, and the alarm itself is left out, until that
incident has been closed for ``cancel_hold_s`` (as her own alerts' duress cancels are held)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

_HOMES_SQL = text(
    "SELECT h.id, h.label, h.address, h.state, h.state_changed_at, h.created_at, h.enabled,"
    " ST_Y(h.geog::geometry) AS lat, ST_X(h.geog::geometry) AS lon,"
    " x.code AS district_code, x.name AS district_name"
    " FROM home h LEFT JOIN district x ON x.id = h.district_id"
    " WHERE h.member_id = :m ORDER BY h.created_at, h.id"
)
_DEVICES_SQL = text(
    "SELECT d.home_id, d.id, d.kind, d.label, d.enabled, d.created_at, d.battery_pct,"
    " d.last_seen_at, a.account AS alarm_account"
    " FROM device d LEFT JOIN alarm_account a ON a.device_id = d.id"
    " WHERE d.home_id = ANY(:homes) ORDER BY d.kind, d.created_at, d.id"
).bindparams(bindparam("homes", type_=ARRAY(UUID(as_uuid=True))))
# ``held``: tied to a silent incident not yet closed for the hold.
_HELD = (
    "(i.id IS NOT NULL AND i.silent AND (i.closed_at IS NULL"
    " OR i.closed_at > now() - make_interval(secs => :hold)))"
)
_HISTORY_SQL = text(
    "SELECT e.home_id, e.at, e.kind, e.via, d.kind AS device_kind, e.incident_id, e.duress,"
    f" {_HELD} AS held"
    " FROM home_arming_event e LEFT JOIN device d ON d.id = e.device_id"
    " LEFT JOIN incident i ON i.id = e.incident_id"
    " WHERE e.home_id = ANY(:homes) ORDER BY e.at, e.id"
).bindparams(bindparam("homes", type_=ARRAY(UUID(as_uuid=True))))
_ALARMS_SQL = text(
    "SELECT i.home_id, i.id, i.received_at, i.trigger, i.status, i.closed_at"
    " FROM incident i WHERE i.home_id = ANY(:homes) AND NOT"
    f" {_HELD} ORDER BY i.received_at, i.id"
).bindparams(bindparam("homes", type_=ARRAY(UUID(as_uuid=True))))


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def export_homes(
    session: AsyncSession, *, member_id: uuid.UUID, cancel_hold_s: float
) -> list[dict[str, Any]]:
    """Her homes: the address and position, the district, the state, every device (no
    secret), the whole arming history and the alarms raised there (held ones left out)."""
    homes = (await session.execute(_HOMES_SQL, {"m": member_id})).all()
    if not homes:
        return []
    ids = [h.id for h in homes]
    devices = (await session.execute(_DEVICES_SQL, {"homes": ids})).all()
    history = (await session.execute(_HISTORY_SQL, {"homes": ids, "hold": cancel_hold_s})).all()
    alarms = (await session.execute(_ALARMS_SQL, {"homes": ids, "hold": cancel_hold_s})).all()
    out = []
    for h in homes:
        out.append(
            {
                "home_id": str(h.id),
                "label": h.label,
                "address": h.address,
                "location": {"lat": h.lat, "lon": h.lon},
                "district": {"code": h.district_code, "name": h.district_name}
                if h.district_code
                else None,
                "state": h.state,
                "state_changed_at": _iso(h.state_changed_at),
                "registered_at": _iso(h.created_at),
                "enabled": h.enabled,
                "devices": [
                    {
                        "device_id": str(d.id),
                        "kind": d.kind,
                        "label": d.label,
                        "enabled": d.enabled,
                        "registered_at": _iso(d.created_at),
                        "battery_pct": d.battery_pct,
                        "last_seen_at": _iso(d.last_seen_at),
                        "alarm_account": d.alarm_account,
                    }
                    for d in devices
                    if d.home_id == h.id
                ],
                "arming_history": [
                    {
                        "at": _iso(e.at),
                        "kind": e.kind,
                        "via": e.via,
                        "device_kind": e.device_kind,
                        "incident_id": None
                        if e.held or e.incident_id is None
                        else str(e.incident_id),
                        "duress": e.duress and not e.held,
                    }
                    for e in history
                    if e.home_id == h.id and not (e.held and e.kind == "alarm")
                ],
                "alarms": [
                    {
                        "incident_id": str(a.id),
                        "received_at": _iso(a.received_at),
                        "trigger": a.trigger,
                        "status": a.status,
                        "closed_at": _iso(a.closed_at),
                    }
                    for a in alarms
                    if a.home_id == h.id
                ],
            }
        )
    return out


async def erase_homes(session: AsyncSession, *, member_id: uuid.UUID) -> list[uuid.UUID]:
    """Part of her erasure (same transaction; her homes' alarms are closed, the caller checked):
    the address and label go, the position is coarsened to 0.01° like her incidents', the
    sensors and alarm panels stop (their signals are refused, a panel's messages answered
    DUH), the arming history (when she was at home) is deleted, and the alarms raised there
    keep only the coarse position, without her address in their timeline. Returns those
    alarms' ids, whose outbox and Redis copies the caller forgets with her own incidents'."""
    params = {"m": member_id}
    homes = "(SELECT id FROM home WHERE member_id = :m)"
    incident_ids = list(
        await session.scalars(text(f"SELECT id FROM incident WHERE home_id IN {homes}"), params)
    )
    await session.execute(
        text(
            "UPDATE incident SET location = ST_SnapToGrid(location::geometry, 0.01)::geography,"
            f" note = NULL WHERE home_id IN {homes}"
        ),
        params,
    )
    await session.execute(
        text(
            "UPDATE incident_event SET data = data - 'address' - 'home_label'"
            f" WHERE incident_id IN (SELECT id FROM incident WHERE home_id IN {homes})"
            " AND (data ? 'address' OR data ? 'home_label')"
        ),
        params,
    )
    await session.execute(text(f"DELETE FROM home_arming_event WHERE home_id IN {homes}"), params)
    await session.execute(
        text(f"UPDATE device SET enabled = false WHERE home_id IN {homes}"), params
    )
    await session.execute(
        text(f"UPDATE alarm_account SET enabled = false, label = NULL WHERE home_id IN {homes}"),
        params,
    )
    await session.execute(
        text(
            "UPDATE home SET address = '(erased)', label = NULL, enabled = false,"
            " entry_due_at = NULL, geog = ST_SnapToGrid(geog::geometry, 0.01)::geography"
            " WHERE member_id = :m"
        ),
        params,
    )
    return incident_ids
