"""Homes of members living alone: registration, arming, the entry delay, and the alarms.

A home's sensors are devices (the ``device`` table, ``kind`` door / home_button / motion /
keypad) so they share everything with a store's button: the signature, the clock window, the
nonce store, key rotation and disabling (app/devices/service.py), and health reports on the
district's consoles (app/devices/health.py).

The rules:

- armed **away**, a door opened (or motion) starts the entry delay: ``home.entry_due_at`` is set
  in PostgreSQL and every dispatcher sweeps the due ones (``raise_expired_entries``, SKIP
  LOCKED on a partial index), so a delay outlives any process; her PIN in time cancels it;
- armed **night** (she is at home), a door opened is an alarm at once;
- the in-home button (and the keypad's panic key) is an alarm at once, whatever the state;
- her **duress PIN** disarms exactly as her PIN does (same answer, same state) and raises a
  silent incident that escalates as a member's duress does.

Every alarm is an incident with source ``sensor`` at her home's address and position, written
with its timeline event and outbox row in one transaction (app/incidents/store.py), so the
district's consoles get it through the normal path."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from app.config import Settings
from app.devices.service import (
    SignedRequest,
    create_device,
    record_security_event,
    verify_signed_request,
)
from app.errors import BadRequest, Conflict, Forbidden, NotFound, TooManyRequests
from app.geo.nearest import district_at
from app.homes.signals import HomeSignal, HomeSignalType
from app.incidents.store import (
    TOPIC_UPDATED,
    Folded,
    NewIncident,
    StoredIncident,
    fold_report,
    insert_incident,
)
from app.models import ArmState, DeviceKind
from app.security.passwords import verify_secret

EV_WRONG_PIN = "wrong_disarm_pin"
#: A disarm refused because her PINs are locked out (too many wrong ones).
EV_LOCKED_OUT = "disarm_locked_out"


class WrongPin(Forbidden):
    """403 ``WrongPin``: the disarm PIN is neither hers nor her duress PIN."""


class PinLockedOut(TooManyRequests):
    """429: too many wrong PINs in a row (her SOS cancels' and disarms' together)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("too many wrong PINs: disarming is locked for a while")
        self.headers = {"Retry-After": str(retry_after_s)}


@dataclass(frozen=True)
class HomeRef:
    id: uuid.UUID
    member_id: uuid.UUID
    label: str | None
    address: str
    lat: float
    lon: float

    def as_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "label": self.label}


@dataclass(frozen=True)
class HomeDevice:
    id: uuid.UUID
    kind: str
    label: str | None
    home: HomeRef
    key: str
    nonce: str
    nonce_checked: bool

    @property
    def actor(self) -> str:
        return f"device:{self.id}"


_HOME_DEVICE_SQL = """
SELECT d.id, d.kind, d.label, d.secret, d.enabled AND h.enabled AS enabled,
       CASE WHEN d.previous_secret_until > now() THEN d.previous_secret END AS previous_secret,
       h.id AS home_id, h.member_id, h.label AS home_label, h.address,
       ST_Y(h.geog::geometry) AS lat, ST_X(h.geog::geometry) AS lon
FROM device d JOIN home h ON h.id = d.home_id
-- An alarm panel at her home reports over DC-09 (app/receiver/), never here.
WHERE d.id = $1 AND d.kind <> 'panel'
"""


async def authenticate(
    *,
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    request: SignedRequest,
) -> HomeDevice:
    """The home sensor that signed this request: the store button's checks exactly
    (``verify_signed_request``); a store's button is unknown here."""
    verified = await verify_signed_request(
        pool=pool,
        redis=redis,
        settings=settings,
        device_sql=_HOME_DEVICE_SQL,
        request=request,
    )
    row = verified.row
    return HomeDevice(
        id=verified.device_id,
        kind=row["kind"],
        label=row["label"],
        home=home_ref(row),
        key=verified.key,
        nonce=verified.nonce,
        nonce_checked=verified.nonce_checked,
    )


def home_ref(row: asyncpg.Record) -> HomeRef:
    return HomeRef(
        id=row["home_id"],
        member_id=row["member_id"],
        label=row["home_label"],
        address=row["address"],
        lat=row["lat"],
        lon=row["lon"],
    )


