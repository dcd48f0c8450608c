"""What the receiver does with a line: the answer per DC-09, and the effects in Ansim.

``Receiver.handle(line)`` returns the bytes to send back (``ACK``/``*ACK``, ``NAK``, ``DUH``)
or ``None`` to drop the line (a CRC or length that fails: the panel retries). An ``ACK`` goes
out only after the message's effects are committed, so an acknowledged alarm is never lost;
when the database cannot be reached the line is not answered and the panel retries.

The effects reuse the paths of a store's panic button (app/devices/):

- an alarm is an incident (source ``sensor``) inserted by ``insert_incident`` with its outbox
  row, at the account's store, on the account's ``device`` (so a repeated alarm folds into the
  open one, like a button pressed again); a duress is then marked and escalated like a store's
  duress; the process's outbox relay publishes it to the dispatchers;
- at a member's home, the alarm is raised as her home's own sensors raise one
  (``homes.panel_alarm``: her address and district, on her home's arming history, a duress
  silent and escalated as her duress PIN's), and openings and closings set her home's arming
  state (``homes.panel_arming``);
- every message is the device's heartbeat (``health.record_signal``): supervision is the
  device-offline sweep every dispatcher runs (``health.report_offline``), with the account's
  supervision interval as the device's ``offline_after_s``;
- troubles and their restores are ``health.record_trouble``, a tamper ``record_signal``.

A retried message (the panel did not get our ACK) has the same content digest: it is
acknowledged again, logged once, and its actions are idempotent (the incident's
``client_alert_id`` is derived from the digest; a trouble is reported only when it changes).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.devices import health
from app.devices.service import CANCEL_REQUESTED, Store
from app.dispatch.relay import OutboxRelay
from app.homes import service as homes
from app.homes.service import HomeRef
from app.incidents.lifecycle import lock_incident
from app.incidents.store import Folded, NewIncident, Replay, fold_report, insert_incident
from app.incidents.timeline import record
from app.models import ArmState
from app.receiver import events as ev
from app.receiver import protocol as dc09

log = logging.getLogger(__name__)

#: A message with the same sequence number and content (its timestamp included, if it has
#: one) within this long is a retry, acted on once. Panels retry within seconds; kept short so
#: that a panel which always sends the same sequence number cannot lose a later alarm (an
#: alarm while the first is open folds into it anyway).
RETRY_WINDOW_S = 300.0
#: Accounts are read from the database at most this often (an operator's change shows soon).
ACCOUNT_CACHE_S = 5.0
_NAMESPACE = uuid.UUID("5b1f2d4e-9c0a-4e57-8f3b-d09a1a2b3c4d")


@dataclass(frozen=True)
class Account:
    id: uuid.UUID
    account: str
    prefix: str
    device_id: uuid.UUID
    label: str | None
    key: bytes | None
    supervision_s: float
    window_past_s: float
    window_future_s: float
    enabled: bool
    #: The store it protects, or (exactly one of the two) her home.
    store: Store | None
    home: HomeRef | None

    @property
    def actor(self) -> str:
        return f"device:{self.device_id}"


_ACCOUNT_SQL = """
SELECT a.id, a.account, a.prefix, a.device_id, a.label, a.aes_key, a.key_hex, a.supervision_s,
       a.window_past_s, a.window_future_s,
       a.enabled AND d.enabled AND coalesce(h.enabled, true) AS enabled,
       p.id AS place_id, p.name, p.phone, coalesce(p.address, h.address) AS address,
       h.id AS home_id, h.member_id, h.label AS home_label,
       ST_Y(coalesce(p.geog, h.geog)::geometry) AS lat,
       ST_X(coalesce(p.geog, h.geog)::geometry) AS lon
