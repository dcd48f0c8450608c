"""link index: routing's lookup of the open button presses near a phone SOS is a short range

Revision ID: 0007_link_index
Revises: 0006_direct_publish
Create Date: 2026-11-29 23:30:00

Routing links a phone SOS and a panic-button press close in space and time (docs/dispatch.md).
The lookup filtered the open incidents by ``abs(received_at - other.received_at) <= window``,
which no index can serve, so its plan read every open incident (the plan PostgreSQL caches for
a prepared statement may be chosen while the table is small, and is kept). With 8,000 open
incidents that was 3.6 ms of every SOS's routing. It is now a ``received_at`` range of this
index of open button presses. The index is partial on the literal source so that no other
lookup by time (the SOS fold check, say) can be planned onto it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_link_index"
down_revision: str | None = "0006_direct_publish"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_incident_open_presses",
        "incident",
        ["received_at"],
        postgresql_where=sa.text("closed_at IS NULL AND source = 'button'"),
    )


def downgrade() -> None:
    op.drop_index("ix_incident_open_presses", table_name="incident")