_LOCK_HOME_SQL = """
SELECT h.id AS home_id, h.member_id, h.label AS home_label, h.address, h.state,
       h.state_changed_at, h.entry_due_at, h.entry_device_id, h.entry_signal_id,
       ST_Y(h.geog::geometry) AS lat, ST_X(h.geog::geometry) AS lon
FROM home h WHERE h.id = $1 AND h.enabled FOR UPDATE
"""

_ARMING_EVENT_SQL = """
INSERT INTO home_arming_event (home_id, kind, via, actor, device_id, incident_id, duress)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""


async def _event(
    conn: asyncpg.Connection,
    home_id: uuid.UUID,
    kind: str,
    *,
    via: str,
    actor: str | None,
    device_id: uuid.UUID | None = None,
    incident_id: uuid.UUID | None = None,
    duress: bool = False,
) -> None:
    await conn.execute(_ARMING_EVENT_SQL, home_id, kind, via, actor, device_id, incident_id, duress)


@dataclass(frozen=True)
class HomeState:
    """What she (and the keypad) is told: the same after her PIN and after her duress PIN."""

    home_id: uuid.UUID
    state: str
    changed_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "home_id": str(self.home_id),
            "state": self.state,
            "changed_at": self.changed_at.isoformat(),
        }


async def arm(
    pool: asyncpg.Pool,
    *,
    home_id: uuid.UUID,
    mode: ArmState,
    via: str,
    actor: str,
    member_id: uuid.UUID | None = None,
    device_id: uuid.UUID | None = None,
) -> HomeState:
    """Arm away or night (``member_id``: only her own home). Refused while an entry delay runs
    (she disarms first); arming again in the same mode changes nothing."""
    if mode is ArmState.disarmed:
        raise BadRequest("arm away or night; disarm needs her PIN")
    async with pool.acquire() as conn, conn.transaction():
        home = await _lock_home(conn, home_id, member_id)
        if home["entry_due_at"] is not None:
            raise Conflict("an entry delay is running: disarm first")
        if home["state"] == mode.value:
            return HomeState(home_id, home["state"], home["state_changed_at"])
        changed_at: datetime = await conn.fetchval(
            "UPDATE home SET state = $2, state_changed_at = now(), entry_signal_id = NULL"
            " WHERE id = $1 RETURNING state_changed_at",
            home_id,
            mode.value,
        )
        await _event(conn, home_id, f"arm_{mode.value}", via=via, actor=actor, device_id=device_id)
    return HomeState(home_id, mode.value, changed_at)


async def _lock_home(
    conn: asyncpg.Connection, home_id: uuid.UUID, member_id: uuid.UUID | None
) -> asyncpg.Record:
    home = await conn.fetchrow(_LOCK_HOME_SQL, home_id)
    if home is None or (member_id is not None and home["member_id"] != member_id):
        raise NotFound("no such home")
    return home


async def _check_pin(
    conn: asyncpg.Connection, *, home_id: uuid.UUID, member_id: uuid.UUID | None, pin: str
) -> tuple[bool, bool]:
    """(her PIN, her duress PIN). Both hashes are always checked, so a duress PIN costs what
    her PIN costs."""
    hashes = await conn.fetchrow(
        "SELECT m.pin_hash, m.duress_pin_hash FROM home h JOIN member m ON m.id = h.member_id"
        " WHERE h.id = $1 AND h.enabled AND ($2::uuid IS NULL OR h.member_id = $2)",
        home_id,
        member_id,
    )
    if hashes is None:
        raise NotFound("no such home")
    is_pin, is_duress = await asyncio.gather(
        asyncio.to_thread(verify_secret, hashes["pin_hash"], pin),
        asyncio.to_thread(verify_secret, hashes["duress_pin_hash"], pin),
    )
    return is_pin, is_duress


async def _silent_duress(
    conn: asyncpg.Connection,
    settings: Settings,
    home: asyncpg.Record,
    *,
    via: str,
    actor: str,
    device_id: uuid.UUID | None,
    flags: tuple[str, ...] = (),
    request_id: str | None = None,
) -> uuid.UUID:
    """Her duress PIN on a disarm that is refused (lockout, Redis down): the home stays as it
    is, like any refused disarm, but the silent incident is raised. A repeat from the same
    keypad while it is open joins it."""
    incident_id = await _raise(
        conn,
        settings,
        home_ref(home),
        trigger="duress_disarm",
        actor=actor,
        device_id=device_id or home["entry_device_id"],
        duress=True,
        flags=flags,
        event_data={"via": via, "state_before": home["state"], "refused": True},
        fold_window_s=settings.device_fold_window_s,
        request_id=request_id,
    )
    await _event(
        conn, home["home_id"], "alarm", via=via, actor=actor, device_id=device_id,
        incident_id=incident_id, duress=True,
    )  # fmt: skip
    return incident_id


async def duress_while_unprotected(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    device: HomeDevice,
    pin: str,
    request_id: str | None = None,
) -> uuid.UUID | None:
    """A keypad disarm while Redis is down is refused (a replayed disarm could undo her
    arming), but her duress PIN is acted on first, as a store's duress is."""
    async with pool.acquire() as conn:
        is_pin, is_duress = await _check_pin(conn, home_id=device.home.id, member_id=None, pin=pin)
        if not is_duress or is_pin:
            return None
        async with conn.transaction():
            home = await _lock_home(conn, device.home.id, None)
            return await _silent_duress(
                conn, settings, home, via="keypad", actor=device.actor, device_id=device.id,
                flags=("nonce_unchecked",), request_id=request_id,
            )  # fmt: skip


