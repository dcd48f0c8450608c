"""Who is coming: what the member's own view of her alert shows."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def responders_for(
    pool: asyncpg.Pool | asyncpg.Connection, incident_id: uuid.UUID
) -> dict[str, Any]:
    """Police acknowledgement, assigned units and volunteers (name + badge number, to check)."""
    row = await pool.fetchrow(
        "SELECT status, acknowledged_at FROM incident WHERE id = $1", incident_id
    )
    rows = await pool.fetch(
        "SELECT a.kind, a.unit, s.name, s.badge_number, a.created_at FROM assignment a"
        " LEFT JOIN staff s ON s.id = a.volunteer_id WHERE a.incident_id = $1"
        " ORDER BY a.created_at",
        incident_id,
    )
    acknowledged_at = row["acknowledged_at"] if row is not None else None
    return {
        "police_acknowledged": acknowledged_at is not None,
        "police_acknowledged_at": acknowledged_at.isoformat() if acknowledged_at else None,
        "police_units": [r["unit"] for r in rows if r["kind"] == "unit"],
        "volunteers": [
            {
                "name": r["name"],
                "badge_number": r["badge_number"],
                "assigned_at": r["created_at"].isoformat(),
            }
            for r in rows
            if r["kind"] == "volunteer"
        ],
    }
