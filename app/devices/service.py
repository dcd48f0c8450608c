"""Panic buttons: who is calling (signature, clock window, nonce), what a signal does, and the
operator's device life cycle (create, rotate the secret, disable).

The intake runs on the raw asyncpg pool (a panic is the hot path: a device look-up, one
incident statement, one nearest-police query, one health update); only ``cancel`` uses the ORM
session, because it goes through the timeline helper.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.devices.signals import ParsedSignal, SignalType
from app.errors import NotFound, Unauthorized
from app.geo.nearest import nearest_places
from app.incidents.store import (
    Folded,
    NewIncident,
    Replay,
    StoredIncident,
    fold_report,
    insert_incident,
)
from app.incidents.timeline import record
from app.models import POLICE_KINDS, Incident
from app.security import device_signature
from app.security.tokens import new_device_secret

log = logging.getLogger(__name__)

NEAREST_POLICE_LIMIT = 3

# Security-event kinds (stable: operators query and alert on them).
EV_BAD_HEADERS = "device_bad_headers"
EV_STALE_TIMESTAMP = "device_stale_timestamp"
EV_UNKNOWN = "device_unknown"
EV_DISABLED = "device_disabled"
EV_BAD_SIGNATURE = "device_bad_signature"
EV_NONCE_REUSED = "device_nonce_reused"
EV_TAMPER = "device_tamper"

# The 401 details. Unknown, disabled and badly signed share one text so that a caller without the
# secret cannot learn whether a device id exists or is enabled.
DETAIL_HEADERS = "missing or malformed signature headers"
DETAIL_STALE = "timestamp outside the accepted window"
DETAIL_REJECTED = "signature rejected"
DETAIL_NONCE = "nonce already used"

SERVER_TIME_HEADER = "X-Ansim-Server-Time"


class DeviceUnauthorized(Unauthorized):
    """401 for a device request; carries the server clock so a drifting button can resync."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers = {
            "WWW-Authenticate": 'Ansim-HMAC realm="devices"',
            SERVER_TIME_HEADER: str(int(time.time())),
        }


@dataclass(frozen=True)
class Store:
    id: uuid.UUID
    name: str
    address: str | None
    phone: str | None
    lat: float
    lon: float

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "address": self.address,
            "phone": self.phone,
            "lat": self.lat,
            "lon": self.lon,
        }


@dataclass(frozen=True)
class AuthenticatedDevice:
    id: uuid.UUID
    label: str | None
    store: Store
    #: "current" or "previous": which secret signed (the previous one only during rotation).
    key: str
    nonce: str
    #: False when Redis could not be asked; only a panic proceeds then (see ``authenticate``).
    nonce_checked: bool

    @property
    def actor(self) -> str:
        return f"device:{self.id}"


_DEVICE_SQL = """
SELECT d.id, d.label, d.secret, d.enabled,
       CASE WHEN d.previous_secret_until > now() THEN d.previous_secret END AS previous_secret,
       p.id AS place_id, p.name, p.address, p.phone,
       ST_Y(p.geog::geometry) AS lat, ST_X(p.geog::geometry) AS lon
FROM device d JOIN safe_place p ON p.id = d.safe_place_id
WHERE d.id = $1
"""

_SECURITY_EVENT_SQL = """
INSERT INTO security_event (kind, device_id, source_ip, detail) VALUES ($1, $2, $3::inet, $4)
"""