@dataclass(frozen=True)
class DisarmResult:
    state: HomeState | None
    #: Set when the PIN was wrong (the attempt is recorded; raise ``WrongPin`` after commit).
    wrong_pin: bool = False
    #: Set while her PINs are locked out (too many wrong ones): seconds until they are not.
    locked_for_s: int | None = None
    #: The silent incident a duress PIN raised (never shown to her or the keypad).
    duress_incident_id: uuid.UUID | None = None


async def disarm(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    home_id: uuid.UUID,
    pin: str,
    via: str,
    actor: str,
    member_id: uuid.UUID | None = None,
    device_id: uuid.UUID | None = None,
    source_ip: str | None = None,
    request_id: str | None = None,
) -> DisarmResult:
    """Her PIN disarms and cancels a running entry delay. Her duress PIN does exactly the same
    (the answer cannot tell them apart) and raises a silent incident at her home, escalated as
    a member's duress is. A wrong PIN changes nothing (the entry delay runs on) and is
    recorded, for the console's history and as a security event.

    Wrong PINs count with her SOS cancel's (one counter, ``member.wrong_pin_count``): after
    ``cancel_pin_lockout_after`` in a row every disarm and every cancel is refused for
    ``cancel_pin_lockout_s``, whatever the PIN, so the door is no way round the cancel's
    lockout to guess her PIN; her duress PIN still raises its silent incident then."""
    async with pool.acquire() as conn:
        is_pin, is_duress = await _check_pin(conn, home_id=home_id, member_id=member_id, pin=pin)
        async with conn.transaction():
            home = await _lock_home(conn, home_id, member_id)
            member = await conn.fetchrow(
                "SELECT wrong_pin_count, ceil(extract(epoch FROM pin_locked_until - now()))::int"
                " AS locked_for_s FROM member WHERE id = $1 FOR UPDATE",
                home["member_id"],
            )
            locked_for_s = member["locked_for_s"]
            if locked_for_s is not None and locked_for_s > 0:
                incident_id = None
                if is_duress:
                    incident_id = await _silent_duress(
                        conn, settings, home, via=via, actor=actor, device_id=device_id,
                        request_id=request_id,
                    )  # fmt: skip
                await record_security_event(
                    conn,
                    kind=EV_LOCKED_OUT,
                    device_id=device_id,
                    source_ip=source_ip,
                    detail={"home_id": str(home_id), "via": via},
                )
                return DisarmResult(
                    state=None, locked_for_s=locked_for_s, duress_incident_id=incident_id
                )
            if not (is_pin or is_duress):
                await conn.execute(
                    "UPDATE member SET wrong_pin_count = wrong_pin_count + 1,"
                    " pin_locked_until = CASE WHEN wrong_pin_count + 1 >= $2"
                    "   THEN now() + make_interval(secs => $3::float8) ELSE pin_locked_until END"
                    " WHERE id = $1",
                    home["member_id"],
                    settings.cancel_pin_lockout_after,
                    settings.cancel_pin_lockout_s,
                )
                await _event(conn, home_id, "wrong_pin", via=via, actor=actor, device_id=device_id)
                await record_security_event(
                    conn,
                    kind=EV_WRONG_PIN,
                    device_id=device_id,
                    source_ip=source_ip,
                    detail={"home_id": str(home_id), "via": via},
                )
                return DisarmResult(state=None, wrong_pin=True)
            if member["wrong_pin_count"] or locked_for_s is not None:
                await conn.execute(
                    "UPDATE member SET wrong_pin_count = 0, pin_locked_until = NULL WHERE id = $1",
                    home["member_id"],
                )
            changed_at: datetime = await conn.fetchval(
                "UPDATE home SET state = 'disarmed', state_changed_at = now(),"
                " entry_due_at = NULL, entry_device_id = NULL, entry_signal_id = NULL"
                " WHERE id = $1 RETURNING state_changed_at",
                home_id,
            )
            incident_id = None
            if is_duress:
                incident_id = await _raise(
                    conn,
                    settings,
                    home_ref(home),
                    trigger="duress_disarm",
                    actor=actor,
                    device_id=device_id or home["entry_device_id"],
                    duress=True,
                    event_data={
                        "via": via,
                        "state_before": home["state"],
                        "entry_delay_running": home["entry_due_at"] is not None,
                    },
                    request_id=request_id,
                )
            await _event(
                conn,
                home_id,
                "disarm",
                via=via,
                actor=actor,
                device_id=device_id,
                incident_id=incident_id,
                duress=is_duress,
            )
    return DisarmResult(
        state=HomeState(home_id, ArmState.disarmed.value, changed_at),
        duress_incident_id=incident_id,
    )


