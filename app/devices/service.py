"""Panic buttons: who is calling (signature, clock window, nonce), what a signal does, and the
operator's device life cycle (create, rotate the secret, disable).

The intake runs on the raw asyncpg pool (a panic is the hot path: a device look-up, one
incident statement, one nearest-police query, one health update); only ``cancel`` and
``duress`` use the ORM session, because they go through the timeline helper.

A button's cancel never closes an incident (a robber can make the clerk press it): it asks a
dispatcher to call the store. A duress (its own signal, or a double cancel on a device set up
for it) answers the store exactly like a cancel and escalates silently.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.devices.signals import ParsedSignal, SignalType
from app.errors import BadRequest, NotFound, Unauthorized
from app.geo.nearest import nearest_places
from app.incidents.lifecycle import lock_incident
from app.incidents.store import (
    Folded,
    NewIncident,
    Replay,
    StoredIncident,
    fold_report,
    insert_incident,
)
from app.incidents.timeline import record
from app.models import POLICE_KINDS, Device, DeviceKind, Incident
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

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Store:
        """From a row with ``place_id``, ``name``, ``address``, ``phone``, ``lat``, ``lon``."""
        return cls(
            id=row["place_id"],
            name=row["name"],
            address=row["address"],
            phone=row["phone"],
            lat=row["lat"],
            lon=row["lon"],
        )

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
    #: A second cancel within this many seconds of the first is duress (None: not set up).
    duress_double_cancel_s: float | None = None

    @property
    def actor(self) -> str:
        return f"device:{self.id}"


_DEVICE_SQL = """
SELECT d.id, d.label, d.secret, d.enabled, d.duress_double_cancel_s,
       CASE WHEN d.previous_secret_until > now() THEN d.previous_secret END AS previous_secret,
       p.id AS place_id, p.name, p.address, p.phone,
       ST_Y(p.geog::geometry) AS lat, ST_X(p.geog::geometry) AS lon
FROM device d JOIN safe_place p ON p.id = d.safe_place_id
WHERE d.id = $1 AND d.kind = 'button'
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


@dataclass(frozen=True)
class SignedRequest:
    """What a device sent: the id in its path, its three signature headers (any may be
    missing), the raw body it signed and the address it came from."""

    device_ref: str
    timestamp: str | None
    nonce: str | None
    signature: str | None
    body: bytes
    source_ip: str | None


@dataclass(frozen=True)
class VerifiedRequest:
    """A signed request that passed every check, with the device's row from the look-up."""

    device_id: uuid.UUID
    row: asyncpg.Record
    #: "current" or "previous": which secret signed (the previous one only during rotation).
    key: str
    nonce: str
    nonce_checked: bool


