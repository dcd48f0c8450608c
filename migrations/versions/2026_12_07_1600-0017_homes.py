"""homes: a member's home with its sensors, arming state, entry delay and arming history

Revision ID: 0017_homes
Revises: 0016_alarm_receiver
Create Date: 2026-12-07 16:00:00

``home``: registered to a member (address, position, the district computed from it), its
arming state and, while an entry delay runs, ``entry_due_at`` (every dispatcher sweeps the due
ones through the partial index ``ix_home_entry_due``, so the delay survives restarts).
``home_arming_event``: arm, disarm, entry delays and alarms (the console shows the last 24 h).
``device``: a home's sensors are devices too (same signature, nonces, rotation and health as a
store's button): ``kind`` says which, ``home_id`` whose home; ``safe_place_id`` is now only a
store button's. ``incident.home_id``: the home of a sensor incident (source ``sensor``).
``ix_incident_open_presses`` also covers open sensor incidents: a phone SOS near one is linked
with it as one emergency, as with a store button's press.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography

revision: str = "0017_homes"
down_revision: str | None = "0016_alarm_receiver"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "home",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column(
            "geog",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
                nullable=False,
            ),
            nullable=False,
        ),
        sa.Column("district_id", sa.Uuid(), nullable=True),
        sa.Column(
            "state", sa.String(length=16), server_default=sa.text("'disarmed'"), nullable=False
        ),
        sa.Column(
            "state_changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("entry_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entry_device_id", sa.Uuid(), nullable=True),
        sa.Column("entry_signal_id", sa.Uuid(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("state IN ('disarmed','away','night')", name=op.f("ck_home_state")),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_home_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_home")),
    )
    op.create_index(op.f("ix_home_member_id"), "home", ["member_id"])
    op.create_index(
        "ix_home_entry_due",
        "home",
        ["entry_due_at"],
        postgresql_where=sa.text("entry_due_at IS NOT NULL"),
    )
    op.create_table(
        "home_arming_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("home_id", sa.Uuid(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("device_id", sa.Uuid(), nullable=True),
        sa.Column("incident_id", sa.Uuid(), nullable=True),
        sa.Column("duress", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.CheckConstraint(
            "kind IN ('arm_away','arm_night','disarm','wrong_pin','entry_started','alarm')",
            name=op.f("ck_home_arming_event_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["home_id"],
            ["home.id"],
            name=op.f("fk_home_arming_event_home_id_home"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_home_arming_event")),
    )
    op.create_index("ix_home_arming_event_home_at", "home_arming_event", ["home_id", "at"])

    op.add_column("device", sa.Column("home_id", sa.Uuid(), nullable=True))
    op.add_column(
        "device",
        sa.Column("kind", sa.String(length=16), server_default=sa.text("'button'"), nullable=False),
    )
    op.alter_column("device", "safe_place_id", existing_type=sa.Uuid(), nullable=True)
    op.create_foreign_key(
        op.f("fk_device_home_id_home"), "device", "home", ["home_id"], ["id"], ondelete="CASCADE"
    )
    op.create_index(op.f("ix_device_home_id"), "device", ["home_id"])
    op.create_check_constraint(
        op.f("ck_device_kind"),
        "device",
        "kind IN ('button','door','home_button','motion','keypad')",
    )
    op.create_check_constraint(
        op.f("ck_device_owner"),
        "device",
        "(kind = 'button') = (safe_place_id IS NOT NULL) AND (kind = 'button') = (home_id IS NULL)",
    )

    op.add_column("incident", sa.Column("home_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(op.f("fk_incident_home_id_home"), "incident", "home", ["home_id"], ["id"])
    op.drop_index("ix_incident_open_presses", table_name="incident")
    op.create_index(
        "ix_incident_open_presses",
        "incident",
        ["received_at"],
        postgresql_where=sa.text("closed_at IS NULL AND source IN ('button','sensor')"),
    )


def downgrade() -> None:
    op.drop_index("ix_incident_open_presses", table_name="incident")
    op.create_index(
        "ix_incident_open_presses",
        "incident",
        ["received_at"],
        postgresql_where=sa.text("closed_at IS NULL AND source = 'button'"),
    )
    op.drop_constraint(op.f("fk_incident_home_id_home"), "incident", type_="foreignkey")
    op.drop_column("incident", "home_id")
    op.execute("DELETE FROM device WHERE kind <> 'button'")
    op.drop_constraint(op.f("ck_device_owner"), "device", type_="check")
    op.drop_constraint(op.f("ck_device_kind"), "device", type_="check")
    op.drop_index(op.f("ix_device_home_id"), table_name="device")
    op.drop_constraint(op.f("fk_device_home_id_home"), "device", type_="foreignkey")
    op.alter_column("device", "safe_place_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_column("device", "kind")
    op.drop_column("device", "home_id")
    op.drop_index("ix_home_arming_event_home_at", table_name="home_arming_event")
    op.drop_table("home_arming_event")
    op.drop_index("ix_home_entry_due", table_name="home")
    op.drop_index(op.f("ix_home_member_id"), table_name="home")
    op.drop_table("home")