@dataclass(frozen=True)
class SensorOutcome:
    incident_id: uuid.UUID | None = None
    created: bool = False
    body: dict[str, Any] | None = None


async def sensor_alarm(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    device: HomeDevice,
    signal: HomeSignal,
    request_id: str | None = None,
) -> SensorOutcome:
    """A door opened, motion, or the in-home button: what it means depends on the arming
    state (see the module's rules)."""
    body = signal.body
    home = device.home
    event_data: dict[str, Any] = {
        "signal_id": str(body.signal_id) if body.signal_id else None,
        "device_kind": device.kind,
        "device_label": device.label,
        "key": device.key,
        "firmware": body.firmware,
        "battery_pct": body.battery_pct,
        "sent_at": body.sent_at.isoformat() if body.sent_at else None,
        "warnings": signal.warnings,
    }
    flags = list(signal.flags)
    if not device.nonce_checked:
        flags.append("nonce_unchecked")
    async with pool.acquire() as conn, conn.transaction():
        locked = await _lock_home(conn, home.id, None)
        if body.type is HomeSignalType.panic:
            existing = (
                await conn.fetchrow(
                    "SELECT id, status FROM incident WHERE device_id = $1 AND client_alert_id = $2",
                    device.id,
                    body.signal_id,
                )
                if body.signal_id
                else None
            )
            if existing is not None:
                return SensorOutcome(incident_id=existing["id"], created=False)
            trigger = "home_panic"
        elif locked["state"] == ArmState.away.value:
            if locked["entry_due_at"] is not None or (
                body.signal_id is not None and body.signal_id == locked["entry_signal_id"]
            ):
                return SensorOutcome()  # the delay runs already (or a retry of its start)
            await conn.execute(
                "UPDATE home SET entry_due_at = now() + make_interval(secs => $2::float8),"
                " entry_device_id = $3, entry_signal_id = $4 WHERE id = $1",
                home.id,
                settings.home_entry_delay_s,
                device.id,
                body.signal_id,
            )
            await _event(
                conn, home.id, "entry_started", via=device.kind, actor=device.actor,
                device_id=device.id,
            )  # fmt: skip
            return SensorOutcome()
        elif locked["state"] == ArmState.night.value and body.type is HomeSignalType.open:
            # She is at home: nobody should come through the door; no delay.
            trigger = "door_open_night"
        else:
            return SensorOutcome()
        incident_id = await _raise(
            conn,
            settings,
            home,
            trigger=trigger,
            actor=device.actor,
            device_id=device.id,
            client_alert_id=body.signal_id if body.type is HomeSignalType.panic else None,
            battery_pct=body.battery_pct,
            flags=tuple(flags),
            event_data=event_data,
            fold_window_s=settings.device_fold_window_s,
            request_id=request_id,
        )
        await _event(
            conn, home.id, "alarm", via=device.kind, actor=device.actor,
            device_id=device.id, incident_id=incident_id,
        )  # fmt: skip
    return SensorOutcome(incident_id=incident_id, created=True)


