"""A guardian's link to her open alert: her name, what police did, her live position.

The token is an HMAC of the incident and the guardian under the secret key: every message of
one incident carries the same link, the sender renders it when it sends (no token is stored in
the queue), and only its SHA-256 is in ``guardian_view``. It works while the incident is open
(a duress cancel leaves it open) and answers 410 once it is closed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

import asyncpg

from app.config import Settings
from app.errors import AppError, NotFound
from app.incidents.status import OPEN
from app.security.tokens import hash_token

GUARDIAN_PREFIX = "ag_"
TRAIL_POINTS = 200


class GuardianViewClosed(AppError):
    status_code = 410


def view_token(settings: Settings, incident_id: uuid.UUID, guardian_id: uuid.UUID) -> str:
    mac = hmac.new(
        settings.secret_key.encode(),
        b"guardian-view:" + incident_id.bytes + guardian_id.bytes,
        hashlib.sha256,
    ).digest()
    return GUARDIAN_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def view_url(settings: Settings, incident_id: uuid.UUID, guardian_id: uuid.UUID) -> str:
    base = settings.public_base_url.rstrip("/")
    return f"{base}/guardian/{view_token(settings, incident_id, guardian_id)}"


async def ensure_views(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    incident_id: uuid.UUID,
    guardian_ids: list[uuid.UUID],
) -> None:
    await conn.executemany(
        "INSERT INTO guardian_view (id, incident_id, guardian_id, token_hash)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        [
            (uuid.uuid4(), incident_id, g, hash_token(view_token(settings, incident_id, g)))
            for g in guardian_ids
        ],
    )


_VIEW_SQL = """
SELECT v.incident_id, v.guardian_id, i.status, i.received_at, i.acknowledged_at, i.closed_at,
       i.escalation_level, i.accuracy_m, i.location_captured_at,
       ST_Y(i.location::geometry) AS lat, ST_X(i.location::geometry) AS lon,
       m.name AS member_name, d.name AS district_name,
       EXISTS (SELECT 1 FROM assignment a WHERE a.incident_id = i.id AND a.kind = 'unit')
         AS unit_assigned,
       (SELECT count(*) FROM assignment a WHERE a.incident_id = i.id AND a.kind = 'volunteer')
         AS volunteers_assigned
FROM guardian_view v JOIN incident i ON i.id = v.incident_id
LEFT JOIN member m ON m.id = i.member_id
LEFT JOIN district d ON d.id = i.district_id
WHERE v.token_hash = $1
"""
_TRAIL_SQL = """
SELECT lat, lon, accuracy_m, captured_at FROM (
  SELECT ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon, accuracy_m, captured_at, id
  FROM location_point WHERE incident_id = $1 ORDER BY id DESC LIMIT $2
) t ORDER BY id
"""
_LOG_SQL = """
INSERT INTO location_access (incident_id, staff_ids, guardian_id, reason)
VALUES ($1, '{}', $2, 'guardian_view')
"""

#: What a guardian reads for each status (police's side of it, in plain words).
STATUS_TEXT = {
    "new": "Police have been alerted and not yet answered.",
    "acknowledged": "Police have acknowledged the alert.",
    "responding": "Police are on their way.",
    "on_scene": "Police are with her.",
}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


async def read_view(pool: asyncpg.Pool, *, token: str) -> dict[str, Any]:
    """The view behind a guardian's token, and the read logged (promise 6): 404 for a token
    we never issued, 410 once the incident is closed."""
    row = await pool.fetchrow(_VIEW_SQL, hash_token(token))
    if row is None:
        raise NotFound("no such guardian link")
    if row["status"] not in OPEN:
        raise GuardianViewClosed("this alert is closed; the link no longer shows her position")
    async with pool.acquire() as conn, conn.transaction():
        trail = await conn.fetch(_TRAIL_SQL, row["incident_id"], TRAIL_POINTS)
        await conn.execute(_LOG_SQL, row["incident_id"], row["guardian_id"])
    return {
        "incident_id": str(row["incident_id"]),
        "name": row["member_name"] or "",
        "status": row["status"],
        "status_text": STATUS_TEXT.get(row["status"], row["status"]),
        "received_at": row["received_at"].isoformat(),
        "police": {
            "acknowledged_at": _iso(row["acknowledged_at"]),
            "unit_assigned": row["unit_assigned"],
            "volunteers_assigned": row["volunteers_assigned"],
            "escalated": row["escalation_level"] > 0,
        },
        "district": row["district_name"],
        "location": {
            "lat": row["lat"],
            "lon": row["lon"],
            "accuracy_m": row["accuracy_m"],
            "captured_at": _iso(row["location_captured_at"]),
        }
        if row["lat"] is not None
        else None,
        "trail": [
            {
                "lat": p["lat"],
                "lon": p["lon"],
                "accuracy_m": p["accuracy_m"],
                "captured_at": _iso(p["captured_at"]),
            }
            for p in trail
        ],
    }
