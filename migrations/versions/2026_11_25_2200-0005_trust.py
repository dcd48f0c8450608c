"""trust: the location access log is append-only; indexes for the operators' queries and the
outbox reconciler

Revision ID: 0005_trust
Revises: 0002_dispatch
Create Date: 2026-11-25 22:00:00

Promise 6 says every staff read of a woman's location is logged. A log that the application (or
anyone holding its database role) can quietly edit proves nothing, so UPDATE and DELETE on
``location_access`` raise in the database itself. The application connects as the table's
owner (often a superuser), which a REVOKE would not stop; a trigger does. TRUNCATE (a
maintenance operation, and how the test suite empties tables) is not a row operation and stays
possible for the database owner.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_trust"
down_revision: str | None = "0002_dispatch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION location_access_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'location_access is append-only (% refused)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER location_access_append_only BEFORE UPDATE OR DELETE ON location_access"
        " FOR EACH ROW EXECUTE FUNCTION location_access_append_only()"
    )
    op.create_index("ix_location_access_incident_id", "location_access", ["incident_id"])
    op.create_index("ix_location_access_staff_id", "location_access", ["staff_id"])
    op.create_index("ix_security_event_kind", "security_event", ["kind"])
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_index("ix_security_event_kind", table_name="security_event")
    op.drop_index("ix_location_access_staff_id", table_name="location_access")
    op.drop_index("ix_location_access_incident_id", table_name="location_access")
    op.execute("DROP TRIGGER location_access_append_only ON location_access")
    op.execute("DROP FUNCTION location_access_append_only()")