# --- a commercial alarm panel at her home (SIA DC-09, app/receiver/) -------------------------


async def panel_alarm(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    home: HomeRef,
    device_id: uuid.UUID,
    trigger: str,
    client_alert_id: uuid.UUID,
    silent: bool = False,
    duress: bool = False,
    flags: tuple[str, ...] = (),
    event_data: dict[str, Any] | None = None,
) -> uuid.UUID:
    """An alarm panel's alarm at her home (a burglary, panic, duress...): an incident exactly as
    her own sensors raise one (``_raise``: at her home's address, position and district; a
    duress silent and escalated), with the ``alarm`` entry on the home's arming history.
    ``client_alert_id`` comes from the message's content: a retry (the panel missed our ACK)
    finds the incident it raised instead of raising another. Whatever her home's arming state:
    the panel decided it is an alarm."""
    actor = f"device:{device_id}"
    async with pool.acquire() as conn, conn.transaction():
        # Under the home's lock, so two deliveries of one retry act once.
        await _lock_home(conn, home.id, None)
        existing = await conn.fetchval(
            "SELECT id FROM incident WHERE device_id = $1 AND client_alert_id = $2",
            device_id,
            client_alert_id,
        )
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        incident_id = await _raise(
            conn,
            settings,
            home,
            trigger=trigger,
            actor=actor,
            device_id=device_id,
            client_alert_id=client_alert_id,
            duress=duress,
            silent=silent,
            flags=flags,
            event_data=event_data,
            fold_window_s=settings.device_fold_window_s,
            duress_via="alarm_panel",
        )
        await _event(
            conn, home.id, "alarm", via="panel", actor=actor, device_id=device_id,
            incident_id=incident_id, duress=duress,
        )  # fmt: skip
    return incident_id


async def panel_arming(
    pool: asyncpg.Pool, *, home_id: uuid.UUID, mode: ArmState, device_id: uuid.UUID
) -> bool:
    """The panel reports she armed (a closing: away; armed stay: night) or disarmed (an
    opening) at its keypad: the home's state follows and the arming history shows it (``via``
    ``panel``). A disarm at the panel is her code at the panel: it also ends an entry delay
    our own door contact started. The same state again changes nothing (a retried message, or
    two areas reported one after the other). True when the state changed."""
    async with pool.acquire() as conn, conn.transaction():
        home = await _lock_home(conn, home_id, None)
        if home["state"] == mode.value and (
            mode is not ArmState.disarmed or home["entry_due_at"] is None
        ):
            return False
        await conn.execute(
            "UPDATE home SET state = $2::text, state_changed_at = now(),"
            " entry_due_at = CASE WHEN $2::text = 'disarmed' THEN NULL ELSE entry_due_at END,"
            " entry_device_id ="
            "   CASE WHEN $2::text = 'disarmed' THEN NULL ELSE entry_device_id END"
            " WHERE id = $1",
            home_id,
            mode.value,
        )
        kind = "disarm" if mode is ArmState.disarmed else f"arm_{mode.value}"
        await _event(
            conn, home_id, kind, via="panel", actor=f"device:{device_id}", device_id=device_id
        )
    return True


_EXPIRED_SQL = """
SELECT h.id AS home_id, h.member_id, h.label AS home_label, h.address, h.state,
       h.entry_device_id, h.entry_due_at, d.kind AS device_kind, d.label AS device_label,
       ST_Y(h.geog::geometry) AS lat, ST_X(h.geog::geometry) AS lon
FROM home h LEFT JOIN device d ON d.id = h.entry_device_id
WHERE h.entry_due_at <= now()
ORDER BY h.entry_due_at
LIMIT $1
FOR UPDATE OF h SKIP LOCKED
"""


