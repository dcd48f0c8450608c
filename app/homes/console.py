"""What a console shows of a home sensor's incident (plain SQL, no imports from the intake, so
app/incidents/console_service.py can use it)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

#: The console shows this much of a home's arming history.
HISTORY_S = 24 * 3600.0


async def console_home(
    conn: asyncpg.Connection | asyncpg.Pool, *, incident_id: uuid.UUID
) -> dict[str, Any] | None:
    """For a sensor incident's console detail: her home (address, state), the sensor that
    fired (for an alarm panel also the zone and the code it reported), and the arming history
    of the last 24 hours (a duress disarm marked ``duress``)."""
    row = await conn.fetchrow(
        "SELECT h.id, h.label, h.address, h.state, h.state_changed_at,"
        " ST_Y(h.geog::geometry) AS lat, ST_X(h.geog::geometry) AS lon,"
        " d.id AS device_id, d.kind AS device_kind, d.label AS device_label,"
        # An alarm panel's alarm: the zone (or user) and the code it reported.
        " r.data->>'zone' AS zone, r.data->>'alarm_code' AS alarm_code"
        " FROM incident i JOIN home h ON h.id = i.home_id"
        " LEFT JOIN LATERAL (SELECT e.data FROM incident_event e WHERE e.incident_id = i.id"
        "   AND e.kind = 'reported' ORDER BY e.id LIMIT 1) r ON true"
        " LEFT JOIN device d ON d.id = i.device_id WHERE i.id = $1",
        incident_id,
    )
    if row is None:
        return None
    events = await conn.fetch(
        "SELECT e.at, e.kind, e.via, e.actor, e.device_id, d.kind AS device_kind,"
        " d.label AS device_label, e.incident_id, e.duress"
        " FROM home_arming_event e LEFT JOIN device d ON d.id = e.device_id"
        " WHERE e.home_id = $1 AND e.at > now() - make_interval(secs => $2::float8)"
        " ORDER BY e.at, e.id",
        row["id"],
        HISTORY_S,
    )
    return {
        "id": str(row["id"]),
        "label": row["label"],
        "address": row["address"],
        "lat": row["lat"],
        "lon": row["lon"],
        "state": row["state"],
        "state_changed_at": row["state_changed_at"].isoformat(),
        "sensor": {
            "id": str(row["device_id"]),
            "kind": row["device_kind"],
            "label": row["device_label"],
            "zone": row["zone"],
            "alarm_code": row["alarm_code"],
        }
        if row["device_id"]
        else None,
        "arming_history": [
            {
                "at": e["at"].isoformat(),
                "kind": e["kind"],
                "via": e["via"],
                "actor": e["actor"],
                "device": {
                    "id": str(e["device_id"]),
                    "kind": e["device_kind"],
                    "label": e["device_label"],
                }
                if e["device_id"]
                else None,
                "incident_id": str(e["incident_id"]) if e["incident_id"] else None,
                "duress": e["duress"],
            }
            for e in events
        ],
    }