def _ip_or_none(host: str | None) -> str | None:
    if not host:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def record_security_event(
    pool: asyncpg.Pool,
    *,
    kind: str,
    device_id: uuid.UUID | None,
    source_ip: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Committed on its own, so the evidence survives the request being refused."""
    await pool.execute(_SECURITY_EVENT_SQL, kind, device_id, _ip_or_none(source_ip), detail or {})


async def authenticate(
    *,
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    device_ref: str,
    timestamp: str | None,
    nonce: str | None,
    signature: str | None,
    body: bytes,
    source_ip: str | None,
    now: float | None = None,
) -> AuthenticatedDevice:
    """The device that signed this request, or ``DeviceUnauthorized`` after recording why.

    Order matters: the cheap checks that need no secret come first; the nonce is stored only
    once the signature verifies, so nobody without the secret can burn a device's nonces.
    """
    try:
        device_id: uuid.UUID | None = uuid.UUID(device_ref)
    except ValueError:
        device_id = None
    # Whatever the prober put in the path, kept as evidence but printable (JSONB refuses NUL).
    shown = "".join(c if c.isprintable() else "\ufffd" for c in device_ref[:80])
    detail: dict[str, Any] = {} if device_id is not None else {"device_ref": shown}

    async def reject(kind: str, message: str, **extra: Any) -> DeviceUnauthorized:
        await record_security_event(
            pool, kind=kind, device_id=device_id, source_ip=source_ip, detail={**detail, **extra}
        )
        return DeviceUnauthorized(message)

    headers = device_signature.parse_headers(timestamp, nonce, signature)
    if headers is None:
        missing = [
            name
            for name, value in (
                (device_signature.TIMESTAMP_HEADER, timestamp),
                (device_signature.NONCE_HEADER, nonce),
                (device_signature.SIGNATURE_HEADER, signature),
            )
            if value is None
        ]
        raise await reject(EV_BAD_HEADERS, DETAIL_HEADERS, missing=missing)

    now_s = time.time() if now is None else now
    skew = headers.timestamp_s - now_s
    if abs(skew) > settings.device_clock_skew_s:
        raise await reject(EV_STALE_TIMESTAMP, DETAIL_STALE, skew_s=round(skew))

    row = await pool.fetchrow(_DEVICE_SQL, device_id) if device_id is not None else None
    candidates: list[str] = []
    if row is not None and row["enabled"]:
        candidates = [row["secret"]]
        if row["previous_secret"]:
            candidates.append(row["previous_secret"])
    # Verify even for an unknown or disabled device (against a decoy key) so every rejection
    # costs the same.
    matched = device_signature.verify(
        candidates, headers.timestamp, headers.nonce, body, headers.signature
    )
    if row is None:
        raise await reject(EV_UNKNOWN, DETAIL_REJECTED)
    if not row["enabled"]:
        raise await reject(EV_DISABLED, DETAIL_REJECTED)
    if matched is None:
        raise await reject(EV_BAD_SIGNATURE, DETAIL_REJECTED)
    assert device_id is not None

    nonce_checked = True
    try:
        # A nonce is accepted with timestamps within ±skew, so it must be remembered for the
        # whole 2×skew span in which the same signed request could be replayed.
        fresh = await redis.set(
            f"{settings.device_nonce_prefix}{device_id}:{headers.nonce}",
            b"1",
            nx=True,
            ex=2 * settings.device_clock_skew_s,
        )
    except RedisError as exc:
        log.warning("device nonce not checked (Redis unavailable): %s", type(exc).__name__)
        nonce_checked = False
    else:
        if not fresh:
            raise await reject(EV_NONCE_REUSED, DETAIL_NONCE, timestamp=headers.timestamp_s)

    return AuthenticatedDevice(
        id=device_id,
        label=row["label"],
        store=Store(
            id=row["place_id"],
            name=row["name"],
            address=row["address"],
            phone=row["phone"],
            lat=row["lat"],
            lon=row["lon"],
        ),
        key="current" if matched == 0 else "previous",
        nonce=headers.nonce,
        nonce_checked=nonce_checked,
    )


# --- what a signal does ---------------------------------------------------------------------

_EXISTING_SQL = """
SELECT i.id, i.status, i.received_at, i.closed_at,
       (i.closed_at IS NULL OR i.received_at > now() - make_interval(secs => $3)) AS foldable,
       dist.code AS district_code, dist.name AS district_name
FROM incident i LEFT JOIN district dist ON dist.id = i.district_id
WHERE i.device_id = $1 AND i.client_alert_id = $2
"""

_HEALTH_SQL = """
UPDATE device SET
  last_seen_at = now(),
  battery_pct = coalesce($2, battery_pct),
  last_heartbeat_at = CASE WHEN $3 THEN now() ELSE last_heartbeat_at END,
  offline_reported_at = CASE WHEN $3 THEN NULL ELSE offline_reported_at END,
  tampered_at = CASE WHEN $4 THEN now() ELSE tampered_at END,
  last_test_at = CASE WHEN $5 THEN now() ELSE last_test_at END
WHERE id = $1
RETURNING now() AS at
"""


@dataclass(frozen=True)
class PanicResult:
    created: bool
    body: dict[str, Any]


async def raise_panic(
    *, pool: asyncpg.Pool, settings: Settings, device: AuthenticatedDevice, signal: ParsedSignal
) -> PanicResult:
    """Create (or, for a retried ``signal_id``, find) the incident at the device's store.

    The incident, its first timeline event and its outbox row commit in one statement. A retry
    races safely: the partial unique index on (device_id, client_alert_id) lets exactly one
    insert win; the loser's statement rolls back whole and it reads the winner's incident.
    """
    body = signal.body
    flags = list(signal.flags)
    warnings = list(signal.warnings)
    if not device.nonce_checked:
        # Redis was down: accepted without replay protection (a replay would carry the same
        # signal_id and fold into this incident anyway).
        flags.append("nonce_unchecked")
    event_data: dict[str, Any] = {
        "signal_id": str(body.signal_id) if body.signal_id else None,
        "device_label": device.label,
        "store_name": device.store.name,
        "key": device.key,
        "firmware": body.firmware,
        "battery_pct": body.battery_pct,
        "sent_at": body.sent_at.isoformat() if body.sent_at else None,
        "warnings": warnings,
    }

    def new(client_alert_id: uuid.UUID | None) -> NewIncident:
        return NewIncident(
            source="button",
            trigger=body.type.value,
            silent=body.type is SignalType.silent_panic,
            actor=device.actor,
            device_id=device.id,
            safe_place_id=device.store.id,
            client_alert_id=client_alert_id,
            lat=device.store.lat,
            lon=device.store.lon,
            battery_pct=body.battery_pct,
            flags=tuple(flags),
            event_data=event_data,
        )

    created = True
    stored = await _insert(pool, new(body.signal_id), fold_window_s=settings.device_fold_window_s)
    if isinstance(stored, Folded):
        created = False
        warnings.append(
            {
                "code": "folded_into_open_alert",
                "field": "type",
                "detail": "this button's alert is still open; the press was joined to it",
            }
        )
        row = await fold_report(
            pool,
            incident_id=stored.into,
            actor=device.actor,
            data={"trigger": body.type.value, "signal_id": event_data["signal_id"]},
        )
        incident_id, status, received_at = row["id"], row["status"], row["received_at"]
        district = _district(row["district_code"], row["district_name"])
    elif stored is not None:
        incident_id, status, received_at = stored.id, stored.status, stored.received_at
        district = _district(stored.district_code, stored.district_name)
    else:
        existing = await pool.fetchrow(
            _EXISTING_SQL, device.id, body.signal_id, float(settings.device_signal_id_ttl_s)
        )
        if existing is None:
            raise RuntimeError("incident insert conflicted but no incident holds the signal_id")
        if existing["foldable"]:
            created = False
            incident_id, status, received_at = (
                existing["id"],
                existing["status"],
                existing["received_at"],
            )
            district = _district(existing["district_code"], existing["district_name"])
        else:
            # The same signal_id long after its incident closed is a firmware bug, not a retry:
            # this press is a new emergency and must not be folded into an old one.
            warnings.append(
                {
                    "code": "signal_id_reused",
                    "field": "signal_id",
                    "detail": "already used for an earlier, closed incident; new incident raised",
                }
            )
            flags.append("signal_id_reused")
            event_data["warnings"] = warnings
            fresh = await _insert(pool, new(None))
            if not isinstance(fresh, StoredIncident):  # without a signal_id or fold: inserted
                raise RuntimeError("button incident without signal_id was not inserted")
            incident_id, status, received_at = fresh.id, fresh.status, fresh.received_at
            district = _district(fresh.district_code, fresh.district_name)

    # Both after the commit, independent of each other: run them side by side.
    _, police = await asyncio.gather(
        update_health(pool=pool, device_id=device.id, battery_pct=body.battery_pct),
        nearest_places(
            pool,
            lat=device.store.lat,
            lon=device.store.lon,
            limit=NEAREST_POLICE_LIMIT,
            kinds=[k.value for k in POLICE_KINDS],
            tz=settings.local_timezone,
        ),
    )
    return PanicResult(
        created=created,
        body={
            "incident_id": str(incident_id),
            "status": status,
            "received_at": received_at.isoformat(),
            "district": district,
            "store": device.store.as_json(),
            "nearest_police": [p.as_json() for p in police],
            "server_time": int(time.time()),
            "flags": flags,
            "warnings": warnings,
        },
    )


async def _insert(
    pool: asyncpg.Pool, new: NewIncident, *, fold_window_s: float = 0
) -> StoredIncident | Folded | None:
    """The stored incident, ``Folded`` when the button's alert is still open (a clerk pressing
    again), or ``None`` when this device already sent this signal_id."""
    try:
        result = await insert_incident(pool, new, fold_window_s=fold_window_s)
    except asyncpg.UniqueViolationError:
        return None
    return None if isinstance(result, Replay) else result


def _district(code: str | None, name: str | None) -> dict[str, str] | None:
    return {"code": code, "name": name} if code is not None and name is not None else None


async def update_health(
    *,
    pool: asyncpg.Pool,
    device_id: uuid.UUID,
    battery_pct: int | None = None,
    heartbeat: bool = False,
    tampered: bool = False,
    tested: bool = False,
) -> datetime:
    """Every accepted signal is proof of life (``last_seen_at``); a heartbeat also clears an
    offline report."""
    at: datetime = await pool.fetchval(
        _HEALTH_SQL, device_id, battery_pct, heartbeat, tampered, tested
    )
    return at


@dataclass(frozen=True)
class CancelResult:
    incident_id: uuid.UUID | None
    status: str | None
    cancelled: bool


async def cancel_from_device(
    *, session: AsyncSession, settings: Settings, device: AuthenticatedDevice, signal: ParsedSignal
) -> CancelResult:
    """The clerk pressed cancel after a false press.

    Reaches the device's most recent open incident received within the cancel window. It is
    cancelled only while still ``new``; once a dispatcher has acknowledged it, the cancel is
    only noted on the timeline (a dispatcher decides, and a forced cancel must not stop help).
    """
    stmt = (
        select(Incident)
        .where(
            Incident.device_id == device.id,
            Incident.closed_at.is_(None),
            Incident.received_at > func.now() - timedelta(seconds=settings.device_cancel_window_s),
        )
        .order_by(Incident.received_at.desc())
        .limit(1)
        .with_for_update()
    )
    incident = (await session.execute(stmt)).scalar_one_or_none()
    if incident is None:
        return CancelResult(incident_id=None, status=None, cancelled=False)
    applied = incident.status == "new"
    await record(
        session,
        incident_id=incident.id,
        kind="device_cancel",
        actor=device.actor,
        data={
            "signal_id": str(signal.body.signal_id) if signal.body.signal_id else None,
            "applied": applied,
            "status_before": incident.status,
        },
    )
    if applied:
        incident.status = "cancelled"
        incident.closed_at = func.now()
        incident.updated_at = func.now()
        incident.disposition = "cancelled_by_device"
        await session.flush()
    return CancelResult(incident_id=incident.id, status=incident.status, cancelled=applied)


# --- operator life cycle (the CLI) ----------------------------------------------------------


@dataclass(frozen=True)
class DeviceCredentials:
    device_id: uuid.UUID
    secret: str


async def create_device(
    conn: asyncpg.Connection | asyncpg.Pool, *, place_id: uuid.UUID, label: str | None = None
) -> DeviceCredentials:
    """Register a button at a safe place; the secret is returned once and never shown again."""
    if not await conn.fetchval("SELECT true FROM safe_place WHERE id = $1", place_id):
        raise NotFound(f"no safe place {place_id}")
    device_id = uuid.uuid4()
    secret = new_device_secret()
    await conn.execute(
        "INSERT INTO device (id, safe_place_id, label, secret, enabled)"
        " VALUES ($1, $2, $3, $4, true)",
        device_id,
        place_id,
        label,
        secret,
    )
    return DeviceCredentials(device_id, secret)


async def rotate_secret(
    conn: asyncpg.Connection | asyncpg.Pool, *, device_id: uuid.UUID, grace_seconds: int
) -> tuple[DeviceCredentials, datetime | None]:
    """A new secret; the old one stays valid for ``grace_seconds`` so the button can be
    re-provisioned without downtime. Rotating again inside the grace period retires the oldest."""
    secret = new_device_secret()
    row = await conn.fetchrow(
        "UPDATE device SET previous_secret = CASE WHEN $3::float8 > 0 THEN secret END,"
        " previous_secret_until ="
        "   CASE WHEN $3::float8 > 0 THEN now() + make_interval(secs => $3::float8) END,"
        " secret = $2 WHERE id = $1 RETURNING previous_secret_until",
        device_id,
        secret,
        float(grace_seconds),
    )
    if row is None:
        raise NotFound(f"no device {device_id}")
    return DeviceCredentials(device_id, secret), row["previous_secret_until"]


async def set_enabled(
    conn: asyncpg.Connection | asyncpg.Pool, *, device_id: uuid.UUID, enabled: bool
) -> None:
    done = await conn.fetchval(
        "UPDATE device SET enabled = $2 WHERE id = $1 RETURNING true", device_id, enabled
    )
    if not done:
        raise NotFound(f"no device {device_id}")