async def raise_expired_entries(pool: asyncpg.Pool, settings: Settings, *, batch: int = 50) -> int:
    """Every dispatcher, every ``home_entry_check_s``: an entry delay that ran out without a
    disarm is an incident at her home. The homes are locked SKIP LOCKED and their delay
    cleared in the transaction that writes the incident, so two dispatchers never raise one
    alarm twice, and a crash before the commit leaves the delay due for the next sweep."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_EXPIRED_SQL, batch)
            for row in rows:
                incident_id = await _raise(
                    conn,
                    settings,
                    home_ref(row),
                    trigger="entry_delay_expired",
                    actor="dispatch",
                    device_id=row["entry_device_id"],
                    event_data={
                        "device_kind": row["device_kind"],
                        "device_label": row["device_label"],
                        "entry_due_at": row["entry_due_at"].isoformat(),
                        "entry_delay_s": settings.home_entry_delay_s,
                    },
                    fold_window_s=settings.device_fold_window_s,
                )
                # The entry signal id stays: a late retry of that door press starts nothing.
                await conn.execute(
                    "UPDATE home SET entry_due_at = NULL WHERE id = $1", row["home_id"]
                )
                await _event(
                    conn, row["home_id"], "alarm", via="dispatch", actor="dispatch",
                    device_id=row["entry_device_id"], incident_id=incident_id,
                )  # fmt: skip
        total += len(rows)
        if len(rows) < batch:
            return total


async def _raise(
    conn: asyncpg.Connection,
    settings: Settings,
    home: HomeRef,
    *,
    trigger: str,
    actor: str,
    device_id: uuid.UUID | None,
    client_alert_id: uuid.UUID | None = None,
    duress: bool = False,
    silent: bool | None = None,
    battery_pct: int | None = None,
    flags: tuple[str, ...] = (),
    event_data: dict[str, Any] | None = None,
    fold_window_s: float = 0.0,
    request_id: str | None = None,
    duress_via: str = "duress_pin",
) -> uuid.UUID:
    """An incident (source ``sensor``) at her home, inside the caller's transaction: the
    incident, its ``reported`` event and outbox row (with the HTTP request's id, as a phone's
    SOS carries it to the console), then its home; a duress also its ``duress`` event
    (dispatch escalates it). Silent when a duress (or ``silent``). With ``fold_window_s``, an
    alarm while the same sensor's incident is open joins it (flagged ``repeated``)."""
    data = {
        **(event_data or {}),
        "home_id": str(home.id),
        "home_label": home.label,
        "address": home.address,
    }
    stored = await insert_incident(
        conn,
        NewIncident(
            source="sensor",
            trigger=trigger,
            silent=duress if silent is None else silent or duress,
            actor=actor,
            device_id=device_id,
            client_alert_id=client_alert_id,
            lat=home.lat,
            lon=home.lon,
            battery_pct=battery_pct,
            flags=flags,
            event_data=data,
            request_id=request_id,
        ),
        fold_window_s=fold_window_s,
    )
    if isinstance(stored, Folded):
        await fold_report(conn, incident_id=stored.into, actor=actor, data={"trigger": trigger})
        if duress and await conn.fetchval(
            "UPDATE incident SET duress = true, silent = true WHERE id = $1 AND NOT duress"
            " RETURNING true",
            stored.into,
        ):
            await _duress_event(
                conn, stored.into, actor=actor, home=home, request_id=request_id, via=duress_via
            )
        return stored.into
    if not isinstance(stored, StoredIncident):
        raise RuntimeError("home incident was not inserted")
    await conn.execute(
        "UPDATE incident SET home_id = $2, duress = $3 WHERE id = $1", stored.id, home.id, duress
    )
    if duress:
        await _duress_event(
            conn, stored.id, actor=actor, home=home, request_id=request_id, via=duress_via
        )
    return stored.id


async def _duress_event(
    conn: asyncpg.Connection,
    incident_id: uuid.UUID,
    *,
    actor: str,
    home: HomeRef,
    request_id: str | None = None,
    via: str = "duress_pin",
) -> None:
    """The ``duress`` event and its outbox row: dispatch escalates it as a member's duress.
    ``via``: ``duress_pin`` (her duress PIN at the door) or ``alarm_panel`` (a panel's duress
    code)."""
    await conn.execute(
        "INSERT INTO incident_event (incident_id, kind, actor, data) VALUES ($1, $2, $3, $4)",
        incident_id,
        "duress",
        actor,
        {"via": via, "home_id": str(home.id)},
    )
    payload: dict[str, Any] = {"incident_id": str(incident_id), "kind": "duress", "via": via}
    if request_id is not None:
        payload["request_id"] = request_id
    await conn.execute(
        "INSERT INTO outbox (topic, incident_id, payload) VALUES ($1, $2, $3)",
        TOPIC_UPDATED,
        incident_id,
        payload,
    )


