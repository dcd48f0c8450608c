"""What city operators read and do: the location access log, security events, panic-button
health and life cycle, and revoking credentials.

Reads are plain SQL on the asyncpg pool (newest first, keyset pagination by id). Every operator
action is recorded as a ``security_event`` (kind ``admin_*``, with the operator's id) in the same
transaction as the change, so the audit trail cannot miss an action that happened."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.config import Settings
from app.devices import service as devices
from app.errors import NotFound


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class Page:
    """Filters shared by the log queries."""

    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100


def _where(page: Page, at_column: str, filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """``filters``: a column (equal to the value) or a condition with ``{}`` for the value."""
    args: list[Any] = []
    where = ["true"]
    for condition, value in filters.items():
        if value is not None:
            args.append(value)
            param = f"${len(args)}"
            where.append(condition.format(param) if "{}" in condition else f"{condition} = {param}")
    for op, value in ((">=", page.since), ("<", page.until)):
        if value is not None:
            args.append(value)
            where.append(f"{at_column} {op} ${len(args)}")
    if page.before_id is not None:
        args.append(page.before_id)
        where.append(f"x.id < ${len(args)}")
    args.append(page.limit)
    return " AND ".join(where), args


async def location_access(
    pool: asyncpg.Pool,
    *,
    incident_id: uuid.UUID | None,
    staff_id: uuid.UUID | None,
    reason: str | None,
    page: Page,
) -> list[dict[str, Any]]:
    """Who read which woman's location, when and why (promise 6), newest first. An entry is one
    write's reads of one incident, its readers in ``staff`` (in ``staff_ids`` order); a reader
    whose staff row is gone is still listed, by id (the record outlives what it records)."""
    where, args = _where(
        page,
        "x.at",
        {
            "x.incident_id": incident_id,
            # Containment, which the GIN index on staff_ids serves.
            "x.staff_ids @> ARRAY[{}]::uuid[]": staff_id,
            "x.reason": reason,
        },
    )
    rows = await pool.fetch(
        "SELECT x.id, x.at, x.incident_id, x.reason, x.staff_ids, x.agency_subscription_id"
        " FROM location_access x"
        f" WHERE {where} ORDER BY x.id DESC LIMIT ${len(args)}",
        *args,
    )
    staff = {
        s["id"]: s
        for s in await pool.fetch(
            "SELECT id, username, name, role FROM staff WHERE id = ANY($1::uuid[])",
            list({i for r in rows for i in r["staff_ids"]}),
        )
    }
    return [
        {
            "id": r["id"],
            "at": _iso(r["at"]),
            "incident_id": str(r["incident_id"]),
            "reason": r["reason"],
            "staff": [_reader(i, staff.get(i)) for i in r["staff_ids"]],
            # A delivery to another agency (app/interop): the subscription it went to.
            "agency_subscription_id": str(r["agency_subscription_id"])
            if r["agency_subscription_id"]
            else None,
        }
        for r in rows
    ]


_READER_FIELDS = ("username", "name", "role")


def _reader(staff_id: uuid.UUID, row: asyncpg.Record | None) -> dict[str, Any]:
    return {"id": str(staff_id), **{f: row[f] if row else None for f in _READER_FIELDS}}


async def security_events(
    pool: asyncpg.Pool,
    *,
    kind: str | None,
    device_id: uuid.UUID | None,
    member_id: uuid.UUID | None,
    page: Page,
) -> list[dict[str, Any]]:
    where, args = _where(
        page, "x.created_at", {"x.kind": kind, "x.device_id": device_id, "x.member_id": member_id}
    )
    rows = await pool.fetch(
        "SELECT x.id, x.created_at, x.kind, x.device_id, x.member_id, host(x.source_ip) AS ip,"
        f" x.detail FROM security_event x WHERE {where} ORDER BY x.id DESC LIMIT ${len(args)}",
        *args,
    )
    return [
        {
            "id": r["id"],
            "at": _iso(r["created_at"]),
            "kind": r["kind"],
            "device_id": str(r["device_id"]) if r["device_id"] else None,
            "member_id": str(r["member_id"]) if r["member_id"] else None,
            "source_ip": r["ip"],
            "detail": r["detail"],
        }
        for r in rows
    ]


async def audit(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    kind: str,
    operator_id: uuid.UUID,
    device_id: uuid.UUID | None = None,
    member_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO security_event (kind, device_id, member_id, detail) VALUES ($1, $2, $3, $4)",
        kind,
        device_id,
        member_id,
        {"operator_id": str(operator_id), **(detail or {})},
    )


# -- devices ----------------------------------------------------------------------------------

_DEVICES_SQL = """
SELECT d.id, d.label, d.enabled, d.created_at, d.last_seen_at, d.last_heartbeat_at,
       d.battery_pct, d.tampered_at, d.last_test_at, d.offline_reported_at,
       CASE WHEN d.previous_secret_until > now() THEN d.previous_secret_until END AS rotating_until,
       d.enabled AND coalesce(d.last_heartbeat_at, d.created_at)
         < now() - make_interval(secs => $1::float8) AS offline,
       d.kind, p.id AS place_id, p.name AS store_name, p.address,
       h.id AS home_id, h.label AS home_label, h.address AS home_address,
       dist.code AS district_code, dist.name AS district_name
