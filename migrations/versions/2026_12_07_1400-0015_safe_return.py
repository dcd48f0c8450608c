"""safe return ("walk me home"): sessions with their timers, their trail and who read it; an
incident source ``safe_return``; notifications about a session rather than an incident

Revision ID: 0015_safe_return
Revises: 0014_staff_totp
Create Date: 2026-12-07 15:18:01

``safe_return_session.next_check_at`` is the earliest moment one of its checks can fire (or,
while it asks "Are you OK?", the end of her time to answer): every dispatcher sweeps the head of
the partial index ``ix_safe_return_session_due`` with SKIP LOCKED (app/safe_return/sweeper.py).
``notification.incident_id`` may now be NULL for a message about a session ("set off",
"arrived", "Are you OK?"), which names it in ``safe_return_id``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography

revision: str = "0015_safe_return"
down_revision: str | None = "0014_staff_totp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The one place the checks' due times are decided: the earliest check of a session and its
# reason. Each check counts from her last "I'm OK" too, so an answered check does not fire again
# at once; the battery check is asked once.
_DUE_FUNCTION = """
CREATE FUNCTION safe_return_due(s safe_return_session, OUT due_at timestamptz, OUT reason text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  since_ok timestamptz := coalesce(s.ok_at, '-infinity'::timestamptz);
  t timestamptz;
BEGIN
  due_at := s.arrival_due_at;
  reason := 'no_arrival';
  t := greatest(coalesce(s.last_point_at, s.started_at), since_ok)
       + make_interval(secs => s.no_position_s);
  IF t < due_at THEN due_at := t; reason := 'no_position'; END IF;
  IF s.off_route_since IS NOT NULL THEN
    t := greatest(s.off_route_since, since_ok) + make_interval(secs => s.off_route_s);
    IF t < due_at THEN due_at := t; reason := 'off_route'; END IF;
  END IF;
  IF s.anchor_at IS NOT NULL AND s.destination IS NOT NULL
     AND NOT ST_DWithin(s.anchor, s.destination, s.geofence_m) THEN
    t := greatest(s.anchor_at, since_ok) + make_interval(secs => s.stationary_s);
    IF t < due_at THEN due_at := t; reason := 'not_moving'; END IF;
  END IF;
  IF s.battery_pct IS NOT NULL AND s.battery_pct < s.low_battery_pct
     AND NOT s.low_battery_asked THEN
    t := coalesce(s.last_point_at, s.started_at);
    IF t < due_at THEN due_at := t; reason := 'low_battery'; END IF;
  END IF;
END $$
"""
# Every write keeps the timer true: while active, the earliest check; while asking, the end of
# her time to answer; otherwise none (the row leaves the sweep's partial index).
_TIMER_TRIGGER = """
CREATE FUNCTION safe_return_session_timer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = 'active' THEN
    SELECT d.due_at INTO NEW.next_check_at FROM safe_return_due(NEW) d;
  ELSIF NEW.status = 'asking' THEN
    NEW.next_check_at := NEW.asked_at + make_interval(secs => NEW.ask_s);
  ELSE
    NEW.next_check_at := NULL;
  END IF;
  RETURN NEW;
END $$
"""
_TIMER_TRIGGER_ON = """
CREATE TRIGGER safe_return_session_timer BEFORE INSERT OR UPDATE ON safe_return_session
FOR EACH ROW EXECUTE FUNCTION safe_return_session_timer();
"""


def upgrade() -> None:
    op.create_geospatial_table(
        "safe_return_session",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'active'"), nullable=False
        ),
        sa.Column("member_status", sa.String(length=16), nullable=True),
        sa.Column(
            "share_with_control_centre",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
        sa.Column("tell_guardians", sa.Boolean(), server_default=sa.text("true"), nullable=False),
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
        sa.Column("district_id", sa.Uuid(), nullable=True),
        sa.Column(
            "route",
            Geography(
                geometry_type="LINESTRING",
                srid=4326,
                dimension=2,
                spatial_index=False,
                from_text="ST_GeogFromText",
                name="geography",
            ),
            nullable=True,
        ),
        sa.Column("expected_arrival_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("arrival_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("geofence_m", sa.Double(), nullable=False),
        sa.Column("no_position_s", sa.Double(), nullable=False),
        sa.Column("corridor_m", sa.Double(), nullable=False),
        sa.Column("off_route_s", sa.Double(), nullable=False),
        sa.Column("stationary_m", sa.Double(), nullable=False),
        sa.Column("stationary_s", sa.Double(), nullable=False),
        sa.Column("low_battery_pct", sa.Integer(), nullable=False),
        sa.Column("ask_s", sa.Double(), nullable=False),
        sa.Column(
            "last_position",
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
        sa.Column("last_point_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("battery_pct", sa.Integer(), nullable=True),
        sa.Column("off_route_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "anchor",
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
        sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "low_battery_asked", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
        sa.Column("ok_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("check_reason", sa.String(length=16), nullable=True),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("incident_id", sa.Uuid(), nullable=True),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "check_reason IS NULL OR check_reason IN ('no_arrival','no_position','off_route','not_moving','low_battery','duress')",
            name=op.f("ck_safe_return_session_check_reason"),
        ),
        sa.CheckConstraint(
            "status IN ('active','asking','arrived','ended','sos')",
            name=op.f("ck_safe_return_session_status"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incident.id"],
            name=op.f("fk_safe_return_session_incident_id_incident"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["member.id"],
            name=op.f("fk_safe_return_session_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safe_return_session")),
    )
    op.create_index(
        "ix_safe_return_session_district_live",
        "safe_return_session",
        ["district_id"],
        unique=False,
        postgresql_where=sa.text("status IN ('active','asking')"),
    )
    op.create_index(
        "ix_safe_return_session_due",
        "safe_return_session",
        ["next_check_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('active','asking')"),
    )
    op.create_index(
        "ix_safe_return_session_ended_at", "safe_return_session", ["ended_at"], unique=False
    )
    op.create_index(
        "uq_safe_return_session_live_member",
        "safe_return_session",
        ["member_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('active','asking')"),
    )
    op.execute(_DUE_FUNCTION)
    op.execute(_TIMER_TRIGGER)
    op.execute(_TIMER_TRIGGER_ON)
    op.create_table(
        "safe_return_access",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("staff_id", sa.Uuid(), nullable=True),
        sa.Column("guardian_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["safe_return_session.id"],
            name=op.f("fk_safe_return_access_session_id_safe_return_session"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safe_return_access")),
    )
    op.create_index(
        op.f("ix_safe_return_access_session_id"), "safe_return_access", ["session_id"], unique=False
    )
    op.create_geospatial_table(
        "safe_return_point",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
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
        sa.Column("accuracy_m", sa.Double(), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["safe_return_session.id"],
            name=op.f("fk_safe_return_point_session_id_safe_return_session"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_safe_return_point")),
    )
    op.create_index(
        "ix_safe_return_point_session_id", "safe_return_point", ["session_id", "id"], unique=False
    )
    op.add_column("notification", sa.Column("safe_return_id", sa.Uuid(), nullable=True))
    op.alter_column("notification", "incident_id", existing_type=sa.UUID(), nullable=True)
    op.create_index(
        op.f("ix_notification_safe_return_id"), "notification", ["safe_return_id"], unique=False
    )
    op.create_foreign_key(
        op.f("fk_notification_safe_return_id_safe_return_session"),
        "notification",
        "safe_return_session",
        ["safe_return_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_check_constraint(
        "about", "notification", "incident_id IS NOT NULL OR safe_return_id IS NOT NULL"
    )
    op.drop_constraint(op.f("ck_incident_source"), "incident", type_="check")
    op.create_check_constraint(
        "source", "incident", "source IN ('app','button','sensor','safe_return')"
    )


def downgrade() -> None:
    op.execute("DELETE FROM incident WHERE source = 'safe_return'")
    op.drop_constraint(op.f("ck_incident_source"), "incident", type_="check")
    op.create_check_constraint("source", "incident", "source IN ('app','button','sensor')")
    op.execute("DELETE FROM notification WHERE incident_id IS NULL")
    op.drop_constraint(op.f("ck_notification_about"), "notification", type_="check")
    op.drop_constraint(
        op.f("fk_notification_safe_return_id_safe_return_session"),
        "notification",
        type_="foreignkey",
    )
    op.drop_index(op.f("ix_notification_safe_return_id"), table_name="notification")
    op.alter_column("notification", "incident_id", existing_type=sa.UUID(), nullable=False)
    op.drop_column("notification", "safe_return_id")
    op.drop_index("ix_safe_return_point_session_id", table_name="safe_return_point")
    op.drop_geospatial_table("safe_return_point")
    op.drop_index(op.f("ix_safe_return_access_session_id"), table_name="safe_return_access")
    op.drop_table("safe_return_access")
    op.drop_index(
        "uq_safe_return_session_live_member",
        table_name="safe_return_session",
        postgresql_where=sa.text("status IN ('active','asking')"),
    )
    op.drop_index("ix_safe_return_session_ended_at", table_name="safe_return_session")
    op.drop_index(
        "ix_safe_return_session_due",
        table_name="safe_return_session",
        postgresql_where=sa.text("status IN ('active','asking')"),
    )
    op.drop_index(
        "ix_safe_return_session_district_live",
        table_name="safe_return_session",
        postgresql_where=sa.text("status IN ('active','asking')"),
    )
    op.execute("DROP TRIGGER safe_return_session_timer ON safe_return_session")
    op.execute("DROP FUNCTION safe_return_session_timer()")
    op.execute("DROP FUNCTION safe_return_due(safe_return_session)")
    op.drop_geospatial_table("safe_return_session")
