"""public assets: CCTV sites and emergency bells near an incident (issue 22 §1)

Revision ID: 0021_assets
Revises: 0020_member_signin
Create Date: 2026-12-08 21:00:00

``public_asset``: reference data a control room looks at around an incident, imported from the
public formats (``ansim assets import``): district CCTV sites (``kind = 'cctv'``, with the number
of cameras and, where the file has it, the direction they film and the purpose) and emergency
bells (``kind = 'bell'``), each with its managing office and that office's phone. Keyed for
re-imports by ``(source, external_ref)``. A GiST index on ``geog`` answers the radius lookup.
Not a safe place: nobody is sent to a camera pole, so the SOS intake never reads this table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography

revision: str = "0021_assets"
down_revision: str | None = "0020_member_signin"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "public_asset",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("external_ref", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("office", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("cameras", sa.Integer(), nullable=True),
        sa.Column("direction", sa.Text(), nullable=True),
        sa.Column("purpose", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
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
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('cctv','bell')", name=op.f("ck_public_asset_kind")),
        sa.CheckConstraint("cameras IS NULL OR cameras > 0", name=op.f("ck_public_asset_cameras")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_public_asset")),
        sa.UniqueConstraint("source", "external_ref", name="uq_public_asset_source_ref"),
    )
    op.create_index(
        "ix_public_asset_geog", "public_asset", ["geog"], unique=False, postgresql_using="gist"
    )


def downgrade() -> None:
    op.drop_index("ix_public_asset_geog", table_name="public_asset", postgresql_using="gist")
    op.drop_table("public_asset")
