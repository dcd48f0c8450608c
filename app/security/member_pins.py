"""Changing her PIN and duress PIN (``POST /v1/me/pin``), with her current PIN.

What someone forcing her to change it sees must not differ (docs/security.md, promise 9):

- Her **PIN** as the current one: both are replaced.
- Her **duress PIN** as the current one: the same answer (status, body, cost: two Argon2
  verifications and two hashes either way), and a silent SOS. Her real PIN stays; the *new PIN*
  he watched her choose becomes her duress PIN, so whatever he now believes is her PIN answers
  like it everywhere and escalates; the duress PIN she typed stops working, as an old PIN does
  after a change. The new duress PIN of that request is dropped (the one thing that differs:
  typed later, it is a wrong PIN; docs/app.md).
- A **wrong** PIN counts with her cancels' wrong PINs (one counter, ``member.wrong_pin_count``):
  after ``cancel_pin_lockout_after`` in a row every change is refused for
  ``cancel_pin_lockout_s``, whatever the PIN; her duress PIN then still raises its silent SOS.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from app.config import Settings
from app.incidents.store import TOPIC_UPDATED, Folded, NewIncident, StoredIncident, insert_incident
from app.security.passwords import hash_secret, verify_secret


@dataclass(frozen=True)
class PinChange:
    #: ``changed`` (her PIN or her duress PIN: one answer), ``wrong_pin``, ``locked_out``.
    outcome: str
    changed_at: datetime | None = None
    locked_for_s: int | None = None


_MEMBER_SQL = """
SELECT pin_hash, duress_pin_hash, now() AS now,
       ceil(extract(epoch FROM pin_locked_until - now()))::int AS locked_for_s
FROM member WHERE id = $1 AND deleted_at IS NULL FOR UPDATE
"""
_WRONG_SQL = """
UPDATE member SET wrong_pin_count = wrong_pin_count + 1,
  pin_locked_until = CASE WHEN wrong_pin_count + 1 >= $2
                          THEN now() + make_interval(secs => $3::float8) END
WHERE id = $1 RETURNING wrong_pin_count
"""
_EVENT_SQL = (
    "INSERT INTO security_event (kind, member_id, source_ip, detail) VALUES ($1, $2, $3, $4)"
)


async def change_pins(
    *,
    pool: asyncpg.Pool,
    settings: Settings,
    member_id: uuid.UUID,
    current_pin: str,
    new_pin: str,
    new_duress_pin: str,
    source_ip: str | None,
) -> PinChange:
    """Check ``current_pin`` and change her PINs (see the module); the refusals are returned,
    not raised, so that the wrong PIN's count commits with them."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_MEMBER_SQL, member_id)
        if row is None:
            return PinChange("wrong_pin")
        # Every path verifies both hashes and makes both new ones: the same cost whatever the PIN.
        is_pin, is_duress, pin_hash, duress_hash = await asyncio.gather(
            asyncio.to_thread(verify_secret, row["pin_hash"], current_pin),
            asyncio.to_thread(verify_secret, row["duress_pin_hash"], current_pin),
            asyncio.to_thread(hash_secret, new_pin),
            asyncio.to_thread(hash_secret, new_duress_pin),
        )
        locked_for_s = row["locked_for_s"]
        if locked_for_s is not None and locked_for_s > 0:
            if is_duress and not is_pin:
                await _silent_sos(conn, settings, member_id, refused=True)
            await conn.execute(_EVENT_SQL, "pin_change_locked_out", member_id, source_ip, {})
            return PinChange("locked_out", locked_for_s=max(1, math.ceil(locked_for_s)))
        if not (is_pin or is_duress):
            count = await conn.fetchval(
                _WRONG_SQL, member_id, settings.cancel_pin_lockout_after,
                settings.cancel_pin_lockout_s,
            )  # fmt: skip
            await conn.execute(
                _EVENT_SQL, "wrong_pin_change", member_id, source_ip, {"count": count}
            )
            return PinChange("wrong_pin")
        if is_pin:
            await conn.execute(
                "UPDATE member SET pin_hash = $2, duress_pin_hash = $3, wrong_pin_count = 0,"
                " pin_locked_until = NULL WHERE id = $1",
                member_id, pin_hash, duress_hash,
            )  # fmt: skip
            await conn.execute(_EVENT_SQL, "pin_changed", member_id, source_ip, {})
        else:
            await conn.execute(
                "UPDATE member SET duress_pin_hash = $2, wrong_pin_count = 0,"
                " pin_locked_until = NULL WHERE id = $1",
                member_id, pin_hash,
            )  # fmt: skip
            await conn.execute(_EVENT_SQL, "duress_pin_change", member_id, source_ip, {})
            await _silent_sos(conn, settings, member_id, refused=False)
        changed_at: datetime = row["now"]
        return PinChange("changed", changed_at=changed_at)


async def _silent_sos(
    conn: asyncpg.Connection, settings: Settings, member_id: uuid.UUID, *, refused: bool
) -> uuid.UUID:
    """Her duress PIN on a PIN change: a silent SOS without a position (her open alert, if
    she has one, is escalated instead), routed and escalated as a duress cancel is."""
    actor = f"member:{member_id}"
    data = {"via": "pin_change", "refused": refused}
    stored = await insert_incident(
        conn,
        NewIncident(
            source="app", trigger="duress_pin", silent=True, actor=actor, member_id=member_id,
            flags=("duress",), event_data=data,
        ),
        fold_window_s=settings.sos_fold_window_s,
    )  # fmt: skip
    if isinstance(stored, Folded):
        incident_id = stored.into
        if not await conn.fetchval(
            "UPDATE incident SET duress = true, silent = true WHERE id = $1 AND NOT duress"
            " RETURNING true",
            incident_id,
        ):
            return incident_id
    elif isinstance(stored, StoredIncident):
        incident_id = stored.id
        await conn.execute("UPDATE incident SET duress = true WHERE id = $1", incident_id)
    else:
        raise RuntimeError("the duress SOS was not inserted")
    await conn.execute(
        "INSERT INTO incident_event (incident_id, kind, actor, data) VALUES ($1, 'duress', $2, $3)",
        incident_id, actor, data,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO outbox (topic, incident_id, payload) VALUES ($1, $2, $3)",
        TOPIC_UPDATED, incident_id,
        {"incident_id": str(incident_id), "kind": "duress", "via": "pin_change"},
    )  # fmt: skip
    return incident_id
