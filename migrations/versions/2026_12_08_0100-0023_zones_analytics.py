"""zones and analytics: special control zones, dongs, crime counts, the analytics view

Revision ID: 0023_zones_analytics
Revises: 0022_agency_interop
Create Date: 2026-12-08 01:00:00

``special_zone``: an operator's polygon with a name, a reason, daily active hours in Asia/Seoul
(``active_from``/``active_to``, both NULL for all day; ``active_to < active_from`` spans
midnight) and how much it raises the priority of its incidents during those hours.
``dong``: the legal dongs (법정동) the analytics count incidents by. ``crime_stat``: the Seoul
five-major-crimes counts by district and year (``ansim analytics import-crimes``).
``analytics_incident``: a materialized view with one narrow row per incident (its dong, hour of
the week in Seoul, outcome, seconds to acknowledge, position in EPSG:5179 metres), refreshed
by the dispatchers (``ANSIM_ANALYTICS_REFRESH_S``) and ``ansim analytics refresh``: the
analytics read it, never the incident table the SOS writes. ``analytics_refresh``: when it was
last refreshed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0023_zones_analytics"
down_revision: str | None = "0022_agency_interop"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYTICS_VIEW = """
CREATE MATERIALIZED VIEW analytics_incident AS
SELECT i.id, i.received_at, i.district_id, i.source, i.status,
       CASE WHEN i.status IN ('resolved', 'false_alarm', 'cancelled') THEN i.status
            ELSE 'open' END AS outcome,
       extract(epoch FROM i.acknowledged_at - i.received_at)::float8 AS ack_s,
       ((extract(isodow FROM i.received_at AT TIME ZONE 'Asia/Seoul')::int - 1) * 24
         + extract(hour FROM i.received_at AT TIME ZONE 'Asia/Seoul')::int)::smallint
         AS hour_of_week,
       dn.code AS dong_code,
       ST_X(p.m) AS x, ST_Y(p.m) AS y
FROM incident i
LEFT JOIN LATERAL (
  SELECT ST_Transform(i.location::geometry, 5179) AS m
) p ON true
LEFT JOIN LATERAL (
  SELECT dong.code FROM dong WHERE ST_Covers(dong.boundary, i.location::geometry)
  ORDER BY dong.code LIMIT 1
) dn ON i.location IS NOT NULL
WITH DATA
"""


def upgrade() -> None:
    op.create_table(
        "special_zone",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "boundary",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=False,
        ),
        sa.Column("active_from", sa.Time(), nullable=True),
        sa.Column("active_to", sa.Time(), nullable=True),
        sa.Column("priority_raise", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("source", sa.Text(), server_default=sa.text("'manual'"), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "priority_raise BETWEEN 0 AND 3", name=op.f("ck_special_zone_priority_raise")
        ),
        sa.CheckConstraint(
            "(active_from IS NULL) = (active_to IS NULL)", name=op.f("ck_special_zone_hours")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_special_zone")),
    )
    op.create_index(
        "ix_special_zone_boundary",
        "special_zone",
        ["boundary"],
        unique=False,
        postgresql_using="gist",
    )
    op.create_table(
        "dong",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=True),
        sa.Column("district_code", sa.String(length=32), nullable=True),
        sa.Column(
            "boundary",
            Geometry(
                geometry_type="MULTIPOLYGON",
                srid=4326,
                spatial_index=False,
                from_text="ST_GeomFromEWKT",
                name="geometry",
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_dong")),
    )
    op.create_index("ix_dong_boundary", "dong", ["boundary"], unique=False, postgresql_using="gist")
    op.create_table(
        "crime_stat",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("district_code", sa.String(length=32), nullable=False),
        sa.Column("crime", sa.String(length=32), nullable=False),
        sa.Column("occurred", sa.Integer(), nullable=False),
        sa.Column("arrested", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year", "district_code", "crime", name=op.f("pk_crime_stat")),
    )
    op.create_table(
        "analytics_refresh",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_analytics_refresh_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analytics_refresh")),
    )
    op.execute("INSERT INTO analytics_refresh (id) VALUES (1)")
    op.execute(ANALYTICS_VIEW)
    # CONCURRENTLY needs a unique index; the others serve the period and scope filters.
    op.execute("CREATE UNIQUE INDEX ux_analytics_incident_id ON analytics_incident (id)")
    op.execute("CREATE INDEX ix_analytics_incident_received ON analytics_incident (received_at)")
    op.execute(
        "CREATE INDEX ix_analytics_incident_district ON analytics_incident"
        " (district_id, received_at)"
    )


def downgrade() -> None:
    op.execute("DROP MATERIALIZED VIEW analytics_incident")
    op.drop_table("analytics_refresh")
    op.drop_table("crime_stat")
    op.drop_index("ix_dong_boundary", table_name="dong", postgresql_using="gist")
    op.drop_table("dong")
    op.drop_index("ix_special_zone_boundary", table_name="special_zone", postgresql_using="gist")
    op.drop_table("special_zone")
