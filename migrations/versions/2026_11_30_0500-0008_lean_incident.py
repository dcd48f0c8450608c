"""lean incident: fewer index entries and no foreign-key checks on every SOS

Revision ID: 0008_lean_incident
Revises: 0007_link_index
Create Date: 2026-11-30 05:00:00

Every SOS inserts an incident and two timeline events in one statement. Measured by the
backend's CPU per insert (docs/performance.md, seventh round), these cost without adding any
guarantee the statement does not already give:

- three foreign-key checks: the timeline events to their incident (inserted in the same
  statement), the incident to its member (resolved from her token in the same statement; members
  are only ever soft-deleted) and to its district (looked up in the same statement; districts
  are reference data). Each check is an index lookup and a row lock, and each lock is a WAL
  record;
- the GiST index on ``incident.location``, which no query uses (the link lookup uses
  ``ix_incident_open_presses``; maps and "nearby" read one incident by id);
- the entries a phone's SOS wrote in the by-device index (``device_id`` NULL) and a button's in
  the by-member index (``member_id`` NULL): both are now partial, and every lookup through them
  is by equality, which implies NOT NULL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_lean_incident"
down_revision: str | None = "0007_link_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEYS = (
    ("fk_incident_event_incident_id_incident", "incident_event", "incident", "incident_id"),
    ("fk_incident_member_id_member", "incident", "member", "member_id"),
    ("fk_incident_district_id_district", "incident", "district", "district_id"),
)


def upgrade() -> None:
    for name, table, _referred, _column in _FOREIGN_KEYS:
        op.drop_constraint(name, table, type_="foreignkey")
    op.drop_index("ix_incident_location", table_name="incident")
    for column, other in (("device_id", "device"), ("member_id", "member")):
        op.drop_index(f"ix_incident_{other}_received", table_name="incident")
        op.create_index(
            f"ix_incident_{other}_received",
            "incident",
            [column, "received_at"],
            postgresql_where=sa.text(f"{column} IS NOT NULL"),
        )


def downgrade() -> None:
    for column, other in (("device_id", "device"), ("member_id", "member")):
        op.drop_index(f"ix_incident_{other}_received", table_name="incident")
        op.create_index(f"ix_incident_{other}_received", "incident", [column, "received_at"])
    op.create_index("ix_incident_location", "incident", ["location"], postgresql_using="gist")
    for name, table, referred, column in _FOREIGN_KEYS:
        op.create_foreign_key(name, table, referred, [column], ["id"])