# --- what she and the console see ----------------------------------------------------------


async def member_homes(pool: asyncpg.Pool, *, member_id: uuid.UUID) -> list[dict[str, Any]]:
    """Her homes, their state and sensors (nothing that tells a duress disarm apart)."""
    rows = await pool.fetch(
        "SELECT h.id, h.label, h.address, h.state, h.state_changed_at,"
        " h.entry_due_at IS NOT NULL AS entry_delay_running,"
        " coalesce(jsonb_agg(jsonb_build_object('id', d.id, 'kind', d.kind, 'label', d.label,"
        "   'battery_pct', d.battery_pct, 'last_seen_at', d.last_seen_at) ORDER BY d.kind, d.id)"
        "   FILTER (WHERE d.id IS NOT NULL), '[]') AS devices"
        " FROM home h LEFT JOIN device d ON d.home_id = h.id"
        " WHERE h.member_id = $1 AND h.enabled GROUP BY h.id ORDER BY h.created_at, h.id",
        member_id,
    )
    return [
        {
            "id": str(r["id"]),
            "label": r["label"],
            "address": r["address"],
            "state": r["state"],
            "changed_at": r["state_changed_at"].isoformat(),
            "entry_delay_running": r["entry_delay_running"],
            "devices": r["devices"],
        }
        for r in rows
    ]


# --- operator registration (the CLI) --------------------------------------------------------


@dataclass(frozen=True)
class RegisteredHome:
    home_id: uuid.UUID
    district: dict[str, str] | None
    #: (kind, device id, secret): shown once.
    devices: list[tuple[str, uuid.UUID, str]]

    def as_json(self) -> dict[str, Any]:
        return {
            "home_id": str(self.home_id),
            "district": self.district,
            "devices": [
                {"kind": kind, "device_id": str(device_id), "secret": secret}
                for kind, device_id, secret in self.devices
            ],
        }


def _check_place(address: str | None, lat: float | None, lon: float | None) -> str | None:
    if (lat is None) != (lon is None):
        raise BadRequest("give lat and lon together")
    if lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadRequest("lat must be within -90..90 and lon within -180..180")
    if address is None:
        return None
    address = address.strip()
    if not address or len(address) > 500:
        raise BadRequest("the address must be 1 to 500 characters")
    return address


#: The sensors an operator may add to a home (a panel comes with its alarm account).
SENSOR_KINDS = (DeviceKind.door, DeviceKind.home_button, DeviceKind.motion, DeviceKind.keypad)


async def create_home(
    conn: asyncpg.Connection,
    *,
    member_id: uuid.UUID,
    address: str,
    lat: float,
    lon: float,
    label: str | None = None,
    motion: bool = False,
    keypad: bool = False,
) -> RegisteredHome:
    """Register her home (the district computed from its position) with a door contact and an
    in-home button, optionally a motion sensor and a keypad; each device's secret is returned
    once and never shown again."""
    address = _check_place(address, lat, lon) or ""
    kinds = [DeviceKind.door, DeviceKind.home_button]
    if motion:
        kinds.append(DeviceKind.motion)
    if keypad:
        kinds.append(DeviceKind.keypad)
    async with conn.transaction():
        if not await conn.fetchval(
            "SELECT true FROM member WHERE id = $1 AND deleted_at IS NULL", member_id
        ):
            raise NotFound(f"no member {member_id}")
        district = await district_at(conn, lat=lat, lon=lon)
        home_id: uuid.UUID = await conn.fetchval(
            "INSERT INTO home (id, member_id, label, address, geog, district_id)"
            " VALUES ($1, $2, $3, $4, ST_SetSRID(ST_MakePoint($6, $5), 4326)::geography, $7)"
            " RETURNING id",
            uuid.uuid4(),
            member_id,
            label,
            address,
            lat,
            lon,
            district.id if district else None,
        )
        devices = []
        for kind in kinds:
            creds = await create_device(
                conn, home_id=home_id, kind=kind, label=kind.value.replace("_", " ")
            )
            devices.append((kind.value, creds.device_id, creds.secret))
    return RegisteredHome(
        home_id, {"code": district.code, "name": district.name} if district else None, devices
    )


