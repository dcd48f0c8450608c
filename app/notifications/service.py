"""The notification queue: what is enqueued for which event, the claim of due messages, the
record of each attempt, and the paging of on-call supervisors.

A message is a ``notification`` row written in the caller's transaction, deduplicated by its
key (one event never enqueues twice; the key is also the gateway's ``Idempotency-Key``). The
sender (``app/notifications/sender.py``) claims due rows with a lease, makes one HTTP attempt
each, and records the outcome here: sent, due again after a backoff, or failed once the
deadline has passed (a ``notify_failed`` timeline event, published to the consoles)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.config import Settings, get_settings
from app.dispatch.gateways import Attempt
from app.incidents.store import TOPIC_UPDATED
from app.notifications import guardian_view
from app.safe_return.links import walk_view_url
from app.security import member_signin

ACTOR = "dispatch"
MAX_GUARDIANS = 5
#: Events a volunteer's offer is pushed on (the first routing, each widening, a decline that
#: offered the next nearest).
OFFER_EVENTS = frozenset(
    {"reported", "escalated", "duress", "duress_cancel", "wrong_pin_escalation", "offer_declined"}
)
CLOSING = frozenset({"resolved", "false_alarm", "cancelled", "duress_cancel"})
#: Events pushed to the volunteers assigned to the incident: it is over, stand down (not a
#: duress cancel, which keeps it open).
TELL_ASSIGNED = frozenset({"resolved", "false_alarm", "cancelled"})
GUARDIAN_EVENTS = frozenset({"reported", "acknowledged", "escalated"}) | CLOSING


# --- enqueue ---------------------------------------------------------------------------------

_ENQUEUE_SQL = """
INSERT INTO notification (incident_id, channel, target, message, dedupe_key, deadline_at,
                          safe_return_id, scout_booking_id)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::float8), $7, $8)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id
