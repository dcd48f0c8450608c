"""access batches: one location-access row per incident for each write, naming every staff
member whose read it records

Revision ID: 0009_access_batches
Revises: 0008_lean_incident
Create Date: 2026-11-30 05:10:00

With K consoles connected, every SOS wrote K ``location_access`` rows, one per console, each a
heap tuple and three index entries: with 50 consoles, 50 rows and about 200 WAL records per
SOS, a measured bottleneck of the benchmark (docs/performance.md). The consoles' reads are
already written together, once a second (``_AccessWriter`` in app/api/console.py); a row now
records all the reads of one incident in one write, the readers in ``staff_ids`` (distinct,
sorted): K rows per SOS become 1. Who read which location, when and why is all still there,
and a GIN index finds a staff member's reads as the index on ``staff_id`` did.

Existing rows become one-reader rows. The downgrade gives every reader a row of their own
again: it inserts a row for each reader after the first (the trigger of 0005_trust allows
INSERT), then writes the first into ``staff_id`` with the trigger disabled; the extra rows
keep their ``at`` but get new ids.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009_access_batches"
down_revision: str | None = "0008_lean_incident"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _update_past_the_trigger(sql: str) -> None:
    """The append-only trigger (migration 0005_trust) refuses every UPDATE. It is off only
    inside the migration's transaction, which holds the table's exclusive lock until it is back
    on: nobody else can write (or update) in between."""
    op.execute("ALTER TABLE location_access DISABLE TRIGGER location_access_append_only")
    op.execute(sql)
    op.execute("ALTER TABLE location_access ENABLE TRIGGER location_access_append_only")


def upgrade() -> None:
    op.add_column("location_access", sa.Column("staff_ids", postgresql.ARRAY(sa.Uuid())))
    _update_past_the_trigger("UPDATE location_access SET staff_ids = ARRAY[staff_id]")
    op.alter_column("location_access", "staff_ids", nullable=False)
    op.drop_index("ix_location_access_staff_id", table_name="location_access")
    op.drop_column("location_access", "staff_id")
    op.create_index(
        "ix_location_access_staff_ids", "location_access", ["staff_ids"], postgresql_using="gin"
    )


def downgrade() -> None:
    op.add_column("location_access", sa.Column("staff_id", sa.Uuid()))
    op.execute(
        "INSERT INTO location_access (staff_id, staff_ids, incident_id, reason, at)"
        " SELECT s, ARRAY[s], x.incident_id, x.reason, x.at"
        " FROM location_access x, unnest(x.staff_ids[2:]) AS s ORDER BY x.id, s"
    )
    _update_past_the_trigger(
        "UPDATE location_access SET staff_id = staff_ids[1] WHERE staff_id IS NULL"
    )
    op.alter_column("location_access", "staff_id", nullable=False)
    op.drop_index("ix_location_access_staff_ids", table_name="location_access")
    op.drop_column("location_access", "staff_ids")
    op.create_index("ix_location_access_staff_id", "location_access", ["staff_id"])
