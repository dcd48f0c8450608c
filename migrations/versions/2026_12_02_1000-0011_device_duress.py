"""device duress: the double-cancel duress setting and the health episodes of a button

Revision ID: 0011_device_duress
Revises: 0010_notifications
Create Date: 2026-12-02 10:00:00

``duress_double_cancel_s``: when set, a second cancel pressed within that many seconds of the
first is a duress signal (docs/devices.md); NULL (the default) turns it off.
``last_cancel_at`` and ``last_cancel_signal_id`` remember the previous cancel for it (a retry of
the same press, same ``signal_id``, is not a second press). ``low_battery_at`` is the last
``low_battery`` signal: a new one long after it (or after the battery recovered) is a new
episode, reported once on the district's consoles.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011_device_duress"
down_revision: str | None = "0010_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("device", sa.Column("duress_double_cancel_s", sa.Float(), nullable=True))
    op.add_column("device", sa.Column("last_cancel_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "device", sa.Column("last_cancel_signal_id", postgresql.UUID(as_uuid=True), nullable=True)
    )
    op.add_column("device", sa.Column("low_battery_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("device", "low_battery_at")
    op.drop_column("device", "last_cancel_signal_id")
    op.drop_column("device", "last_cancel_at")
    op.drop_column("device", "duress_double_cancel_s")
