"""Panic-button (and home sensor) health, both ways, on the district's consoles (type
``device`` messages):

- ``offline``: a button whose heartbeats stop, once per outage. Every dispatcher runs
  ``report_offline`` periodically; the devices are taken ``FOR UPDATE SKIP LOCKED`` and marked
  in the same statement that writes the outbox rows, so several dispatchers never report one
  outage twice.
- ``online``: its next heartbeat, once per outage (the heartbeat clears the report and writes
  the message in one statement, ``record_signal``).
- ``low_battery`` and ``tamper``: once per episode, not on every signal that repeats them.

Every message goes through the outbox → stream → dispatcher path like every incident message,
at least once, deduplicated by the outbox id on the console log. ``console_devices`` lists the
buttons that are in trouble now, for the console snapshot (a reload must not hide them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from app.config import Settings
from app.dispatch import console_log
from app.dispatch.routing import Context, PoisonEntry

TOPIC_DEVICE_OFFLINE = "device.offline"
#: ``online``, ``low_battery`` and ``tamper`` messages (written on a button's own signal).
TOPIC_DEVICE_HEALTH = "device.health"
_TOPICS = frozenset({TOPIC_DEVICE_OFFLINE.encode(), TOPIC_DEVICE_HEALTH.encode()})
EV_OFFLINE = "device_offline"

#: A ``low_battery`` or ``tamper`` signal this long after the previous one of its kind starts a
#: new episode (reported again); one that repeats sooner (firmware that sends it with every
#: heartbeat) is the same episode. A tamper is shown on consoles for this long.
EPISODE_QUIET_S = 3600.0
#: A signal reporting at least this battery level ends a low-battery episode (new batteries).
BATTERY_RECOVERED_PCT = 50

_DISTRICT_LATERAL = """
  LEFT JOIN LATERAL (
    SELECT x.id, x.code, x.name FROM district x
    WHERE ST_Covers(x.boundary, coalesce(p.geog, h.geog)::geometry)
    ORDER BY x.code LIMIT 1
  ) dist ON true
