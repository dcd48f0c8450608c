"""dispatch: idempotency receipts, overdue-acknowledgement index

Revision ID: 0002_dispatch
Revises: 0004_devices
Create Date: 2026-11-25 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_dispatch"
down_revision: str | None = "0004_devices"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dispatch_receipt",
        sa.Column("outbox_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_dispatch_receipt")),
    )
    op.create_index(
        "ix_incident_ack_deadline",
        "incident",
        ["ack_deadline_at"],
        unique=False,
        postgresql_where=sa.text("status = 'new' AND ack_deadline_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_incident_ack_deadline",
        table_name="incident",
        postgresql_where=sa.text("status = 'new' AND ack_deadline_at IS NOT NULL"),
    )
    op.drop_table("dispatch_receipt")