async def verify_signed_request(
    *,
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    device_sql: str,
    request: SignedRequest,
    now: float | None = None,
) -> VerifiedRequest:
    """The checks of every signed device request (store buttons and home sensors alike), or
    ``DeviceUnauthorized`` after recording why. ``device_sql`` looks the device up by id ($1)
    and returns at least ``secret``, ``enabled`` and ``previous_secret`` (still valid); a
    device it does not find is unknown to this endpoint.

    Order matters: the cheap checks that need no secret come first; the nonce is stored only
    once the signature verifies, so nobody without the secret can burn a device's nonces.
    """
    device_ref, source_ip = request.device_ref, request.source_ip
    timestamp, nonce, signature = request.timestamp, request.nonce, request.signature
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

    row = await pool.fetchrow(device_sql, device_id) if device_id is not None else None
    candidates: list[str] = []
    if row is not None and row["enabled"]:
        candidates = [row["secret"]]
        if row["previous_secret"]:
            candidates.append(row["previous_secret"])
    # Verify even for an unknown or disabled device (against a decoy key) so every rejection
    # costs the same.
    matched = device_signature.verify(
        candidates, headers.timestamp, headers.nonce, request.body, headers.signature
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
    return VerifiedRequest(
        device_id=device_id,
        row=row,
        key="current" if matched == 0 else "previous",
        nonce=headers.nonce,
        nonce_checked=nonce_checked,
    )


async def authenticate(
    *,
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    request: SignedRequest,
    now: float | None = None,
) -> AuthenticatedDevice:
    """The store button that signed this request (``verify_signed_request``); a home's
    sensor is unknown here (it signs to ``/v1/homes/devices/...``)."""
    verified = await verify_signed_request(
        pool=pool,
        redis=redis,
        settings=settings,
        device_sql=_DEVICE_SQL,
        request=request,
        now=now,
    )
    row = verified.row
    return AuthenticatedDevice(
        id=verified.device_id,
        label=row["label"],
        store=Store.from_row(row),
        key=verified.key,
        nonce=verified.nonce,
        nonce_checked=verified.nonce_checked,
        duress_double_cancel_s=row["duress_double_cancel_s"],
    )


# --- what a signal does ---------------------------------------------------------------------

_EXISTING_SQL = """
SELECT i.id, i.status, i.received_at, i.closed_at,
       (i.closed_at IS NULL OR i.received_at > now() - make_interval(secs => $3)) AS foldable,
       dist.code AS district_code, dist.name AS district_name
FROM incident i LEFT JOIN district dist ON dist.id = i.district_id
WHERE i.device_id = $1 AND i.client_alert_id = $2
"""

# A panic's proof of life; every other signal goes through ``health.record_signal``, which
# also writes the health messages for the consoles.
_HEALTH_SQL = """
UPDATE device SET last_seen_at = now(), battery_pct = coalesce($2, battery_pct)
WHERE id = $1
RETURNING now() AS at
"""


@dataclass(frozen=True)
class PanicResult:
    created: bool
    body: dict[str, Any]
    #: Joined to the button's alert that was still open (not created, not a retry).
    folded: bool = False


async def raise_panic(
    *,
    pool: asyncpg.Pool,
    settings: Settings,
    device: AuthenticatedDevice,
    signal: ParsedSignal,
    request_id: str | None = None,
) -> PanicResult:
    """Create (or, for a retried ``signal_id``, find) the incident at the device's store. The
    HTTP request's id (app/logs.py) travels in its outbox row to the console message, as a
    phone's SOS's does.

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
            request_id=request_id,
        )

    created = True
    stored = await _insert(pool, new(body.signal_id), fold_window_s=settings.device_fold_window_s)
    folded = isinstance(stored, Folded)
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
        folded=folded,
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
    *, pool: asyncpg.Pool, device_id: uuid.UUID, battery_pct: int | None = None
) -> datetime:
    """A panic is proof of life (``last_seen_at``) but not a heartbeat: it clears no offline
    report (app/devices/health.py)."""
    at: datetime = await pool.fetchval(_HEALTH_SQL, device_id, battery_pct)
    return at


@dataclass(frozen=True)
class CancelResult:
    """What the store is told: the same after a cancel request and after a duress."""

    incident_id: uuid.UUID | None
    status: str | None
    cancelled: bool


#: What a store's cancel (or duress) answers when it reached an incident; the incident itself
#: stays open until a dispatcher closes it.
_ANSWERED = "cancelled"
CANCEL_REQUESTED = "cancel_requested"


def _open_incident_stmt(device_id: uuid.UUID, within_s: float | None) -> Any:
    stmt = select(Incident).where(Incident.device_id == device_id, Incident.closed_at.is_(None))
    if within_s is not None:
        stmt = stmt.where(Incident.received_at > func.now() - timedelta(seconds=within_s))
    return stmt.order_by(Incident.received_at.desc()).limit(1).with_for_update()


def _store_message(device: AuthenticatedDevice, request_id: str | None = None) -> dict[str, Any]:
    """The console message's ``data`` for a store's event (and the signal's request id, which
    the console message carries as ``request_id``)."""
    message: dict[str, Any] = {
        "store": {
            "id": str(device.store.id),
            "name": device.store.name,
            "phone": device.store.phone,
            "address": device.store.address,
        },
        "device_label": device.label,
    }
    if request_id is not None:
        message["request_id"] = request_id
    return message


async def _is_second_press(
    session: AsyncSession, device: AuthenticatedDevice, signal: ParsedSignal
) -> bool:
    """Remember this cancel press; True when it is the second of a double cancel (within the
    device's ``duress_double_cancel_s`` of the previous one). A retry of the same press (same
    ``signal_id``) is not a second press."""
    window = device.duress_double_cancel_s
    if window is None:
        return False
    row = await session.get(Device, device.id, with_for_update=True)
    if row is None:
        return False
    signal_id = signal.body.signal_id
    if signal_id is not None and signal_id == row.last_cancel_signal_id:
        return False
    now = datetime.now(UTC)
    second = row.last_cancel_at is not None and now - row.last_cancel_at <= timedelta(
        seconds=window
    )
    # A double cancel is used up: a third press starts a new sequence.
    row.last_cancel_at = None if second else now
    row.last_cancel_signal_id = signal_id
    await session.flush()
    return second


async def cancel_from_device(
    *,
    session: AsyncSession,
    pool: asyncpg.Pool,
    settings: Settings,
    device: AuthenticatedDevice,
    signal: ParsedSignal,
    request_id: str | None = None,
) -> CancelResult:
    """The clerk pressed cancel: a request, never a close (a robber can make the clerk press it).

    Reaches the device's most recent open incident received within the cancel window: it gets
    a ``cancel_requested`` event and flag, and the console is told to call the store to verify;
    a dispatcher closes it. The store is told "cancelled" all the same. On a device set up for
    it, a second cancel within ``duress_double_cancel_s`` is a duress instead."""
    if await _is_second_press(session, device, signal):
        return await duress_from_device(
            session=session, pool=pool, device=device, signal=signal, via="double_cancel",
            request_id=request_id,
        )  # fmt: skip
    stmt = _open_incident_stmt(device.id, settings.device_cancel_window_s)
    incident = (await session.execute(stmt)).scalar_one_or_none()
    if incident is None:
        return CancelResult(incident_id=None, status=None, cancelled=False)
    data = {
        "signal_id": str(signal.body.signal_id) if signal.body.signal_id else None,
        "status_before": incident.status,
    }
    if incident.duress:
        # Under duress, nobody must call the store to "verify": only noted.
        await record(
            session, incident_id=incident.id, kind="device_cancel", actor=device.actor,
            data=data, publish=False,
        )  # fmt: skip
    else:
        if CANCEL_REQUESTED not in incident.flags:
            incident.flags = [*incident.flags, CANCEL_REQUESTED]
        incident.updated_at = func.now()
        await record(
            session,
            incident_id=incident.id,
            kind=CANCEL_REQUESTED,
            actor=device.actor,
            data={**data, **_store_message(device)},
            message=_store_message(device, request_id),
        )
    return CancelResult(incident_id=incident.id, status=_ANSWERED, cancelled=True)


async def duress_from_device(
    *,
    session: AsyncSession,
    pool: asyncpg.Pool,
    device: AuthenticatedDevice,
    signal: ParsedSignal,
    via: str = "signal",
    request_id: str | None = None,
) -> CancelResult:
    """The clerk's duress sequence: answered like a cancel, never closes or shows as cancelled.

    The device's most recent open incident (however old) is marked ``duress`` and silent, its
    ``cancel_requested`` flag dropped (nobody must call the store), and a ``duress`` event goes
    through the outbox: dispatch escalates it exactly like a member's duress. With no open
    incident a new silent one is raised; the store is then answered as a cancel that found
    nothing to cancel."""
    incident = (await session.execute(_open_incident_stmt(device.id, None))).scalar_one_or_none()
    reached = incident is not None
    if incident is None:
        stored = await _insert(
            pool,
            NewIncident(
                source="button",
                trigger="duress",
                silent=True,
                actor=device.actor,
                device_id=device.id,
                safe_place_id=device.store.id,
                lat=device.store.lat,
                lon=device.store.lon,
                battery_pct=signal.body.battery_pct,
                event_data={
                    "device_label": device.label,
                    "store_name": device.store.name,
                    "key": device.key,
                    "via": via,
                },
                request_id=request_id,
            ),
        )
        if not isinstance(stored, StoredIncident):
            raise RuntimeError("duress incident without signal_id was not inserted")
        incident = await lock_incident(session, stored.id)
    data = {
        "via": via,
        "signal_id": str(signal.body.signal_id) if signal.body.signal_id else None,
        "status_before": incident.status,
    }
    if incident.duress:
        await record(
            session, incident_id=incident.id, kind="device_duress", actor=device.actor,
            data=data, publish=False,
        )  # fmt: skip
    else:
        incident.duress = True
        incident.silent = True
        incident.flags = [f for f in incident.flags if f != CANCEL_REQUESTED]
        incident.updated_at = func.now()
        # ``duress`` escalates in dispatch (app/dispatch/routing.py ESCALATING), as a member's.
        await record(
            session,
            incident_id=incident.id,
            kind="duress",
            actor=device.actor,
            data={**data, **_store_message(device)},
            message={**_store_message(device, request_id), "via": via},
        )
    if not reached:
        return CancelResult(incident_id=None, status=None, cancelled=False)
    return CancelResult(incident_id=incident.id, status=_ANSWERED, cancelled=True)


# --- operator life cycle (the CLI) ----------------------------------------------------------


@dataclass(frozen=True)
class DeviceCredentials:
    device_id: uuid.UUID
    secret: str


DEFAULT_DOUBLE_CANCEL_S = 5.0


async def create_device(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    place_id: uuid.UUID | None = None,
    home_id: uuid.UUID | None = None,
    kind: DeviceKind = DeviceKind.button,
    label: str | None = None,
    duress_double_cancel_s: float | None = None,
    offline_after_s: float | None = None,
) -> DeviceCredentials:
    """Register a device: a button at a safe place, a sensor at a home, or an alarm panel at
    either (``place_id`` or ``home_id``, as the ``kind`` allows). The secret is returned once
    and never shown again. ``duress_double_cancel_s``: a second cancel within that many
    seconds is duress; ``offline_after_s``: its own offline threshold (a panel's supervision)."""
    _check_window(duress_double_cancel_s)
    if (place_id is None) == (home_id is None):
        raise BadRequest("a device belongs to a store or to a home")
    if place_id is not None:
        if kind not in (DeviceKind.button, DeviceKind.panel):
            raise BadRequest(f"a {kind.value} sensor belongs to a home, not a store")
        if not await conn.fetchval("SELECT true FROM safe_place WHERE id = $1", place_id):
            raise NotFound(f"no safe place {place_id}")
    else:
        if kind is DeviceKind.button:
            raise BadRequest("a panic button belongs to a store, not a home")
        if not await conn.fetchval("SELECT true FROM home WHERE id = $1 AND enabled", home_id):
            raise NotFound(f"no home {home_id}")
    device_id = uuid.uuid4()
    secret = new_device_secret()
    await conn.execute(
        "INSERT INTO device (id, safe_place_id, home_id, kind, label, secret, enabled,"
        " duress_double_cancel_s, offline_after_s) VALUES ($1, $2, $3, $4, $5, $6, true, $7, $8)",
        device_id,
        place_id,
        home_id,
        kind.value,
        label,
        secret,
        duress_double_cancel_s,
        offline_after_s,
    )
    return DeviceCredentials(device_id, secret)


def _check_window(seconds: float | None) -> None:
    if seconds is not None and not 0 < seconds <= 60:
        raise BadRequest("the double-cancel window must be between 0 and 60 seconds")


async def set_double_cancel(
    conn: asyncpg.Connection | asyncpg.Pool, *, device_id: uuid.UUID, seconds: float | None
) -> None:
    """Turn the double-cancel duress sequence on (a window in seconds) or off (None)."""
    _check_window(seconds)
    done = await conn.fetchval(
        "UPDATE device SET duress_double_cancel_s = $2, last_cancel_at = NULL,"
        " last_cancel_signal_id = NULL WHERE id = $1 RETURNING true",
        device_id,
        seconds,
    )
    if not done:
        raise NotFound(f"no device {device_id}")


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
