"""races: one incident for simultaneous reports of one member; a cancel-PIN lockout

Revision ID: 0012_races
Revises: 0011_device_duress
Create Date: 2026-12-07 11:00:00

``incident_open_alert``: the SOS statement's fold check (her open alert of the last
``sos_fold_window_s``) as a function that first takes a transaction-scoped advisory lock keyed
by the member (or, for a button, the device). Two reports of hers at the same moment (phone and
wearable, with different ``client_alert_id``\\ s) were both inserted: each statement's snapshot
was taken before the other committed. The second now waits for the first's commit, and the
function, being VOLATILE, reads with a fresh snapshot once it holds the lock, so it sees the
first incident and the report is folded into it. The SOS stays one statement.

``member.pin_locked_until``: after ``cancel_pin_lockout_after`` wrong cancel PINs, every cancel
is refused until then (app/incidents/alerts.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_races"
down_revision: str | None = "0011_device_duress"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The advisory-lock class of "one member's (one button's) reports" (the two-key form, so that
#: no other advisory lock of the service can collide with it); app/incidents/store.py names it.
FOLD_LOCK_CLASS = 15_005

_FUNCTION = f"""
CREATE FUNCTION incident_open_alert(p_member uuid, p_device uuid, p_window_s float8,
                                    p_client_alert uuid) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  found uuid;
BEGIN
  IF p_window_s IS NULL OR p_window_s <= 0 OR coalesce(p_member, p_device) IS NULL THEN
    RETURN NULL;
  END IF;
  -- Held until this transaction ends: her concurrent report waits here for this one's commit.
  PERFORM pg_advisory_xact_lock({FOLD_LOCK_CLASS}, hashtext(coalesce(p_member, p_device)::text));
  -- A query of a VOLATILE function reads with a snapshot of its own, taken now, after the lock:
  -- it sees a report of hers that committed while this one waited.
  IF p_member IS NOT NULL THEN
    SELECT id INTO found FROM incident
    WHERE member_id = p_member AND received_at > now() - make_interval(secs => p_window_s)
      AND closed_at IS NULL AND member_cancelled_at IS NULL
      AND (p_client_alert IS NULL OR client_alert_id IS DISTINCT FROM p_client_alert)
    ORDER BY received_at DESC LIMIT 1;
  ELSE
    SELECT id INTO found FROM incident
    WHERE device_id = p_device AND received_at > now() - make_interval(secs => p_window_s)
      AND closed_at IS NULL AND member_cancelled_at IS NULL
      AND (p_client_alert IS NULL OR client_alert_id IS DISTINCT FROM p_client_alert)
    ORDER BY received_at DESC LIMIT 1;
  END IF;
  RETURN found;
END
$$
"""


def upgrade() -> None:
    op.execute(_FUNCTION)
    op.add_column("member", sa.Column("pin_locked_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("member", "pin_locked_until")
    op.execute("DROP FUNCTION incident_open_alert(uuid, uuid, float8, uuid)")