FROM device d LEFT JOIN safe_place p ON p.id = d.safe_place_id
LEFT JOIN home h ON h.id = d.home_id
LEFT JOIN LATERAL (
  SELECT x.code, x.name FROM district x
  WHERE ST_Covers(x.boundary, coalesce(p.geog, h.geog)::geometry)
  ORDER BY x.code LIMIT 1
) dist ON true
"""


def _device_json(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "label": r["label"],
        "enabled": r["enabled"],
        "created_at": _iso(r["created_at"]),
        "kind": r["kind"],
        "store": {"id": str(r["place_id"]), "name": r["store_name"], "address": r["address"]}
        if r["place_id"]
        else None,
        # A home's sensor (app/homes/): the home it is installed in.
        "home": {"id": str(r["home_id"]), "label": r["home_label"], "address": r["home_address"]}
        if r["home_id"]
        else None,
        "district": {"code": r["district_code"], "name": r["district_name"]}
        if r["district_code"]
        else None,
        "health": {
            "offline": r["offline"],
            "offline_reported_at": _iso(r["offline_reported_at"]),
            "last_heartbeat_at": _iso(r["last_heartbeat_at"]),
            "last_seen_at": _iso(r["last_seen_at"]),
            "battery_pct": r["battery_pct"],
            "tampered_at": _iso(r["tampered_at"]),
            "last_test_at": _iso(r["last_test_at"]),
        },
        "previous_secret_valid_until": _iso(r["rotating_until"]),
    }


async def list_devices(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    offline: bool | None,
    enabled: bool | None,
    district_code: str | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Devices with their health; offline first, then the oldest heartbeat first."""
    args: list[Any] = [settings.device_offline_after_s]
    where = ["true"]
    if enabled is not None:
        args.append(enabled)
        where.append(f"d.enabled = ${len(args)}")
    if offline is not None:
        args.append(offline)
        where.append(
            f"(d.enabled AND coalesce(d.last_heartbeat_at, d.created_at)"
            f" < now() - make_interval(secs => $1::float8)) = ${len(args)}"
        )
    if district_code is not None:
        args.append(district_code)
        where.append(f"dist.code = ${len(args)}")
    args.append(limit)
    rows = await pool.fetch(
        f"{_DEVICES_SQL} WHERE {' AND '.join(where)}"
        " ORDER BY offline DESC, coalesce(d.last_heartbeat_at, d.created_at), d.id"
        f" LIMIT ${len(args)}",
        *args,
    )
    return [_device_json(r) for r in rows]


async def get_device(
    conn: asyncpg.Pool | asyncpg.Connection, settings: Settings, device_id: uuid.UUID
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"{_DEVICES_SQL} WHERE d.id = $2", settings.device_offline_after_s, device_id
    )
    if row is None:
        raise NotFound(f"no device {device_id}")
    return _device_json(row)


async def set_device_enabled(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    operator_id: uuid.UUID,
    device_id: uuid.UUID,
    enabled: bool,
) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        await devices.set_enabled(conn, device_id=device_id, enabled=enabled)
        await audit(
            conn,
            kind="admin_device_enabled" if enabled else "admin_device_disabled",
            operator_id=operator_id,
            device_id=device_id,
        )
        return await get_device(conn, settings, device_id)


async def rotate_device_secret(
    pool: asyncpg.Pool, *, operator_id: uuid.UUID, device_id: uuid.UUID, grace_seconds: int
) -> dict[str, Any]:
    """A new secret, shown once; the previous one stays valid for ``grace_seconds``."""
    async with pool.acquire() as conn, conn.transaction():
        creds, previous_until = await devices.rotate_secret(
            conn, device_id=device_id, grace_seconds=grace_seconds
        )
        await audit(
            conn,
            kind="admin_device_secret_rotated",
            operator_id=operator_id,
            device_id=device_id,
            detail={"grace_seconds": grace_seconds},
        )
    return {
        "device_id": str(creds.device_id),
        "secret": creds.secret,
        "previous_secret_valid_until": _iso(previous_until),
    }


# -- credentials --------------------------------------------------------------------------------


async def revoke_staff_tokens(
    pool: asyncpg.Pool, *, operator_id: uuid.UUID, staff_id: uuid.UUID
) -> int:
    """Every live session of this staff member ends now (open console sockets are closed at
    their next token check, within ``console_ping_s``)."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT true FROM staff WHERE id = $1", staff_id):
            raise NotFound(f"no staff {staff_id}")
        revoked: int = await conn.fetchval(
            "WITH r AS (UPDATE staff_token SET revoked_at = now() WHERE staff_id = $1"
            " AND revoked_at IS NULL AND expires_at > now() RETURNING 1) SELECT count(*) FROM r",
            staff_id,
        )
        await audit(
            conn,
            kind="admin_staff_tokens_revoked",
            operator_id=operator_id,
            detail={"staff_id": str(staff_id), "revoked": revoked},
        )
    return revoked


async def revoke_member_tokens(
    pool: asyncpg.Pool, *, operator_id: uuid.UUID, member_id: uuid.UUID
) -> int:
    """A lost or stolen phone: its app credential stops working (she registers again)."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT true FROM member WHERE id = $1", member_id):
            raise NotFound(f"no member {member_id}")
        revoked: int = await conn.fetchval(
            "WITH r AS (UPDATE member_token SET revoked_at = now() WHERE member_id = $1"
            " AND revoked_at IS NULL RETURNING 1) SELECT count(*) FROM r",
            member_id,
        )
        await audit(
            conn,
            kind="admin_member_tokens_revoked",
            operator_id=operator_id,
            member_id=member_id,
            detail={"revoked": revoked},
        )
    return revoked
