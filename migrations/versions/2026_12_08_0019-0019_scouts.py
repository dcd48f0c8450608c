"""Safe Return Scouts: districts' service hours and closed days, teams (pairs of volunteers),
bookings; her saved places; a scout's photo; notifications about a booking

Revision ID: 0019_scouts
Revises: 0018_home_panels
Create Date: 2026-12-07 20:44:20

``scout_booking``: one live booking per woman (``uq_scout_booking_live_member``, and per phone
for a call-taker's booking); the no-show sweep reads ``ix_scout_booking_no_show``.
``notification.scout_booking_id``: a message about a booking (no incident, no walk yet).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography
from sqlalchemy.dialects import postgresql

revision: str = "0019_scouts"
down_revision: str | None = "0018_home_panels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_geospatial_table(
        "saved_place",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
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
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_saved_place_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_place")),
        sa.UniqueConstraint("member_id", "label", name="uq_saved_place_member_label"),
    )
    op.create_index(op.f("ix_saved_place_member_id"), "saved_place", ["member_id"], unique=False)
    op.create_table(
        "scout_closed_day",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("district_id", sa.Uuid(), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("label", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["district.id"],
            name=op.f("fk_scout_closed_day_district_id_district"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scout_closed_day")),
    )
    op.create_index("ix_scout_closed_day_day", "scout_closed_day", ["day"], unique=False)
    op.create_table(
        "scout_district",
        sa.Column("district_id", sa.Uuid(), nullable=False),
        sa.Column("min_lead_s", sa.Double(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["district.id"],
            name=op.f("fk_scout_district_district_id_district"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("district_id", name=op.f("pk_scout_district")),
    )
    op.create_table(
        "scout_hours",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("district_id", sa.Uuid(), nullable=False),
        sa.Column("weekday", sa.SmallInteger(), nullable=False),
        sa.Column("opens", sa.Time(), nullable=False),
        sa.Column("closes", sa.Time(), nullable=False),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name=op.f("ck_scout_hours_weekday")),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["district.id"],
            name=op.f("fk_scout_hours_district_id_district"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scout_hours")),
        sa.UniqueConstraint("district_id", "weekday", name="uq_scout_hours_district_weekday"),
    )
    op.create_geospatial_table(
        "scout_team",
        sa.Column("district_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("scout_a_id", sa.Uuid(), nullable=False),
        sa.Column("scout_b_id", sa.Uuid(), nullable=False),
        sa.Column(
            "base",
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
        sa.Column(
            "weekdays",
            postgresql.ARRAY(sa.SmallInteger()),
            server_default=sa.text("'{0,1,2,3,4}'::smallint[]"),
            nullable=False,
        ),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("scout_a_id <> scout_b_id", name=op.f("ck_scout_team_pair")),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["district.id"],
            name=op.f("fk_scout_team_district_id_district"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["scout_a_id"],
            ["staff.id"],
            name=op.f("fk_scout_team_scout_a_id_staff"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["scout_b_id"],
            ["staff.id"],
            name=op.f("fk_scout_team_scout_b_id_staff"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scout_team")),
    )
    op.create_index(op.f("ix_scout_team_district_id"), "scout_team", ["district_id"], unique=False)
    op.create_geospatial_table(
        "scout_booking",
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("guest_name", sa.Text(), nullable=True),
        sa.Column("guest_phone", sa.String(length=32), nullable=True),
        sa.Column("booked_via", sa.String(length=16), nullable=False),
        sa.Column("booked_by_staff_id", sa.Uuid(), nullable=True),
        sa.Column("district_id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column(
            "declined_team_ids",
            postgresql.ARRAY(sa.Uuid()),
            server_default=sa.text("'{}'::uuid[]"),
            nullable=False,
        ),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'booked'"), nullable=False
        ),
        sa.Column("meet_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "meeting_point",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
            ),
            nullable=True,
        ),
        sa.Column("meeting_label", sa.Text(), nullable=True),
        sa.Column(
            "destination",
            Geography(
                geometry_type="POINT",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
            ),
            nullable=True,
        ),
        sa.Column("destination_label", sa.Text(), nullable=True),
        sa.Column("code", sa.String(length=8), nullable=True),
        sa.Column("scouts_arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("met_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("safe_return_id", sa.Uuid(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=16), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("no_show_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "booked_via IN ('app','call_centre','district_office')",
            name=op.f("ck_scout_booking_booked_via"),
        ),
        sa.CheckConstraint(
            "status IN ('booked','walking','completed','cancelled','no_show')",
            name=op.f("ck_scout_booking_status"),
        ),
        sa.CheckConstraint(
            "member_id IS NOT NULL OR guest_phone IS NOT NULL", name=op.f("ck_scout_booking_who")
        ),
        sa.ForeignKeyConstraint(
            ["district_id"],
            ["district.id"],
            name=op.f("fk_scout_booking_district_id_district"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_scout_booking_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["safe_return_id"],
            ["safe_return_session.id"],
            name=op.f("fk_scout_booking_safe_return_id_safe_return_session"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["scout_team.id"],
            name=op.f("fk_scout_booking_team_id_scout_team"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scout_booking")),
    )
    op.create_index(
        "ix_scout_booking_district_meet_at",
        "scout_booking",
        ["district_id", "meet_at"],
        unique=False,
    )
    op.create_index(
        "ix_scout_booking_no_show",
        "scout_booking",
        ["meet_at"],
        unique=False,
        postgresql_where=sa.text("status = 'booked' AND scouts_arrived_at IS NULL"),
    )
    op.create_index(
        "ix_scout_booking_safe_return_id", "scout_booking", ["safe_return_id"], unique=False
    )
    op.create_index(
        "ix_scout_booking_team_meet_at", "scout_booking", ["team_id", "meet_at"], unique=False
    )
    op.create_index(
        "uq_scout_booking_live_guest",
        "scout_booking",
        ["guest_phone"],
        unique=True,
        postgresql_where=sa.text("status IN ('booked','walking') AND member_id IS NULL"),
    )
    op.create_index(
        "uq_scout_booking_live_member",
        "scout_booking",
        ["member_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('booked','walking')"),
    )
    op.add_column("notification", sa.Column("scout_booking_id", sa.Uuid(), nullable=True))
    op.create_index(
        op.f("ix_notification_scout_booking_id"), "notification", ["scout_booking_id"], unique=False
    )
    op.create_foreign_key(
        op.f("fk_notification_scout_booking_id_scout_booking"),
        "notification",
        "scout_booking",
        ["scout_booking_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.add_column("staff", sa.Column("photo_url", sa.Text(), nullable=True))
    op.drop_constraint(op.f("ck_notification_about"), "notification", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_about"),
        "notification",
        "incident_id IS NOT NULL OR safe_return_id IS NOT NULL OR scout_booking_id IS NOT NULL",
    )


def downgrade() -> None:
    op.execute("DELETE FROM notification WHERE scout_booking_id IS NOT NULL")
    op.drop_constraint(op.f("ck_notification_about"), "notification", type_="check")
    op.create_check_constraint(
        op.f("ck_notification_about"),
        "notification",
        "incident_id IS NOT NULL OR safe_return_id IS NOT NULL",
    )
    op.drop_column("staff", "photo_url")
    op.drop_constraint(
        op.f("fk_notification_scout_booking_id_scout_booking"), "notification", type_="foreignkey"
    )
    op.drop_index(op.f("ix_notification_scout_booking_id"), table_name="notification")
    op.drop_column("notification", "scout_booking_id")
    op.drop_index(
        "uq_scout_booking_live_member",
        table_name="scout_booking",
        postgresql_where=sa.text("status IN ('booked','walking')"),
    )
    op.drop_index(
        "uq_scout_booking_live_guest",
        table_name="scout_booking",
        postgresql_where=sa.text("status IN ('booked','walking') AND member_id IS NULL"),
    )
    op.drop_index("ix_scout_booking_team_meet_at", table_name="scout_booking")
    op.drop_index("ix_scout_booking_safe_return_id", table_name="scout_booking")
    op.drop_index(
        "ix_scout_booking_no_show",
        table_name="scout_booking",
        postgresql_where=sa.text("status = 'booked' AND scouts_arrived_at IS NULL"),
    )
    op.drop_index("ix_scout_booking_district_meet_at", table_name="scout_booking")
    op.drop_geospatial_table("scout_booking")
    op.drop_index(op.f("ix_scout_team_district_id"), table_name="scout_team")
    op.drop_geospatial_table("scout_team")
    op.drop_table("scout_hours")
    op.drop_table("scout_district")
    op.drop_index("ix_scout_closed_day_day", table_name="scout_closed_day")
    op.drop_table("scout_closed_day")
    op.drop_index(op.f("ix_saved_place_member_id"), table_name="saved_place")
    op.drop_geospatial_table("saved_place")