_HOMES_SQL = """
SELECT h.id, h.member_id, h.label, h.address, h.state, h.state_changed_at, h.enabled,
       h.created_at, h.entry_due_at IS NOT NULL AS entry_delay_running,
       x.code AS district_code, x.name AS district_name,
       coalesce((SELECT jsonb_agg(jsonb_build_object('id', d.id, 'kind', d.kind, 'label', d.label,
                   'enabled', d.enabled, 'battery_pct', d.battery_pct,
                   'last_seen_at', d.last_seen_at, 'last_heartbeat_at', d.last_heartbeat_at,
                   'offline_since', d.offline_reported_at) ORDER BY d.kind, d.created_at, d.id)
                 FROM device d WHERE d.home_id = h.id), '[]') AS devices
FROM home h LEFT JOIN district x ON x.id = h.district_id
"""


def _home_json(r: asyncpg.Record) -> dict[str, Any]:
    """A home as operators see it: no position (her address is what police read; an
    operator who typed the position in has no need to read it back)."""
    return {
        "id": str(r["id"]),
        "member_id": str(r["member_id"]),
        "label": r["label"],
        "address": r["address"],
        "district": {"code": r["district_code"], "name": r["district_name"]}
        if r["district_code"]
        else None,
        "state": r["state"],
        "state_changed_at": r["state_changed_at"].isoformat(),
        "entry_delay_running": r["entry_delay_running"],
        "enabled": r["enabled"],
        "created_at": r["created_at"].isoformat(),
        "devices": r["devices"],
    }


async def get_home(conn: asyncpg.Connection | asyncpg.Pool, home_id: uuid.UUID) -> dict[str, Any]:
    row = await conn.fetchrow(_HOMES_SQL + " WHERE h.id = $1", home_id)
    if row is None:
        raise NotFound(f"no home {home_id}")
    return _home_json(row)


async def list_homes(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    member_id: uuid.UUID | None = None,
    district_code: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Homes with their devices, newest first (a member's, or a district's)."""
    rows = await conn.fetch(
        _HOMES_SQL + " WHERE ($1::uuid IS NULL OR h.member_id = $1)"
        " AND ($2::text IS NULL OR x.code = $2) ORDER BY h.created_at DESC, h.id LIMIT $3",
        member_id,
        district_code,
        limit,
    )
    return [_home_json(r) for r in rows]


async def update_home(
    conn: asyncpg.Connection,
    *,
    home_id: uuid.UUID,
    address: str | None = None,
    label: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
) -> dict[str, Any]:
    """Correct a home's address, label or position (the district follows the position). The
    alarms already raised there keep the place they were raised at. An erased (disabled) home
    is not found."""
    address = _check_place(address, lat, lon)
    if address is None and label is None and lat is None:
        raise BadRequest("nothing to change: give address, label, or lat and lon")
    async with conn.transaction():
        district = (
            await district_at(conn, lat=lat, lon=lon)
            if lat is not None and lon is not None
            else None
        )
        done = await conn.fetchval(
            "UPDATE home SET address = coalesce($2, address), label = coalesce($3, label),"
            " geog = CASE WHEN $4::float8 IS NULL THEN geog"
            "   ELSE ST_SetSRID(ST_MakePoint($5, $4), 4326)::geography END,"
            " district_id = CASE WHEN $4::float8 IS NULL THEN district_id ELSE $6 END"
            " WHERE id = $1 AND enabled RETURNING true",
            home_id,
            address,
            label,
            lat,
            lon,
            district.id if district else None,
        )
        if not done:
            raise NotFound(f"no home {home_id}")
        return await get_home(conn, home_id)


async def add_sensor(
    conn: asyncpg.Connection, *, home_id: uuid.UUID, kind: DeviceKind, label: str | None = None
) -> tuple[uuid.UUID, str]:
    """Another sensor at her home (a second door, a keypad added later): its id and secret,
    shown once."""
    if kind not in SENSOR_KINDS:
        raise BadRequest(f"a home's sensor is one of {', '.join(k.value for k in SENSOR_KINDS)}")
    async with conn.transaction():
        creds = await create_device(
            conn, home_id=home_id, kind=kind, label=label or kind.value.replace("_", " ")
        )
    return creds.device_id, creds.secret
