"""Alarm accounts: an operator registers a panel's account number and line prefix to a store
or to a member's home (``ansim alarm-accounts create`` or ``POST /v1/admin/alarm-accounts``).

Each account gets a ``device`` row (kind ``panel``) at the store or the home: the panel's
health (offline after its supervision interval, troubles, tamper) is shown on the consoles of
that district like a panic button's. Its HMAC secret is random and never shown (a panel
reports over DC-09; the HTTP device APIs refuse a panel's id like an unknown device's).
"""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

import asyncpg

from app.devices.service import create_device
from app.errors import BadRequest, Conflict, NotFound
from app.models import DeviceKind
from app.receiver import protocol

_ACCOUNT = re.compile(r"[0-9A-F]{3,16}")
_PREFIX = re.compile(r"[0-9A-F]{0,6}")

_COLUMNS = """a.id, a.account, a.prefix, a.safe_place_id, a.home_id, a.device_id, a.label,
  a.aes_key IS NOT NULL AS encrypted, a.supervision_s, a.window_past_s, a.window_future_s,
  a.enabled, a.last_message_at, a.created_at, d.offline_reported_at AS offline_since,
  d.troubles, d.last_heartbeat_at"""


def new_key() -> str:
    """A random AES-256 key as 64 hex digits (enter it in the panel as a hex key)."""
    return secrets.token_hex(32)


def _as_json(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    for k, v in out.items():
        if isinstance(v, uuid.UUID):
            out[k] = str(v)
        elif hasattr(v, "isoformat"):
            out[k] = v.isoformat()
    out["troubles"] = list(row["troubles"])
    return out


async def create_account(
    conn: asyncpg.Connection,
    *,
    place_id: uuid.UUID | None = None,
    home_id: uuid.UUID | None = None,
    account: str,
    prefix: str = "0",
    key: str | None = None,
    key_hex: bool | None = None,
    supervision_s: float,
    window_past_s: float = 40.0,
    window_future_s: float = 20.0,
    label: str | None = None,
) -> dict[str, Any]:
    """Register the account to a store (``place_id``) or a member's home (``home_id``), in one
    transaction with its device. ``key``: 16/24/32 ASCII characters or 32/48/64 hex digits
    (``key_hex`` forces one reading)."""
    if (place_id is None) == (home_id is None):
        raise BadRequest("an alarm account belongs to a store (place_id) or a home (home_id)")
    account, prefix = account.upper(), prefix.upper()
    if not _ACCOUNT.fullmatch(account):
        raise BadRequest("the account number is 3 to 16 hex characters (0-9, A-F)")
    if not _PREFIX.fullmatch(prefix):
        raise BadRequest("the line prefix is up to 6 hex characters (0-9, A-F)")
    if not 0 < supervision_s <= 7 * 24 * 3600:
        raise BadRequest("the supervision interval is between 0 and 7 days (in seconds)")
    if not (0 <= window_past_s <= 3600 and 0 <= window_future_s <= 3600):
        raise BadRequest("the timestamp window is 0 to 3600 seconds each way")
    if key is not None:
        try:
            parsed = protocol.parse_key(key, hex_key=key_hex)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        key_hex = parsed != key.encode()
    async with conn.transaction():
        if await conn.fetchval(
            "SELECT true FROM alarm_account WHERE prefix = $1 AND account = $2", prefix, account
        ):
            raise Conflict(f"account {account} on prefix {prefix} is already registered")
        creds = await create_device(
            conn,
            place_id=place_id,
            home_id=home_id,
            kind=DeviceKind.panel,
            label=label or f"alarm panel #{account}",
            offline_after_s=supervision_s,
        )
        account_id = await conn.fetchval(
            "INSERT INTO alarm_account (id, account, prefix, safe_place_id, home_id, device_id,"
            " label, aes_key, key_hex, supervision_s, window_past_s, window_future_s)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            uuid.uuid4(),
            account,
            prefix,
            place_id,
            home_id,
            creds.device_id,
            label,
            key,
            bool(key_hex),
            supervision_s,
            window_past_s,
            window_future_s,
        )
        return await get_account(conn, account_id)


async def get_account(
    conn: asyncpg.Connection | asyncpg.Pool, account_id: uuid.UUID
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM alarm_account a JOIN device d ON d.id = a.device_id"
        " WHERE a.id = $1",
        account_id,
    )
    if row is None:
        raise NotFound(f"no alarm account {account_id}")
    return _as_json(row)


async def list_accounts(
    conn: asyncpg.Connection | asyncpg.Pool, *, limit: int = 1000
) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM alarm_account a JOIN device d ON d.id = a.device_id"
        " ORDER BY d.offline_reported_at NULLS LAST, a.prefix, a.account LIMIT $1",
        limit,
    )
    return [_as_json(r) for r in rows]


async def account_log(
    conn: asyncpg.Connection | asyncpg.Pool, account_id: uuid.UUID, *, limit: int = 100
) -> list[dict[str, Any]]:
    """The account's log, newest first (unknown codes included)."""
    rows = await conn.fetch(
        "SELECT id, received_at, token, seq, code, qualifier, zone, area, action, incident_id,"
        " detail FROM alarm_event WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
        account_id,
        limit,
    )
    return [_as_json_log(r) for r in rows]


def _as_json_log(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["received_at"] = row["received_at"].isoformat()
    out["incident_id"] = str(row["incident_id"]) if row["incident_id"] else None
    return out


async def set_enabled(
    conn: asyncpg.Connection | asyncpg.Pool, *, account_id: uuid.UUID, enabled: bool
) -> None:
    """A disabled account's messages are answered DUH (and its device is not supervised)."""
    device_id = await conn.fetchval(
        "UPDATE alarm_account SET enabled = $2 WHERE id = $1 RETURNING device_id",
        account_id,
        enabled,
    )
    if device_id is None:
        raise NotFound(f"no alarm account {account_id}")
    await conn.execute("UPDATE device SET enabled = $2 WHERE id = $1", device_id, enabled)
