"""notifications: a durable queue of pushes and texts, guardian views, who is on call

Revision ID: 0010_notifications
Revises: 0009_access_batches
Create Date: 2026-12-01 09:00:00

A push or SMS used to be sent in-process with a few in-memory retries: a gateway outage longer
than a second, or a dispatcher dying between two retries, lost it. ``notification`` holds every
message until the gateway said 2xx or its deadline passed (``app/notifications``); each HTTP
attempt is still a ``delivery_attempt`` row, now pointing at its notification.

``guardian_view`` holds the hashes of the links guardians are texted (a read-only view of her
alert while it is open); a guardian's read of her position is a ``location_access`` row naming
the guardian (``staff_ids`` empty). ``staff.on_call`` marks the supervisors who are paged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010_notifications"
down_revision: str | None = "0009_access_batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("message", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("channel IN ('sms','push')", name=op.f("ck_notification_channel")),
        sa.CheckConstraint(
            "status IN ('pending','sent','failed')", name=op.f("ck_notification_status")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_notification_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notification_dedupe_key")),
    )
    op.create_index("ix_notification_incident_id", "notification", ["incident_id"])
    op.create_index(
        "ix_notification_due",
        "notification",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.add_column("delivery_attempt", sa.Column("notification_id", sa.BigInteger()))
    op.create_foreign_key(
        op.f("fk_delivery_attempt_notification_id_notification"),
        "delivery_attempt",
        "notification",
        ["notification_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_index("ix_delivery_attempt_notification_id", "delivery_attempt", ["notification_id"])
    op.create_table(
        "guardian_view",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=False),
        sa.Column("guardian_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_guardian_view_incident_id_incident"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["guardian_id"],
            ["guardian.id"],
            name=op.f("fk_guardian_view_guardian_id_guardian"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardian_view")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_guardian_view_token_hash")),
        sa.UniqueConstraint(
            "incident_id", "guardian_id", name=op.f("uq_guardian_view_incident_id")
        ),
    )
    op.add_column("location_access", sa.Column("guardian_id", sa.Uuid()))
    op.add_column(
        "staff", sa.Column("on_call", sa.Boolean(), server_default=sa.false(), nullable=False)
    )


def downgrade() -> None:
    op.drop_column("staff", "on_call")
    op.drop_column("location_access", "guardian_id")
    op.drop_table("guardian_view")
    op.drop_index("ix_delivery_attempt_notification_id", table_name="delivery_attempt")
    op.drop_constraint(
        op.f("fk_delivery_attempt_notification_id_notification"),
        "delivery_attempt",
        type_="foreignkey",
    )
    op.drop_column("delivery_attempt", "notification_id")
    op.drop_index("ix_notification_due", table_name="notification")
    op.drop_index("ix_notification_incident_id", table_name="notification")
    op.drop_table("notification")