"""


async def enqueue(
    conn: asyncpg.Connection,
    *,
    incident_id: uuid.UUID | None,
    channel: str,
    target: str,
    message: dict[str, Any],
    dedupe_key: str,
    deadline_s: float | None = None,
    safe_return_id: uuid.UUID | None = None,
    scout_booking_id: uuid.UUID | None = None,
) -> bool:
    """Queue one message inside the caller's transaction; False if the key was queued before.
    A message about a walk home (app/safe_return) names its session instead of an incident,
    one about a scouts booking the booking.
    Call ``sender.kick()`` after the commit so it goes out at once."""
    if channel not in ("sms", "push"):  # (``agency``: app/interop/subscriptions.py)
        raise ValueError(f"unknown channel {channel!r}")
    deadline = get_settings().notify_deadline_s if deadline_s is None else deadline_s
    new = await conn.fetchval(
        _ENQUEUE_SQL,
        incident_id,
        channel,
        target,
        message,
        dedupe_key,
        deadline,
        safe_return_id,
        scout_booking_id,
    )
    return new is not None


# --- what each event tells whom ------------------------------------------------------------

_OFFERS_SQL = """
SELECT o.id, o.volunteer_id, o.distance_m FROM offer o
WHERE o.incident_id = $1 AND o.status = 'offered'
"""
_ASSIGNED_SQL = """
SELECT DISTINCT volunteer_id FROM assignment
WHERE incident_id = $1 AND kind = 'volunteer' AND volunteer_id IS NOT NULL
"""
_GUARDIANS_SQL = """
SELECT g.id, g.phone, m.name, i.member_cancelled_at, i.status
FROM incident i JOIN member m ON m.id = i.member_id JOIN guardian g ON g.member_id = m.id
WHERE i.id = $1 ORDER BY g.created_at LIMIT $2
"""


def guardian_text(kind: str, name: str) -> tuple[str, str] | None:
    """(dedupe part, text) of the guardians' message for a timeline kind. A duress cancel gets
    exactly the text (and key) of a real cancel: nothing a guardian is told gives it away."""
    if kind == "reported":
        return "reported", f"{name} sent an SOS. Police have been alerted."
    if kind == "acknowledged":
        return "acknowledged", f"Police have acknowledged {name}'s SOS and are handling it."
    if kind == "escalated":
        return "escalated", f"{name}'s SOS has been escalated to a police supervisor."
    if kind in ("cancelled", "duress_cancel"):
        return "closed", f"{name} cancelled her SOS."
    if kind == "resolved":
        # Not the disposition: police's words are not for a text message.
        return "closed", f"Police have closed {name}'s SOS."
    if kind == "false_alarm":
        return "closed", f"Police have closed {name}'s SOS as a false alarm."
    return None


async def enqueue_for_event(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    incident_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
    closed: bool,
    has_guardians: bool,
    offers: bool,
) -> int:
    """Queue what one timeline event calls for: volunteers' offers (pushes) and guardians'
    texts. Safe to run again for the same event (dedupe keys); returns how many are new."""
    push_offers = offers and not closed and kind in OFFER_EVENTS
    tell_guardians = has_guardians and kind in GUARDIAN_EVENTS
    tell_assigned = kind in TELL_ASSIGNED
    if not (push_offers or tell_guardians or tell_assigned):
        return 0
    queued = 0
    async with pool.acquire() as conn, conn.transaction():

        async def push(volunteer_id: uuid.UUID, part: str, message: dict[str, Any]) -> bool:
            target = f"volunteer:{volunteer_id}"
            return await enqueue(
                conn,
                incident_id=incident_id,
                channel="push",
                target=target,
                message={**message, "incident_id": str(incident_id)},
                dedupe_key=f"{incident_id}:{part}:{target}",
                deadline_s=settings.notify_deadline_s,
            )

        for row in await conn.fetch(_ASSIGNED_SQL, incident_id) if tell_assigned else []:
            closed_message = {"type": "incident_closed", "status": kind}
            queued += await push(row["volunteer_id"], "closed", closed_message)
        for offer in await conn.fetch(_OFFERS_SQL, incident_id) if push_offers else []:
            offer_message = {
                "type": "offer",
                "offer_id": str(offer["id"]),
                "distance_m": round(offer["distance_m"] or 0.0),
            }
            queued += await push(offer["volunteer_id"], "offer", offer_message)
        if tell_guardians:
            queued += await _enqueue_guardians(conn, settings, incident_id, kind, payload)
    return queued


async def _enqueue_guardians(
    conn: asyncpg.Connection,
    settings: Settings,
    incident_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
) -> int:
    guardians = await conn.fetch(_GUARDIANS_SQL, incident_id, MAX_GUARDIANS)
    if not guardians:
        return 0
    if guardians[0]["member_cancelled_at"] is not None and kind not in CLOSING:
        # Her phone shows a cancelled alert (real or under duress) and so do her guardians'
        # messages: after "she cancelled" they are told nothing more.
        return 0
    text = guardian_text(kind, guardians[0]["name"])
    if text is None:
        return 0
    part, body = text
    # The link is live while the incident is open; a closing message carries none (a duress
    # cancel's neither, though its link stays live).
    link = part != "closed"
    if link:
        await guardian_view.ensure_views(
            conn, settings, incident_id=incident_id, guardian_ids=[g["id"] for g in guardians]
        )
    queued = 0
    for g in guardians:
        target = f"guardian:{g['id']}"
        queued += await enqueue(
            conn,
            incident_id=incident_id,
            channel="sms",
            target=target,
            message={
                "type": "guardian_alert" if part == "reported" else f"guardian_{part}",
                "phone": g["phone"],
                "text": body,
                "incident_id": str(incident_id),
                **({"view": True} if link else {}),
            },
            dedupe_key=f"{incident_id}:{part}:{target}",
            deadline_s=settings.notify_deadline_s,
        )
    return queued


# --- paging ----------------------------------------------------------------------------------

_ON_CALL_SQL = """
WITH on_call AS (
  SELECT id, phone FROM staff
  WHERE active AND role = 'dispatcher' AND on_call AND phone IS NOT NULL
)
SELECT id, phone FROM on_call
UNION ALL
SELECT id, phone FROM staff
WHERE active AND role = 'dispatcher' AND city_wide AND phone IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM on_call)
ORDER BY id
"""
_PAGE_SUMMARY_SQL = """
SELECT i.source, i.status, i.trigger, i.received_at, i.escalation_level,
       i.location IS NOT NULL AS located, d.name AS district_name
