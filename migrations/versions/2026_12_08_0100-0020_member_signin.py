"""member sign-in by a one-time code: ``member_signin_code`` and its SMS

Revision ID: 0020_member_signin
Revises: 0019_scouts
Create Date: 2026-12-08 01:00:00

``member_signin_code``: one row per code issued (by SMS or by an operator); the code is derived
from ``ANSIM_SECRET_KEY`` and the row's id, so it is stored nowhere (app/security/member_signin.py).
``notification.signin_code_id``: the SMS that carries it (its text is made when it is sent).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_member_signin"
down_revision: str | None = "0019_scouts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ABOUT_BEFORE = (
    "incident_id IS NOT NULL OR safe_return_id IS NOT NULL OR scout_booking_id IS NOT NULL"
)
_ABOUT_AFTER = _ABOUT_BEFORE + " OR signin_code_id IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "member_signin_code",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("issued_by", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "issued_by IN ('sms','operator')", name=op.f("ck_member_signin_code_issued_by")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["member.id"], name=op.f("fk_member_signin_code_member_id_member"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_signin_code")),
    )  # fmt: skip
    op.create_index(op.f("ix_member_signin_code_member_id"), "member_signin_code", ["member_id"])
    op.add_column("notification", sa.Column("signin_code_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_notification_signin_code_id_member_signin_code"),
        "notification", "member_signin_code", ["signin_code_id"], ["id"], ondelete="CASCADE",
    )  # fmt: skip
    op.drop_constraint(op.f("ck_notification_about"), "notification", type_="check")
    op.create_check_constraint(op.f("ck_notification_about"), "notification", _ABOUT_AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM notification WHERE signin_code_id IS NOT NULL")
    op.drop_constraint(op.f("ck_notification_about"), "notification", type_="check")
    op.create_check_constraint(op.f("ck_notification_about"), "notification", _ABOUT_BEFORE)
    op.drop_constraint(
        op.f("fk_notification_signin_code_id_member_signin_code"), "notification",
        type_="foreignkey",
    )  # fmt: skip
    op.drop_column("notification", "signin_code_id")
    op.drop_index(op.f("ix_member_signin_code_member_id"), table_name="member_signin_code")
    op.drop_table("member_signin_code")
