"""Panic-button health: a button whose heartbeats stop is reported offline on its district's
consoles, once per outage (the next heartbeat re-arms it: ``service.update_health`` clears
``offline_reported_at``).

Every dispatcher runs ``report_offline`` periodically. The devices are taken ``FOR UPDATE SKIP
LOCKED`` and marked in the same statement that writes the outbox rows, so several dispatchers
never report one outage twice, and a report is never lost: the console message goes through the
outbox → stream → dispatcher path like every incident message, at least once, deduplicated by the
outbox id on the console log."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import orjson

from app.config import Settings
from app.dispatch import console_log
from app.dispatch.routing import Context, PoisonEntry

TOPIC_DEVICE_OFFLINE = "device.offline"
EV_OFFLINE = "device_offline"

_REPORT_SQL = """
WITH due AS (
  SELECT d.id FROM device d
  WHERE d.enabled AND d.offline_reported_at IS NULL
    AND coalesce(d.last_heartbeat_at, d.created_at) < now() - make_interval(secs => $1)
  ORDER BY coalesce(d.last_heartbeat_at, d.created_at)
  LIMIT $2
  FOR UPDATE OF d SKIP LOCKED
), upd AS (
  UPDATE device d SET offline_reported_at = now()
  FROM due WHERE d.id = due.id
  RETURNING d.id, d.label, d.safe_place_id, d.last_heartbeat_at, d.last_seen_at, d.battery_pct,
            d.offline_reported_at
), info AS (
  SELECT upd.*, p.name AS store_name, p.address, p.phone,
         ST_Y(p.geog::geometry) AS lat, ST_X(p.geog::geometry) AS lon, dist.id AS district_id,
         dist.code AS district_code, dist.name AS district_name
  FROM upd JOIN safe_place p ON p.id = upd.safe_place_id
  LEFT JOIN LATERAL (
    SELECT x.id, x.code, x.name FROM district x WHERE ST_Covers(x.boundary, p.geog::geometry)
    ORDER BY x.code LIMIT 1
  ) dist ON true
), ev AS (
  INSERT INTO security_event (kind, device_id, detail)
  SELECT $4, id, jsonb_build_object('last_heartbeat_at', last_heartbeat_at,
                                    'offline_after_s', $1::float8)
  FROM info
), ob AS (
  INSERT INTO outbox (topic, incident_id, payload)
  SELECT $3, NULL, jsonb_build_object(
    'kind', 'device_offline',
    'district_id', district_id, 'district_code', district_code, 'district_name', district_name,
    'offline_after_s', $1::float8,
    'device', jsonb_build_object(
      'id', id, 'label', label, 'battery_pct', battery_pct,
      'last_heartbeat_at', last_heartbeat_at, 'last_seen_at', last_seen_at,
      'offline_since', offline_reported_at,
      'store', jsonb_build_object('id', safe_place_id, 'name', store_name, 'address', address,
                                  'phone', phone, 'lat', lat, 'lon', lon)))
  FROM info
  RETURNING id
)
SELECT count(*) AS reported FROM ob
"""


async def report_offline(pool: asyncpg.Pool, settings: Settings, *, batch: int = 200) -> int:
    """Report every enabled device whose heartbeat is overdue and not yet reported; returns how
    many were reported (their outbox rows are committed; kick the relay)."""
    total = 0
    while True:
        reported: int = await pool.fetchval(
            _REPORT_SQL, settings.device_offline_after_s, batch, TOPIC_DEVICE_OFFLINE, EV_OFFLINE
        )
        total += reported
        if reported < batch:
            return total


def is_device_entry(fields: dict[bytes, bytes]) -> bool:
    return fields.get(b"topic") == TOPIC_DEVICE_OFFLINE.encode()


def console_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The console message (docs/dispatch.md, type ``device``)."""
    return {
        "type": "device",
        "event": "offline",
        "device": payload["device"],
        "district_id": payload.get("district_id"),
        "district_code": payload.get("district_code"),
        "district_name": payload.get("district_name"),
        "data": {"offline_after_s": payload.get("offline_after_s")},
    }


async def publish_device_entry(ctx: Context, fields: dict[bytes, bytes]) -> None:
    """A dispatcher's handler for a ``device.offline`` stream entry: one console message for the
    store's district (city-wide consoles only when the store is outside every district)."""
    try:
        outbox_id = int(fields[b"outbox_id"])
        payload = orjson.loads(fields[b"payload"])
        district = payload.get("district_id")
        district_id = uuid.UUID(district) if district else None
        body = console_body(payload)
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise PoisonEntry(f"malformed device entry: {exc!r}") from exc
    await console_log.append(
        ctx.redis, ctx.settings, dedupe_key=f"o{outbox_id}", district_id=district_id, body=body
    )
    await ctx.pool.execute(
        "INSERT INTO dispatch_receipt (outbox_id) VALUES ($1) ON CONFLICT DO NOTHING", outbox_id
    )
