"""Alarm-panel accounts (SIA DC-09) and their logs (app/receiver/, docs/alarm-panels.md)."""

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
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base, CreatedAt


class AlarmAccount(UUIDPK, CreatedAt, Base):
    """A commercial alarm panel reporting to our receiver: its account number and line prefix
    (unique together), its AES key if it encrypts, and the place it protects: a store
    (``safe_place_id``) or a member's home (``home_id``), exactly one of the two.

    The panel is also a ``device`` row (``device_id``, kind ``panel``) at that store or home, so
    its health (offline, troubles, tamper) goes through the device health path onto the
    district's consoles."""

    __tablename__ = "alarm_account"

    #: Hex, 3 to 16 characters, stored in uppercase.
    account: Mapped[str] = mapped_column(String(16))
    #: The line prefix (``L``), hex, up to 6 characters, uppercase (empty: some panels send
    #: a bare ``L``).
    prefix: Mapped[str] = mapped_column(String(6))
    safe_place_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("safe_place.id"), index=True)
    home_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("home.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("device.id"), unique=True)
    label: Mapped[str | None] = mapped_column(Text)
    #: The AES key as the installer typed it (ASCII, or hex with ``key_hex``); None: plain only.
    aes_key: Mapped[str | None] = mapped_column(Text)
    key_hex: Mapped[bool] = mapped_column(server_default=text("false"))
    #: Seconds of silence (no message, test or NULL) after which the panel is offline.
    supervision_s: Mapped[float]
    #: An encrypted message's timestamp may be this far behind / ahead of ours (else NAK).
    window_past_s: Mapped[float] = mapped_column(server_default=text("40"))
    window_future_s: Mapped[float] = mapped_column(server_default=text("20"))
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    last_message_at: Mapped[datetime | None]

    __table_args__ = (
        Index("uq_alarm_account_prefix_account", "prefix", "account", unique=True),
        CheckConstraint("account ~ '^[0-9A-F]{3,16}$'", name="account"),
        CheckConstraint("prefix ~ '^[0-9A-F]{0,6}$'", name="prefix"),
        CheckConstraint("supervision_s > 0", name="supervision"),
        CheckConstraint("window_past_s >= 0 AND window_future_s >= 0", name="window"),
        CheckConstraint("(safe_place_id IS NULL) <> (home_id IS NULL)", name="owner"),
    )


class AlarmEvent(Base):
    """The account's log: every message it sent that carried events (NULLs only refresh the
    supervision), what each became, and the codes we do not know."""

    __tablename__ = "alarm_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alarm_account.id"))
    received_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    token: Mapped[str] = mapped_column(String(16))
    seq: Mapped[str] = mapped_column(String(4))
    #: sha256 of the message's content: a retry (no ACK reached the panel) is acted on once.
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    code: Mapped[str] = mapped_column(String(24))
    qualifier: Mapped[str | None] = mapped_column(String(1))
    zone: Mapped[str | None] = mapped_column(String(16))
    area: Mapped[str | None] = mapped_column(String(16))
    #: ``incident``, ``trouble``, ``restore``, ``tamper``, ``test``, ``log`` or ``unknown``.
    action: Mapped[str] = mapped_column(String(16))
    incident_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("incident.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    __table_args__ = (Index("ix_alarm_event_account_received", "account_id", "received_at"),)