"""


def _device_json(d: str) -> str:
    """The ``device`` object of a console message, from device alias ``d`` and its store
    ``p`` or home ``h`` (docs/dispatch.md; a home's sensor has ``store`` null and ``home``
    with the address a technician needs, no position)."""
    return f"""jsonb_build_object(
      'id', {d}.id, 'kind', {d}.kind, 'label', {d}.label, 'battery_pct', {d}.battery_pct,
      'last_heartbeat_at', {d}.last_heartbeat_at, 'last_seen_at', {d}.last_seen_at,
      'offline_since', {d}.offline_reported_at, 'low_battery_at', {d}.low_battery_at,
      'tampered_at', {d}.tampered_at, 'troubles', {d}.troubles,
      'store', CASE WHEN p.id IS NOT NULL THEN jsonb_build_object(
                 'id', p.id, 'name', p.name, 'address', p.address, 'phone', p.phone,
                 'lat', ST_Y(p.geog::geometry), 'lon', ST_X(p.geog::geometry)) END,
      'home', CASE WHEN h.id IS NOT NULL THEN jsonb_build_object(
                 'id', h.id, 'label', h.label, 'address', h.address) END)"""


def _owner_join(d: str) -> str:
    """The store (``p``) or home (``h``) of device alias ``d``."""
    return (
        f" LEFT JOIN safe_place p ON p.id = {d}.safe_place_id"
        f" LEFT JOIN home h ON h.id = {d}.home_id"
    )


_REPORT_SQL = f"""
WITH due AS (
  SELECT d.id FROM device d
  WHERE d.enabled AND d.offline_reported_at IS NULL
    AND coalesce(d.last_heartbeat_at, d.created_at)
        < now() - make_interval(secs => coalesce(d.offline_after_s, $1))
  ORDER BY coalesce(d.last_heartbeat_at, d.created_at)
  LIMIT $2
  FOR UPDATE OF d SKIP LOCKED
), upd AS (
  UPDATE device d SET offline_reported_at = now()
  FROM due WHERE d.id = due.id
  RETURNING d.*
), info AS (
  SELECT upd.id, upd.last_heartbeat_at, coalesce(upd.offline_after_s, $1) AS after_s,
         dist.id AS district_id, dist.code AS district_code,
         dist.name AS district_name, {_device_json("upd")} AS device
  FROM upd{_owner_join("upd")}
  {_DISTRICT_LATERAL}
), ev AS (
  INSERT INTO security_event (kind, device_id, detail)
  SELECT $4, id, jsonb_build_object('last_heartbeat_at', last_heartbeat_at,
                                    'offline_after_s', after_s)
  FROM info
), ob AS (
  INSERT INTO outbox (topic, incident_id, payload)
  SELECT $3, NULL, jsonb_build_object(
    'kind', 'device_offline', 'event', 'offline',
    'district_id', district_id, 'district_code', district_code, 'district_name', district_name,
    'offline_after_s', after_s, 'device', device)
  FROM info
  RETURNING id
)
SELECT count(*) AS reported FROM ob
"""


async def report_offline(pool: asyncpg.Pool, settings: Settings, *, batch: int = 200) -> int:
    """Report every enabled device whose heartbeat is overdue and not yet reported (after its
    own ``offline_after_s``, an alarm panel's supervision interval, or the setting); returns
    how many were reported (their outbox rows are committed; kick the relay)."""
    total = 0
    while True:
        reported: int = await pool.fetchval(
            _REPORT_SQL, settings.device_offline_after_s, batch, TOPIC_DEVICE_OFFLINE, EV_OFFLINE
        )
        total += reported
        if reported < batch:
            return total


# $1 device, $2 battery_pct, $3 heartbeat, $4 tamper, $5 test, $6 low_battery, $7 the episode
# gap, $8 the recovered battery level, $9 the topic. The row lock first, so that of two
# heartbeats at once only one sees the offline report it clears.
_SIGNAL_SQL = f"""
WITH old AS (
  SELECT id, offline_reported_at, low_battery_at, tampered_at FROM device WHERE id = $1
  FOR UPDATE
), upd AS (
  UPDATE device d SET
    last_seen_at = now(),
    battery_pct = coalesce($2::int, d.battery_pct),
    last_heartbeat_at = CASE WHEN $3::bool THEN now() ELSE d.last_heartbeat_at END,
    offline_reported_at = CASE WHEN $3::bool THEN NULL ELSE d.offline_reported_at END,
    tampered_at = CASE WHEN $4::bool THEN now() ELSE d.tampered_at END,
    last_test_at = CASE WHEN $5::bool THEN now() ELSE d.last_test_at END,
    low_battery_at = CASE WHEN $6::bool THEN now() WHEN $2::int >= $8::int THEN NULL
                          ELSE d.low_battery_at END
  FROM old WHERE d.id = old.id
  RETURNING d.*, old.offline_reported_at AS was_offline_since,
    array_remove(ARRAY[
      CASE WHEN $3::bool AND old.offline_reported_at IS NOT NULL THEN 'online' END,
      CASE WHEN $6::bool AND (old.low_battery_at IS NULL
                              OR old.low_battery_at < now() - make_interval(secs => $7::float8))
           THEN 'low_battery' END,
      CASE WHEN $4::bool AND (old.tampered_at IS NULL
                              OR old.tampered_at < now() - make_interval(secs => $7::float8))
           THEN 'tamper' END
    ], NULL) AS events
), info AS (
  SELECT upd.events, upd.was_offline_since, upd.battery_pct, dist.id AS district_id,
         dist.code AS district_code, dist.name AS district_name, {_device_json("upd")} AS device
  FROM upd{_owner_join("upd")}
  {_DISTRICT_LATERAL}
  WHERE cardinality(upd.events) > 0
), ob AS (
  INSERT INTO outbox (topic, incident_id, payload)
  SELECT $9, NULL, jsonb_build_object(
    'kind', 'device_' || e, 'event', e,
    'district_id', district_id, 'district_code', district_code, 'district_name', district_name,
    'device', device,
    'data', CASE e WHEN 'online' THEN jsonb_build_object('offline_since', was_offline_since)
                   WHEN 'low_battery' THEN jsonb_build_object('battery_pct', battery_pct)
                   ELSE '{{}}'::jsonb END)
  FROM info, unnest(info.events) AS e
  RETURNING id
)
SELECT (SELECT now()) AS at, (SELECT count(*) FROM ob) AS reported
"""


@dataclass(frozen=True)
class SignalHealth:
    at: datetime
    #: Console messages written to the outbox (kick the relay when > 0).
    reported: int


async def record_signal(
    pool: asyncpg.Pool,
    *,
    device_id: uuid.UUID,
    battery_pct: int | None = None,
    heartbeat: bool = False,
    tampered: bool = False,
    tested: bool = False,
    low_battery: bool = False,
) -> SignalHealth:
    """A signal's proof of life (``last_seen_at``, battery), and its console messages: a
    heartbeat after an offline report is ``online``; a ``low_battery`` or ``tamper`` that
    starts an episode is reported. One statement: the messages commit with the update."""
    row = await pool.fetchrow(
        _SIGNAL_SQL,
        device_id,
        battery_pct,
        heartbeat,
        tampered,
        tested,
        low_battery,
        EPISODE_QUIET_S,
        BATTERY_RECOVERED_PCT,
        TOPIC_DEVICE_HEALTH,
    )
    return SignalHealth(at=row["at"], reported=row["reported"])


async def record_signal_of_type(
    pool: asyncpg.Pool, *, device_id: uuid.UUID, signal_type: str, battery_pct: int | None
) -> SignalHealth:
    """``record_signal`` for a signal of this type (a store button's or a home sensor's: the
    health types are named alike)."""
    return await record_signal(
        pool,
        device_id=device_id,
        battery_pct=battery_pct,
        heartbeat=signal_type == "heartbeat",
        tampered=signal_type == "tamper",
        tested=signal_type == "test",
        low_battery=signal_type == "low_battery",
    )


_TROUBLE_SQL = f"""
SELECT {_device_json("d")} AS device, dist.id AS district_id, dist.code AS district_code,
       dist.name AS district_name,
       array_remove(ARRAY[
         CASE WHEN d.offline_reported_at IS NOT NULL THEN 'offline' END,
         CASE WHEN d.low_battery_at IS NOT NULL THEN 'low_battery' END,
         CASE WHEN d.tampered_at > now() - make_interval(secs => $3::float8) THEN 'tamper' END,
         CASE WHEN cardinality(d.troubles) > 0 THEN 'trouble' END
       ], NULL) AS problems
FROM device d{_owner_join("d")}
{_DISTRICT_LATERAL}
WHERE d.enabled
  AND (d.offline_reported_at IS NOT NULL OR d.low_battery_at IS NOT NULL
       OR d.tampered_at > now() - make_interval(secs => $3::float8)
       OR cardinality(d.troubles) > 0)
  AND ($1::bool OR dist.id = ANY($2::uuid[]))
ORDER BY d.offline_reported_at NULLS LAST, coalesce(p.name, h.label), d.id
LIMIT $4
"""


async def console_devices(
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    city_wide: bool,
    district_ids: frozenset[uuid.UUID],
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """The buttons in trouble now (offline, low battery, tampered with lately) that a console
    with this scope sees: city-wide, all; otherwise those of stores in its districts. Each is
    the ``device`` object of a message with its district and ``problems``."""
    rows = await pool.fetch(_TROUBLE_SQL, city_wide, list(district_ids), EPISODE_QUIET_S, limit)
    return [
        {
            **r["device"],
            "district_id": str(r["district_id"]) if r["district_id"] else None,
            "district_code": r["district_code"],
            "district_name": r["district_name"],
            "problems": list(r["problems"]),
        }
        for r in rows
    ]


# $1 device, $2 the trouble, $3 true: reported, false: restored, $4 the code, $5 the topic.
# Only a change is a message: a trouble reported again (a status report) or a restore of a
# trouble not on record writes nothing.
_TROUBLE_CHANGE_SQL = f"""
WITH old AS (
  SELECT id, troubles FROM device WHERE id = $1 FOR UPDATE
), upd AS (
  UPDATE device d SET
    troubles = CASE WHEN $3::bool THEN array_append(old.troubles, $2::text)
                    ELSE array_remove(old.troubles, $2::text) END
  FROM old
  WHERE d.id = old.id AND ($2::text = ANY(old.troubles)) <> $3::bool
  RETURNING d.*
), info AS (
  SELECT dist.id AS district_id, dist.code AS district_code, dist.name AS district_name,
         {_device_json("upd")} AS device
  FROM upd{_owner_join("upd")}
  {_DISTRICT_LATERAL}
), ob AS (
  INSERT INTO outbox (topic, incident_id, payload)
  SELECT $5, NULL, jsonb_build_object(
    'kind', CASE WHEN $3::bool THEN 'device_trouble' ELSE 'device_trouble_restored' END,
    'event', CASE WHEN $3::bool THEN 'trouble' ELSE 'trouble_restored' END,
    'district_id', district_id, 'district_code', district_code, 'district_name', district_name,
    'device', device, 'data', jsonb_build_object('trouble', $2::text, 'code', $4::text))
  FROM info
  RETURNING id
)
SELECT count(*) FROM ob
"""


async def record_trouble(
    pool: asyncpg.Pool, *, device_id: uuid.UUID, trouble: str, present: bool, code: str
) -> int:
    """An alarm panel's trouble (``present``) or its restore, on the district's consoles
    (``trouble`` / ``trouble_restored``) once per change; returns the messages written."""
    reported: int = await pool.fetchval(
        _TROUBLE_CHANGE_SQL, device_id, trouble, present, code, TOPIC_DEVICE_HEALTH
    )
    return reported


def is_device_entry(fields: dict[bytes, bytes]) -> bool:
    return fields.get(b"topic") in _TOPICS


def console_body(payload: dict[str, Any]) -> dict[str, Any]:
    """The console message (docs/dispatch.md, type ``device``)."""
    event = payload.get("event", "offline")
    data = payload.get("data")
    if data is None:
        data = {"offline_after_s": payload.get("offline_after_s")} if event == "offline" else {}
    return {
        "type": "device",
        "event": event,
        "device": payload["device"],
        "district_id": payload.get("district_id"),
        "district_code": payload.get("district_code"),
        "district_name": payload.get("district_name"),
        "data": data,
    }


async def publish_device_entry(ctx: Context, fields: dict[bytes, bytes]) -> None:
    """A dispatcher's handler for a device stream entry: one console message for the store's
    district (city-wide consoles only when the store is outside every district)."""
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
