"""alarm panels at homes: an alarm account belongs to a store or a home; panels are devices
of kind ``panel``

Revision ID: 0018_home_panels
Revises: 0017_homes
Create Date: 2026-12-08 21:00:00

``alarm_account.home_id``: the home a panel protects (a member's flat), beside
``safe_place_id``; exactly one of the two is set. ``device.kind`` gains ``panel``: an alarm
account's device (at a store or at a home), which signs nothing over HTTP. The panels
registered so far (at stores, kind ``button``) become ``panel``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_home_panels"
down_revision: str | None = "0017_homes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KINDS_OLD = "kind IN ('button','door','home_button','motion','keypad')"
_KINDS_NEW = "kind IN ('button','door','home_button','motion','keypad','panel')"
_OWNER_OLD = (
    "(kind = 'button') = (safe_place_id IS NOT NULL) AND (kind = 'button') = (home_id IS NULL)"
)
# A button is a store's, a sensor a home's, a panel either's; never both, never neither.
_OWNER_NEW = (
    "(safe_place_id IS NULL) <> (home_id IS NULL)"
    " AND (kind <> 'button' OR safe_place_id IS NOT NULL)"
    " AND (kind IN ('button','panel') OR home_id IS NOT NULL)"
)


def upgrade() -> None:
    op.drop_constraint(op.f("ck_device_owner"), "device", type_="check")
    op.drop_constraint(op.f("ck_device_kind"), "device", type_="check")
    op.create_check_constraint(op.f("ck_device_kind"), "device", _KINDS_NEW)
    op.execute("UPDATE device SET kind = 'panel' WHERE id IN (SELECT device_id FROM alarm_account)")
    op.create_check_constraint(op.f("ck_device_owner"), "device", _OWNER_NEW)

    op.add_column("alarm_account", sa.Column("home_id", sa.Uuid(), nullable=True))
    op.alter_column("alarm_account", "safe_place_id", existing_type=sa.Uuid(), nullable=True)
    op.create_foreign_key(
        op.f("fk_alarm_account_home_id_home"),
        "alarm_account",
        "home",
        ["home_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(op.f("ix_alarm_account_home_id"), "alarm_account", ["home_id"])
    op.create_check_constraint(
        op.f("ck_alarm_account_owner"),
        "alarm_account",
        "(safe_place_id IS NULL) <> (home_id IS NULL)",
    )


def downgrade() -> None:
    op.execute(
        "DELETE FROM alarm_event WHERE account_id IN"
        " (SELECT id FROM alarm_account WHERE home_id IS NOT NULL)"
    )
    op.execute("DELETE FROM alarm_account WHERE home_id IS NOT NULL")
    op.execute("DELETE FROM device WHERE kind = 'panel' AND home_id IS NOT NULL")
    op.drop_constraint(op.f("ck_alarm_account_owner"), "alarm_account", type_="check")
    op.drop_index(op.f("ix_alarm_account_home_id"), table_name="alarm_account")
    op.drop_constraint(op.f("fk_alarm_account_home_id_home"), "alarm_account", type_="foreignkey")
    op.alter_column("alarm_account", "safe_place_id", existing_type=sa.Uuid(), nullable=False)
    op.drop_column("alarm_account", "home_id")

    op.drop_constraint(op.f("ck_device_owner"), "device", type_="check")
    op.drop_constraint(op.f("ck_device_kind"), "device", type_="check")
    op.execute("UPDATE device SET kind = 'button' WHERE kind = 'panel'")
    op.create_check_constraint(op.f("ck_device_kind"), "device", _KINDS_OLD)
    op.create_check_constraint(op.f("ck_device_owner"), "device", _OWNER_OLD)
