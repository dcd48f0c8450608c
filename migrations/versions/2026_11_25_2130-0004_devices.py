"""devices: panic-button signal idempotency and last test time

Revision ID: 0004_devices
Revises: 0001
Create Date: 2026-11-25 21:30:00

A button retries a panic with the same ``signal_id`` (stored as the incident's
``client_alert_id``). The member index ``uq_incident_member_client_alert`` cannot catch it: a
button incident has a NULL member_id and NULLs never conflict. This partial unique index makes
"one incident per device and signal_id" a database fact.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_devices"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("device", sa.Column("last_test_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "uq_incident_device_client_alert",
        "incident",
        ["device_id", "client_alert_id"],
        unique=True,
        postgresql_where=sa.text("device_id IS NOT NULL AND client_alert_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_incident_device_client_alert", table_name="incident")
    op.drop_column("device", "last_test_at")