FROM incident i LEFT JOIN district d ON d.id = i.district_id WHERE i.id = $1
"""


async def page_on_call(
    conn: asyncpg.Connection,
    settings: Settings,
    *,
    incident_id: uuid.UUID,
    reason: str,
    level: int,
    dedupe: str,
) -> int:
    """Queue an SMS to every on-call supervisor (active dispatchers with ``on_call`` and a
    phone; when nobody is on call, every active city-wide dispatcher with a phone), inside the
    caller's transaction; returns how many people the page is for (a repeat with the same
    ``dedupe`` queues nothing new and answers the same). The text names the incident, the
    reason and a summary, never her position (the console has it). Kick the sender
    (``sender.kick()``) after the commit."""
    people = await conn.fetch(_ON_CALL_SQL)
    if not people:
        return 0
    inc = await conn.fetchrow(_PAGE_SUMMARY_SQL, incident_id)
    summary = (
        "incident gone"
        if inc is None
        else ", ".join(
            (
                f"{inc['source']} {inc['trigger']}",
                inc["district_name"]
                or ("outside every district" if inc["located"] else "unlocated"),
                f"status {inc['status']}",
                f"received {inc['received_at'].astimezone().strftime('%H:%M:%S')}",
            )
        )
    )
    text = (
        f"Ansim page (level {level}): incident {incident_id}: {reason}. {summary}. See the console."
    )
    for person in people:
        target = f"staff:{person['id']}"
        await enqueue(
            conn,
            incident_id=incident_id,
            channel="sms",
            target=target,
            message={
                "type": "page",
                "phone": person["phone"],
                "text": text,
                "incident_id": str(incident_id),
                "reason": reason,
                "level": level,
            },
            dedupe_key=f"{incident_id}:page:{dedupe}:{target}",
            deadline_s=settings.notify_deadline_s,
        )
    return len(people)


# --- the sender's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    incident_id: uuid.UUID | None
    channel: str
    target: str
    message: dict[str, Any]
    dedupe_key: str
    attempts: int
    lease_until: datetime
    safe_return_id: uuid.UUID | None = None


_CLAIM_SQL = """
WITH due AS (
  SELECT id FROM notification n
  WHERE status = 'pending' AND next_attempt_at <= now()
    AND (lease_until IS NULL OR lease_until <= now())
    -- An agency gets an incident's changes in order (app/interop): one at a time, the oldest
    -- still pending first (a later one waits while it is retried, until it is sent or failed).
    AND (channel <> 'agency' OR NOT EXISTS (
      SELECT 1 FROM notification e
      WHERE e.status = 'pending' AND e.channel = 'agency' AND e.target = n.target
        AND e.incident_id = n.incident_id AND e.id < n.id))
  ORDER BY next_attempt_at LIMIT $1
  FOR UPDATE SKIP LOCKED
)
UPDATE notification n SET attempts = n.attempts + 1,
       lease_until = now() + make_interval(secs => $2::float8)
FROM due WHERE n.id = due.id
RETURNING n.id, n.incident_id, n.channel, n.target, n.message, n.dedupe_key, n.attempts,
          n.lease_until, n.safe_return_id
