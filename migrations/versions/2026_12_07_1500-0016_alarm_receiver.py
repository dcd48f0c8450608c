"""alarm panels (SIA DC-09): accounts, their logs, and per-device offline threshold and troubles

Revision ID: 0016_alarm_receiver
Revises: 0015_safe_return
Create Date: 2026-12-07 15:00:00

``alarm_account``: a panel's account number and line prefix (unique together), its AES key,
its supervision interval and timestamp window, the store it protects and the ``device`` row
that carries its health (a nullable ``home_id`` can be added beside ``safe_place_id`` later).
``alarm_event``: the account's log. ``device.offline_after_s``: a device's own offline
threshold (a panel's supervision interval); ``device.troubles``: troubles not yet restored.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016_alarm_receiver"
down_revision: str | None = "0015_safe_return"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("device", sa.Column("offline_after_s", sa.Float(), nullable=True))
    op.add_column(
        "device",
        sa.Column(
            "troubles",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
    )
    op.create_table(
        "alarm_account",
        sa.Column("account", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=6), nullable=False),
        sa.Column("safe_place_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("aes_key", sa.Text(), nullable=True),
        sa.Column("key_hex", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("supervision_s", sa.Float(), nullable=False),
        sa.Column("window_past_s", sa.Float(), server_default=sa.text("40"), nullable=False),
        sa.Column("window_future_s", sa.Float(), server_default=sa.text("20"), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("account ~ '^[0-9A-F]{3,16}$'", name=op.f("ck_alarm_account_account")),
        sa.CheckConstraint("prefix ~ '^[0-9A-F]{0,6}$'", name=op.f("ck_alarm_account_prefix")),
        sa.CheckConstraint("supervision_s > 0", name=op.f("ck_alarm_account_supervision")),
        sa.CheckConstraint(
            "window_past_s >= 0 AND window_future_s >= 0", name=op.f("ck_alarm_account_window")
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["device.id"], name=op.f("fk_alarm_account_device_id_device")
        ),
        sa.ForeignKeyConstraint(
            ["safe_place_id"],
            ["safe_place.id"],
            name=op.f("fk_alarm_account_safe_place_id_safe_place"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_account")),
        sa.UniqueConstraint("device_id", name=op.f("uq_alarm_account_device_id")),
    )
    op.create_index(
        "uq_alarm_account_prefix_account", "alarm_account", ["prefix", "account"], unique=True
    )
    op.create_index(
        op.f("ix_alarm_account_safe_place_id"), "alarm_account", ["safe_place_id"], unique=False
    )
    op.create_table(
        "alarm_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("token", sa.String(length=16), nullable=False),
        sa.Column("seq", sa.String(length=4), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("code", sa.String(length=24), nullable=False),
        sa.Column("qualifier", sa.String(length=1), nullable=True),
        sa.Column("zone", sa.String(length=16), nullable=True),
        sa.Column("area", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("incident_id", sa.Uuid(), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["alarm_account.id"],
            name=op.f("fk_alarm_event_account_id_alarm_account"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incident.id"], name=op.f("fk_alarm_event_incident_id_incident")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarm_event")),
    )
    op.create_index("ix_alarm_event_account_received", "alarm_event", ["account_id", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_alarm_event_account_received", table_name="alarm_event")
    op.drop_table("alarm_event")
    op.drop_index(op.f("ix_alarm_account_safe_place_id"), table_name="alarm_account")
    op.drop_index("uq_alarm_account_prefix_account", table_name="alarm_account")
    op.drop_table("alarm_account")
    op.drop_column("device", "troubles")
    op.drop_column("device", "offline_after_s")
