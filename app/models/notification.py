"""Notifications waiting for (or done with) a push or SMS gateway, and guardians' view links."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base, CreatedAt


class Notification(CreatedAt, Base):
    """One message to one person, kept until the gateway took it (2xx) or its deadline passed;
    every HTTP attempt is a ``delivery_attempt`` row (``app/notifications``)."""

    __tablename__ = "notification"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    #: The incident it is about, or (a walk home's messages) the safe-return session.
    incident_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    safe_return_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("safe_return_session.id", ondelete="CASCADE"), index=True
    )
    #: A scouts booking's messages (booked, scouts at the meeting point, cancelled, no-show).
    scout_booking_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("scout_booking.id", ondelete="CASCADE"), index=True
    )
    #: Or her one-time sign-in code (the text is made when it is sent, from the secret key).
    signin_code_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("member_signin_code.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(16))
    #: ``guardian:<id>``, ``volunteer:<id>``, ``staff:<id>``, ``agency:<subscription id>``.
    target: Mapped[str] = mapped_column(Text)
    message: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: One event never enqueues twice; it is also the gateway's ``Idempotency-Key``.
    dedupe_key: Mapped[str] = mapped_column(Text, unique=True)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    deadline_at: Mapped[datetime]
    #: Claimed by a sender until then; a sender that died lets it go when it passes.
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("channel IN ('sms','push','agency')", name="channel"),
        CheckConstraint("status IN ('pending','sent','failed')", name="status"),
        CheckConstraint(
            "incident_id IS NOT NULL OR safe_return_id IS NOT NULL OR scout_booking_id IS NOT NULL"
            " OR signin_code_id IS NOT NULL",
            name="about",
        ),
        Index(
            "ix_notification_due", "next_attempt_at", postgresql_where=text("status = 'pending'")
        ),
        # An incident's deliveries to one agency go in order (app/interop).
        Index(
            "ix_notification_agency_order",
            "target",
            "incident_id",
            "id",
            postgresql_where=text("status = 'pending' AND channel = 'agency'"),
        ),
    )


class GuardianView(UUIDPK, CreatedAt, Base):
    """A guardian's link to her open alert: the token is derived from the secret key (so a
    message can be rendered again when it is sent) and only its hash is stored."""

    __tablename__ = "guardian_view"

    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    guardian_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guardian.id", ondelete="CASCADE"))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)

    __table_args__ = (UniqueConstraint("incident_id", "guardian_id"),)
