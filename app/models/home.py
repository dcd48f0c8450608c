"""Homes of members living alone (Seoul's Home Patrol): the home, its arming state and the
entry delay's due time, and the arming history consoles are shown (app/homes/)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, false, func
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base, CreatedAt


class ArmState(enum.StrEnum):
    disarmed = "disarmed"
    #: Nobody home: a door opened starts the entry delay.
    away = "away"
    #: She is at home (asleep): a door opened is an alarm at once.
    night = "night"


class Home(UUIDPK, CreatedAt, Base):
    __tablename__ = "home"

    member_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str] = mapped_column(Text)
    geog: Mapped[WKBElement] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    #: Computed from the position at registration (no foreign key: districts are reference data).
    district_id: Mapped[uuid.UUID | None]
    state: Mapped[str] = mapped_column(
        String(16), default="disarmed", server_default=sql_text("'disarmed'")
    )
    state_changed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    #: Armed away and a door opened: the alarm is raised at this time unless she disarms first.
    #: Every dispatcher sweeps the due ones (``ix_home_entry_due``), so it survives restarts.
    entry_due_at: Mapped[datetime | None]
    entry_device_id: Mapped[uuid.UUID | None]
    entry_signal_id: Mapped[uuid.UUID | None]
    enabled: Mapped[bool] = mapped_column(default=True, server_default=sql_text("true"))

    __table_args__ = (
        CheckConstraint("state IN ('disarmed','away','night')", name="state"),
        Index(
            "ix_home_entry_due",
            "entry_due_at",
            postgresql_where=sql_text("entry_due_at IS NOT NULL"),
        ),
    )


class HomeArmingEvent(Base):
    """Arm, disarm, entry delays and alarms at a home: the console shows the last 24 hours.
    ``duress`` marks a disarm with her duress PIN; nothing she can see shows it."""

    __tablename__ = "home_arming_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    home_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("home.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    kind: Mapped[str] = mapped_column(String(24))
    #: ``app`` (her phone), ``keypad``, a sensor (``door``, ``motion``, ``home_button``), or
    #: ``dispatch`` (the entry delay ran out).
    via: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(Text)
    device_id: Mapped[uuid.UUID | None]
    incident_id: Mapped[uuid.UUID | None]
    duress: Mapped[bool] = mapped_column(default=False, server_default=false())

    __table_args__ = (
        CheckConstraint(
            "kind IN ('arm_away','arm_night','disarm','wrong_pin','entry_started','alarm')",
            name="kind",
        ),
        Index("ix_home_arming_event_home_at", "home_id", "at"),
    )
