"""staff second factor: an encrypted TOTP secret, the last time step accepted (replays), and
one-time recovery codes

Revision ID: 0014_staff_totp
Revises: 0013_coverage
Create Date: 2026-12-07 12:00:00

``staff.totp_secret`` is AES-GCM ciphertext under a key derived from ``ANSIM_SECRET_KEY``
(app/security/totp.py); an account that has one must give a code at sign-in.
``staff.totp_last_step``: a code of that time step or an earlier one is refused (replay).
``staff_recovery_code``: Argon2id hashes of the ten codes shown once at enrolment.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_staff_totp"
down_revision: str | None = "0013_coverage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("staff", sa.Column("totp_secret", sa.Text(), nullable=True))
    op.add_column("staff", sa.Column("totp_last_step", sa.BigInteger(), nullable=True))
    op.create_table(
        "staff_recovery_code",
        sa.Column("staff_id", sa.Uuid(), nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"],
            ["staff.id"],
            name=op.f("fk_staff_recovery_code_staff_id_staff"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_recovery_code")),
    )
    op.create_index(op.f("ix_staff_recovery_code_staff_id"), "staff_recovery_code", ["staff_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_staff_recovery_code_staff_id"), table_name="staff_recovery_code")
    op.drop_table("staff_recovery_code")
    op.drop_column("staff", "totp_last_step")
    op.drop_column("staff", "totp_secret")
