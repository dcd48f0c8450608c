"""direct publish: find an incident's outbox rows (a phone's retry re-publishes an unrouted SOS);
the SOS fold check by member (button) and time; the location access log without foreign keys

Revision ID: 0006_direct_publish
Revises: 0005_trust
Create Date: 2026-11-25 23:00:00

The API now publishes a new SOS to the incidents stream itself, right after its commit, instead
of waiting for the outbox relay (see docs/dispatch.md). If the process dies between the commit
and the publish, the phone, which got no answer, retries with the same ``client_alert_id``; the
replay looks up that incident's outbox row and publishes it again unless a dispatcher already
routed it. That lookup is by ``incident_id``.

Every SOS asks whether the same member (or button) has an open alert from the last seconds.
With an index on ``member_id`` alone PostgreSQL preferred the open-incidents index by time and
filtered every incident of the window (hundreds per SOS at a few hundred SOS/s); an index on
``(member_id, received_at)`` makes it a short range whatever the rate, and still serves every
lookup by member.

``location_access`` is an audit log: its rows must outlive what they record (an erased member's
incident), and with 50 consoles every SOS writes 50 of them, each paying two foreign-key lookups
and a key-share lock on the incident row. It keeps the ids, without the constraints.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_direct_publish"
down_revision: str | None = "0005_trust"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_outbox_incident_id", "outbox", ["incident_id"])
    op.create_index("ix_incident_member_received", "incident", ["member_id", "received_at"])
    op.create_index("ix_incident_device_received", "incident", ["device_id", "received_at"])
    op.drop_index("ix_incident_member_id", table_name="incident")
    op.drop_index("ix_incident_device_id", table_name="incident")
    op.drop_constraint(
        "fk_location_access_incident_id_incident", "location_access", type_="foreignkey"
    )
    op.drop_constraint("fk_location_access_staff_id_staff", "location_access", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(
        "fk_location_access_staff_id_staff", "location_access", "staff", ["staff_id"], ["id"]
    )
    op.create_foreign_key(
        "fk_location_access_incident_id_incident",
        "location_access",
        "incident",
        ["incident_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index("ix_incident_device_id", "incident", ["device_id"])
    op.create_index("ix_incident_member_id", "incident", ["member_id"])
    op.drop_index("ix_incident_device_received", table_name="incident")
    op.drop_index("ix_incident_member_received", table_name="incident")
    op.drop_index("ix_outbox_incident_id", table_name="outbox")
