"""coverage and stage deadlines: who else was given an incident nobody in its district watched,
whether nobody at all did, and the deadline of the stage after the acknowledgement

Revision ID: 0013_coverage
Revises: 0012_races
Create Date: 2026-12-07 11:00:00

``covered_by``: the districts whose consoles were given the incident because its own channel
had no open console (app/dispatch/coverage.py); it only grows until the incident closes, and a
dispatcher of one of them may read and act on it. ``unwatched_at``: no console at all was open
for it (supervisors were paged); cleared by an acknowledgement. ``stage_deadline_at``: an
acknowledged incident must have a unit responding, a responding one must be on scene, by then
(app/dispatch/escalation.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013_coverage"
down_revision: str | None = "0012_races"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "incident",
        sa.Column(
            "covered_by",
            postgresql.ARRAY(postgresql.UUID(as_uuid=True)),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
    )
    op.add_column("incident", sa.Column("unwatched_at", sa.DateTime(timezone=True)))
    op.add_column("incident", sa.Column("stage_deadline_at", sa.DateTime(timezone=True)))
    op.create_index(
        "ix_incident_stage_deadline",
        "incident",
        ["stage_deadline_at"],
        postgresql_where=sa.text("stage_deadline_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_incident_stage_deadline", table_name="incident")
    for column in ("stage_deadline_at", "unwatched_at", "covered_by"):
        op.drop_column("incident", column)
