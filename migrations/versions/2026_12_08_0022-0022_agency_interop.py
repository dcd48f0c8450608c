"""agency interop: subscriptions of other agencies (CAP 1.2 or NENA EIDO over signed webhooks)

Revision ID: 0022_agency_interop
Revises: 0021_assets
Create Date: 2026-12-08 00:22:00

``agency_subscription``: an agency's endpoint (URL, HMAC secret, the districts it takes, the
format). Its deliveries are ``notification`` rows of the new channel ``agency`` (target
``agency:<subscription id>``), so they share the queue's claim, lease, backoff, deadline and
``delivery_attempt`` record; ``ix_notification_agency_order`` serves the claim's rule that an
incident's deliveries to one agency go one at a time, in order. ``location_access`` names the
subscription a delivery of her position went to (``agency_subscription_id``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0022_agency_interop"
down_revision: str | None = "0021_assets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agency_subscription",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column(
            "district_ids",
            postgresql.ARRAY(sa.Uuid()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("format IN ('cap','eido')", name=op.f("ck_agency_subscription_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agency_subscription")),
    )
    op.drop_constraint(op.f("ck_notification_channel"), "notification", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_channel"), "notification", "channel IN ('sms','push','agency')"
    )
    op.create_index(
        "ix_notification_agency_order",
        "notification",
        ["target", "incident_id", "id"],
        postgresql_where=sa.text("status = 'pending' AND channel = 'agency'"),
    )
    op.add_column("location_access", sa.Column("agency_subscription_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    op.drop_column("location_access", "agency_subscription_id")
    op.drop_index("ix_notification_agency_order", table_name="notification")
    op.execute("DELETE FROM notification WHERE channel = 'agency'")
    op.drop_constraint(op.f("ck_notification_channel"), "notification", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_channel"), "notification", "channel IN ('sms','push')"
    )
    op.drop_table("agency_subscription")