"""


async def claim_due(pool: asyncpg.Pool, *, limit: int, lease_s: float) -> list[Claimed]:
    """Take due messages for one attempt each (one short statement: no transaction stays open
    over HTTP). A sender that dies lets them go when the lease passes."""
    rows = await pool.fetch(_CLAIM_SQL, limit, lease_s)
    return [
        Claimed(
            r["id"],
            r["incident_id"],
            r["channel"],
            r["target"],
            r["message"],
            r["dedupe_key"],
            r["attempts"],
            r["lease_until"],
            r["safe_return_id"],
        )
        for r in rows
    ]


def retry_delay(
    attempts: int, *, base_s: float, cap_s: float, rng: random.Random | None = None
) -> float:
    """The wait after the ``attempts``-th failure: exponential, capped, jittered between half
    and all of it (so a gateway coming back is not hit by every message at the same moment)."""
    ceiling = min(cap_s, base_s * 2.0 ** max(0, attempts - 1))
    uniform = rng.uniform if rng is not None else random.uniform
    return ceiling / 2 + uniform(0, ceiling / 2)


def _event_data(n: Claimed) -> dict[str, Any]:
    recipient, _, target_id = n.target.partition(":")
    return {"channel": n.channel, "recipient": recipient, "target": target_id}


_ATTEMPT_SQL = """
INSERT INTO delivery_attempt (incident_id, channel, target, attempt, ok, http_status, error,
                              notification_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
_SENT_SQL = """
WITH n AS (
  UPDATE notification SET status = 'sent', sent_at = now(), lease_until = NULL, last_error = NULL
  WHERE id = $1 AND status = 'pending' RETURNING incident_id
)
INSERT INTO incident_event (incident_id, kind, actor, data)
SELECT incident_id, 'notified', $2, $3 FROM n WHERE incident_id IS NOT NULL
"""
_FAILED_SQL = """
UPDATE notification SET lease_until = NULL, last_error = $3,
  status = CASE WHEN $4 OR now() >= deadline_at THEN 'failed' ELSE 'pending' END,
  next_attempt_at = LEAST(now() + make_interval(secs => $5::float8), deadline_at)
WHERE id = $1 AND status = 'pending' AND lease_until = $2
RETURNING status
"""
_GAVE_UP_SQL = """
WITH ev AS (
  INSERT INTO incident_event (incident_id, kind, actor, data) VALUES ($1, 'notify_failed', $2, $3)
)
INSERT INTO outbox (topic, incident_id, payload) VALUES ($4, $1, $5)
"""


async def record_attempt(
    pool: asyncpg.Pool, settings: Settings, n: Claimed, attempt: Attempt
) -> str:
    """Record one attempt and what follows from it; returns the message's status now
    (``sent``, ``pending`` for a retry, ``failed``), or ``lost`` when another sender took it
    over meanwhile (our lease passed)."""
    error = attempt.error if attempt.http_status is None else f"HTTP {attempt.http_status}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            _ATTEMPT_SQL,
            n.incident_id,
            n.channel,
            n.target,
            n.attempts,
            attempt.ok,
            attempt.http_status,
            attempt.error,
            n.id,
        )
        if attempt.ok:
            await conn.execute(_SENT_SQL, n.id, ACTOR, _event_data(n))
            return "sent"
        delay = retry_delay(
            n.attempts, base_s=settings.notify_backoff_base_s, cap_s=settings.notify_backoff_cap_s
        )
        status = await conn.fetchval(
            _FAILED_SQL, n.id, n.lease_until, error, not attempt.retry, delay
        )
        if status is None:
            return "lost"
        if status == "failed" and n.incident_id is not None:
            data = {**_event_data(n), "attempts": n.attempts, "error": error}
            await conn.execute(
                _GAVE_UP_SQL,
                n.incident_id,
                ACTOR,
                data,
                TOPIC_UPDATED,
                {"incident_id": str(n.incident_id), "kind": "notify_failed", **data},
            )
        return str(status)


def render(settings: Settings, n: Claimed) -> dict[str, Any]:
    """The message as the gateway gets it: a guardian's link is made now, from the secret key
    (the queue holds no token)."""
    message = dict(n.message)
    if n.channel == "agency":
        # The gateway makes the document itself (app/interop/delivery.py); the sequence is
        # the order the agency gets the incident's changes in.
        message.update(incident_id=str(n.incident_id), sequence=n.id)
    if code_id := message.pop("signin_code_id", None):
        message["text"] = member_signin.sms_text(settings.secret_key, uuid.UUID(code_id))
    if message.pop("walk_view", False) and n.safe_return_id is not None:
        recipient, _, guardian_id = n.target.partition(":")
        if recipient == "guardian":
            url = walk_view_url(settings, n.safe_return_id, uuid.UUID(guardian_id))
            message["url"] = url
            message["text"] = f"{message.get('text', '')} Follow her: {url}".strip()
    if message.pop("view", False) and n.incident_id is not None:
        recipient, _, guardian_id = n.target.partition(":")
        if recipient == "guardian":
            url = guardian_view.view_url(settings, n.incident_id, uuid.UUID(guardian_id))
            message["url"] = url
            message["text"] = f"{message.get('text', '')} Follow her: {url}".strip()
    return message


async def purge_finished(pool: asyncpg.Pool, *, retention_s: float) -> int:
    """Sent and failed messages older than the retention go (their attempts stay, unlinked)."""
    result = await pool.execute(
        "DELETE FROM notification WHERE status <> 'pending'"
        " AND created_at < now() - make_interval(secs => $1::float8)",
        retention_s,
    )
    return int(result.split()[-1])