FROM alarm_account a JOIN device d ON d.id = a.device_id
LEFT JOIN safe_place p ON p.id = a.safe_place_id LEFT JOIN home h ON h.id = a.home_id
WHERE a.prefix = $1 AND a.account = $2
"""

# Retry detection and the log, in one statement under the account's advisory lock (two
# connections delivering the same retry at once act once).
_LOG_SQL = """
WITH lock AS (SELECT pg_advisory_xact_lock(hashtextextended($1::uuid::text, 0))),
seen AS (
  SELECT 1 FROM alarm_event, lock
  WHERE account_id = $1::uuid AND digest = $2 AND received_at > now() - make_interval(secs => $3)
  LIMIT 1
), ins AS (
  INSERT INTO alarm_event (account_id, token, seq, digest, code, qualifier, zone, area,
                           action, detail)
  SELECT $1, $4, $5, $2, e.code, e.qualifier, e.zone, e.area, e.action, e.detail
  FROM jsonb_to_recordset($6::jsonb) AS e(code text, qualifier text, zone text, area text,
                                           action text, detail jsonb), lock
  WHERE NOT EXISTS (SELECT 1 FROM seen)
  RETURNING id
)
SELECT EXISTS (SELECT 1 FROM seen) AS retry, array(SELECT id FROM ins ORDER BY id) AS ids
"""


@dataclass
class ReceiverStats:
    acks: int = 0
    naks: int = 0
    duhs: int = 0
    dropped: int = 0
    retries: int = 0


class Receiver:
    """One per process; ``handle`` is safe to call from many connections at once."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        relay: OutboxRelay | None = None,
    ) -> None:
        self.pool = pool
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.relay = relay
        self.stats = ReceiverStats()
        self._accounts: dict[tuple[str, str], tuple[float, Account | None]] = {}

    async def account(self, prefix: str, account: str) -> Account | None:
        key = (prefix, account)
        hit = self._accounts.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        row = await self.pool.fetchrow(_ACCOUNT_SQL, prefix, account)
        found = None if row is None else _account(row)
        if len(self._accounts) > 100_000:
            self._accounts.clear()
        self._accounts[key] = (time.monotonic() + ACCOUNT_CACHE_S, found)
        return found

    async def handle(self, line: bytes, *, now: datetime | None = None) -> bytes | None:
        """The answer to one line, or ``None`` to drop it. Raises only when the database
        cannot be reached (the caller leaves the line unanswered: the panel retries)."""
        parsed = dc09.parse_frame(line)
        if isinstance(parsed, dc09.BadFrame):
            if parsed.answerable and parsed.seq is not None and parsed.prefix is not None:
                assert parsed.account is not None
                return self._duh(parsed.seq, parsed.receiver, parsed.prefix, parsed.account)
            self.stats.dropped += 1
            return None
        frame = parsed
        at = now or datetime.now(UTC)
        account = await self.account(frame.prefix, frame.account)
        if account is None or not account.enabled:
            return self._duh_frame(frame)
        if frame.encrypted != (account.key is not None):
            # An account with a key takes encrypted messages only (a plain one could be
            # anybody's); one without cannot read them.
            return self._duh_frame(frame)
        content = dc09.open_content(frame, account.key)
        if content is None:
            return self._duh_frame(frame)  # wrong key, bad hex, no "]"
        if frame.encrypted and dc09.stale(
            content.sent_at, at, past_s=account.window_past_s, future_s=account.window_future_s
        ):
            self.stats.naks += 1
            return dc09.nak(at)
        found = ev.events_of(frame.kind, content.data)
        await self._apply(account, frame, content, found)
        if found and all(e.action is ev.Action.unknown for e in found):
            return self._duh_frame(frame)
        self.stats.acks += 1
        return dc09.ack(frame, account.key, now=at)

    def _duh(self, seq: str, receiver: str | None, prefix: str, account: str) -> bytes:
        self.stats.duhs += 1
        return dc09.duh(seq, receiver, prefix, account)

    def _duh_frame(self, frame: dc09.Frame) -> bytes:
        return self._duh(frame.seq, frame.receiver, frame.prefix, frame.account)

    async def _apply(
        self,
        account: Account,
        frame: dc09.Frame,
        content: dc09.Content,
        found: list[ev.PanelEvent],
    ) -> None:
        tested = any(e.action is ev.Action.test for e in found)
        tampered = any(e.action is ev.Action.tamper for e in found)
        reported = 0
        if found:
            digest = hashlib.sha256(
                b"\0".join([frame.token.encode(), frame.seq.encode(), _plain(content)])
            ).digest()
            rows = [
                {
                    "code": e.code,
                    "qualifier": e.qualifier,
                    "zone": e.zone,
                    "area": e.area,
                    "action": e.action.value,
                    "detail": {"trouble": e.trouble} if e.trouble else {},
                }
                for e in found
            ]
            logged = await self.pool.fetchrow(
                _LOG_SQL, account.id, digest, RETRY_WINDOW_S, frame.token, frame.seq, rows
            )
            # A retry is acted on again: every action is idempotent (the incident's
            # client_alert_id comes from the digest, a trouble is reported only when it
            # changes), so a failure between the log and the action cannot lose an alarm.
            ids: list[int | None] = list(logged["ids"])
            if logged["retry"]:
                self.stats.retries += 1
                ids = [None] * len(found)
            for event, event_id in zip(found, ids, strict=True):
                reported += await self._act(account, frame, event, event_id, digest)
        signal = await health.record_signal(
            self.pool,
            device_id=account.device_id,
            heartbeat=True,
            tested=tested,
            tampered=tampered,
        )
        reported += signal.reported
        await self.pool.execute(
            "UPDATE alarm_account SET last_message_at = now() WHERE id = $1", account.id
        )
        if reported and self.relay is not None:
            self.relay.kick()

    async def _act(
        self,
        account: Account,
        frame: dc09.Frame,
        event: ev.PanelEvent,
        event_id: int | None,
        digest: bytes,
    ) -> int:
        if event.action is ev.Action.incident and event.alarm is not None:
            incident_id = await self._raise(account, frame, event, digest)
            if event_id is not None:
                await self.pool.execute(
                    "UPDATE alarm_event SET incident_id = $2 WHERE id = $1", event_id, incident_id
                )
            return 1
        if event.action is ev.Action.arming and event.arming and account.home is not None:
            await homes.panel_arming(
                self.pool,
                home_id=account.home.id,
                mode=ArmState(event.arming),
                device_id=account.device_id,
            )
            return 0
        if event.action in (ev.Action.trouble, ev.Action.restore) and event.trouble:
            return await health.record_trouble(
                self.pool,
                device_id=account.device_id,
                trouble=event.trouble,
                present=event.action is ev.Action.trouble,
                code=event.code,
            )
        if event.action is ev.Action.unknown:
            log.info("alarm account sent an unknown code %s (kept on its log)", event.code)
        return 0

    async def _raise(
        self, account: Account, frame: dc09.Frame, event: ev.PanelEvent, digest: bytes
    ) -> uuid.UUID:
        alarm = event.alarm
        assert alarm is not None
        flags = (f"agency_{alarm.agency}",) if alarm.agency else ()
        client_alert_id = uuid.uuid5(_NAMESPACE, digest.hex() + (event.code or ""))
        data: dict[str, Any] = {
            "alarm_code": event.code,
            "qualifier": event.qualifier,
            "zone": event.zone,
            "area": event.area,
            "account_label": account.label,
            "seq": frame.seq,
            "encrypted": frame.encrypted,
            "agency": alarm.agency,
        }
        if account.home is not None:
            return await homes.panel_alarm(
                self.pool,
                self.settings,
                home=account.home,
                device_id=account.device_id,
                trigger=alarm.trigger_at(home=True),
                client_alert_id=client_alert_id,
                silent=alarm.silent,
                duress=alarm.duress,
                flags=flags,
                event_data=data,
            )
        assert account.store is not None
        data["store_name"] = account.store.name
        new = NewIncident(
            source="sensor",
            trigger=alarm.trigger,
            silent=alarm.silent,
            actor=account.actor,
            device_id=account.device_id,
            safe_place_id=account.store.id,
            client_alert_id=client_alert_id,
            lat=account.store.lat,
            lon=account.store.lon,
            flags=flags,
            event_data=data,
        )
        try:
            stored = await insert_incident(
                self.pool, new, fold_window_s=self.settings.device_fold_window_s
            )
        except asyncpg.UniqueViolationError:
            stored = Replay(member_id=None)
        if isinstance(stored, Folded):
            await fold_report(
                self.pool,
                incident_id=stored.into,
                actor=account.actor,
                data={"trigger": alarm.trigger, "alarm_code": event.code},
            )
            incident_id = stored.into
        elif isinstance(stored, Replay):
            incident_id = await self.pool.fetchval(
                "SELECT id FROM incident WHERE device_id = $1 AND client_alert_id = $2",
                account.device_id,
                new.client_alert_id,
            )
        else:
            incident_id = stored.id
        if alarm.duress:
            await self._duress(account, incident_id, event)
        return incident_id

    async def _duress(self, account: Account, incident_id: uuid.UUID, event: ev.PanelEvent) -> None:
        """Mark it duress and silent, and escalate it like a store's duress (a ``duress``
        event through the outbox: app/dispatch/routing.py)."""
        assert account.store is not None
        async with self.sessionmaker() as session, session.begin():
            incident = await lock_incident(session, incident_id)
            if incident.duress:
                return
            incident.duress = True
            incident.silent = True
            incident.flags = [f for f in incident.flags if f != CANCEL_REQUESTED]
            incident.updated_at = func.now()
            store = {
                "store": {
                    "id": str(account.store.id),
                    "name": account.store.name,
                    "phone": account.store.phone,
                    "address": account.store.address,
                },
                "device_label": account.label,
            }
            await record(
                session,
                incident_id=incident.id,
                kind="duress",
                actor=account.actor,
                data={"via": "alarm_panel", "alarm_code": event.code, **store},
                message={**store, "via": "alarm_panel"},
            )


def _plain(content: dc09.Content) -> bytes:
    ts = content.sent_at.isoformat().encode() if content.sent_at else b""
    return b"\0".join([content.data, ts, *(k.encode() + v for k, v in content.xdata.items())])


def _account(row: asyncpg.Record) -> Account:
    key = None
    if row["aes_key"]:
        try:
            key = dc09.parse_key(row["aes_key"], hex_key=row["key_hex"])
        except ValueError:
            log.warning("alarm account %s has an unusable key", row["id"])
    return Account(
        id=row["id"],
        account=row["account"],
        prefix=row["prefix"],
        device_id=row["device_id"],
        label=row["label"],
        key=key,
        supervision_s=row["supervision_s"],
        window_past_s=row["window_past_s"],
        window_future_s=row["window_future_s"],
        enabled=row["enabled"],
        store=Store.from_row(row) if row["place_id"] is not None else None,
        home=homes.home_ref(row) if row["home_id"] is not None else None,
    )
