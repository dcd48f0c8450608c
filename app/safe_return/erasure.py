"""Her erasure (``/v1/me/erase``, app/incidents/member_data.py) reaches her walks home, her
saved places and her scouts bookings: no position, place or label of hers stays in them."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_STATEMENTS = (
    "DELETE FROM saved_place WHERE member_id = :m",
    "DELETE FROM notification WHERE safe_return_id IN"
    " (SELECT id FROM safe_return_session WHERE member_id = :m)"
    " OR scout_booking_id IN (SELECT id FROM scout_booking WHERE member_id = :m)",
    "DELETE FROM safe_return_point WHERE session_id IN"
    " (SELECT id FROM safe_return_session WHERE member_id = :m)",
    # A walk still running ends (nobody is left to watch over); every position goes.
    "UPDATE safe_return_session SET"
    " status = CASE WHEN status IN ('active','asking') THEN 'ended' ELSE status END,"
    " ended_at = coalesce(ended_at, now()), destination = NULL, route = NULL,"
    " last_position = NULL, anchor = NULL, destination_label = NULL, updated_at = now()"
    " WHERE member_id = :m",
    "UPDATE scout_booking SET"
    " status = CASE WHEN status IN ('booked','walking') THEN 'cancelled' ELSE status END,"
    " cancelled_at = CASE WHEN status IN ('booked','walking') THEN now() ELSE cancelled_at END,"
    " cancelled_by = CASE WHEN status IN ('booked','walking') THEN 'member' ELSE cancelled_by END,"
    " meeting_point = NULL, destination = NULL, meeting_label = NULL, destination_label = NULL,"
    " code = NULL, updated_at = now() WHERE member_id = :m",
)


async def erase_member(session: AsyncSession, *, member_id: uuid.UUID) -> None:
    """In the erasure's own transaction (it flushes, never commits)."""
    for statement in _STATEMENTS:
        await session.execute(text(statement), {"m": member_id})
