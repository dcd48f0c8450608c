"""Who may act: members (women with the app), staff, panic-button devices."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
    Text,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base, CreatedAt


class Member(UUIDPK, CreatedAt, Base):
    __tablename__ = "member"

    phone: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(Text)
    pin_hash: Mapped[str] = mapped_column(Text)
    duress_pin_hash: Mapped[str | None] = mapped_column(Text)
    #: Wrong cancel PINs since the last right one; reaching the limit escalates.
    wrong_pin_count: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    #: After ``cancel_pin_lockout_after`` wrong PINs in a row every cancel is refused until then.
    pin_locked_until: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]


class MemberToken(UUIDPK, CreatedAt, Base):
    """A long-lived app credential. Never expires (an SOS must not fail on expiry); revocable."""

    __tablename__ = "member_token"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    #: SHA-256 of the token: tokens are 256-bit random, so a fast hash is enough.
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    label: Mapped[str | None] = mapped_column(Text)
    revoked_at: Mapped[datetime | None]


class MemberSignInCode(UUIDPK, CreatedAt, Base):
    """A one-time sign-in code for her app (app/security/member_signin.py). The code itself is
    not stored: it is derived from ``ANSIM_SECRET_KEY`` and this row's id, so the SMS queue and
    a copy of the database hold nothing that signs in."""

    __tablename__ = "member_signin_code"

    member_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), index=True
    )
    #: ``sms`` (asked for by her app) or ``operator`` (``ansim members code``).
    issued_by: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime]
    #: Wrong codes typed while this one was live; at the limit it is void.
    attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    used_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("issued_by IN ('sms','operator')", name="issued_by"),)


class Guardian(UUIDPK, CreatedAt, Base):
    __tablename__ = "guardian"

    member_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(Text)
    phone: Mapped[str] = mapped_column(String(32))


class StaffRole(enum.StrEnum):
    dispatcher = "dispatcher"
    volunteer = "volunteer"
    operator = "operator"


staff_district = Table(
    "staff_district",
    Base.metadata,
    Column("staff_id", ForeignKey("staff.id", ondelete="CASCADE"), primary_key=True),
    Column("district_id", ForeignKey("district.id", ondelete="CASCADE"), primary_key=True),
)


class Staff(UUIDPK, CreatedAt, Base):
    """Dispatchers, escort volunteers and city operators."""

    __tablename__ = "staff"

    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)
    #: A dispatcher who sees every district (a city-wide supervisor).
    city_wide: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: Volunteers must show an ID; the woman's app shows this number so she can check it.
    badge_number: Mapped[str | None] = mapped_column(Text)
    #: Her app shows it at the meeting point with the badge (a placeholder where there is none).
    photo_url: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    #: A dispatcher who is paged (SMS to ``phone``) when nobody else acts on an incident.
    on_call: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: The TOTP secret, AES-GCM encrypted under a key derived from ``ANSIM_SECRET_KEY``
    #: (app/security/totp.py). Enrolled means required: the password alone no longer signs in.
    totp_secret: Mapped[str | None] = mapped_column(Text)
    #: The last TOTP time step accepted: a code of that step or an earlier one is a replay.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("role IN ('dispatcher','volunteer','operator')", name="role"),
    )


class StaffRecoveryCode(UUIDPK, CreatedAt, Base):
    """A one-time code that stands in for the TOTP code (a lost phone); shown once at enrolment."""

    __tablename__ = "staff_recovery_code"

    staff_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff.id", ondelete="CASCADE"), index=True
    )
    #: Argon2id, like passwords (app/security/passwords.py).
    code_hash: Mapped[str] = mapped_column(Text)
    used_at: Mapped[datetime | None]


class StaffToken(UUIDPK, CreatedAt, Base):
    __tablename__ = "staff_token"

    staff_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class DeviceKind(enum.StrEnum):
    """A store's panic button, or one of a home's sensors (app/homes/)."""

    button = "button"
    door = "door"
    home_button = "home_button"
    motion = "motion"
    keypad = "keypad"
    #: A commercial alarm panel's account (SIA DC-09, app/receiver/), at a store or a home.
    panel = "panel"


class Device(UUIDPK, CreatedAt, Base):
    """A wireless panic button installed in a safe place (usually a Safety House store), or a
    sensor in a member's home (door contact, in-home button, motion sensor, keypad)."""

    __tablename__ = "device"

    #: A store's button: the store. A home's sensor has ``home_id`` instead.
    safe_place_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("safe_place.id"), index=True)
    home_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("home.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16), default="button", server_default=text("'button'"))
    label: Mapped[str | None] = mapped_column(Text)
    #: HMAC keys must be readable by the verifier, so they are stored, not hashed.
    secret: Mapped[str] = mapped_column(Text)
    #: During rotation the previous secret stays valid until this time.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    last_seen_at: Mapped[datetime | None]
    last_heartbeat_at: Mapped[datetime | None]
    battery_pct: Mapped[int | None]
    tampered_at: Mapped[datetime | None]
    #: The last ``test`` signal (installers and monthly checks press the button in test mode).
    last_test_at: Mapped[datetime | None]
    offline_reported_at: Mapped[datetime | None]
    #: The last ``low_battery`` signal (a new episode is reported once; app/devices/health.py).
    low_battery_at: Mapped[datetime | None]
    #: A second cancel within this many seconds of the first is duress (None: off).
    duress_double_cancel_s: Mapped[float | None]
    #: The previous cancel press, for the double-cancel duress sequence.
    last_cancel_at: Mapped[datetime | None]
    last_cancel_signal_id: Mapped[uuid.UUID | None]
    #: Its own offline threshold (an alarm panel's supervision interval); None: the setting.
    offline_after_s: Mapped[float | None]
    #: Troubles an alarm panel reported and has not restored (``ac_loss``, ``low_battery``...).
    troubles: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))

    __table_args__ = (
        CheckConstraint(
            "kind IN ('button','door','home_button','motion','keypad','panel')", name="kind"
        ),
        # A store's button belongs to a store, a home's sensor to a home, an alarm panel to
        # either; never both.
        CheckConstraint(
            "(safe_place_id IS NULL) <> (home_id IS NULL)"
            " AND (kind <> 'button' OR safe_place_id IS NOT NULL)"
            " AND (kind IN ('button','panel') OR home_id IS NOT NULL)",
            name="owner",
        ),
    )


class SecurityEvent(CreatedAt, Base):
    """Rejected signatures, replays, unknown devices, PIN failures: evidence for operators."""

    __tablename__ = "security_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(48))
    device_id: Mapped[uuid.UUID | None]
    member_id: Mapped[uuid.UUID | None]
    source_ip: Mapped[str | None] = mapped_column(INET)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))

    __table_args__ = (
        Index("ix_security_event_created_at", "created_at"),
        Index("ix_security_event_kind", "kind"),
    )
