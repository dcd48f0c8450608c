"""Safe return ("walk me home"): a monitored walk, its trail, and who read it."""

from __future__ import annotations

import uuid
from datetime import datetime

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base

#: A session still being watched (the sweeper's statuses).
LIVE = ("active", "asking")


class SafeReturnSession(UUIDPK, Base):
    """One walk home. The timers are columns: ``next_check_at`` is the earliest moment a check
    can fire (or, while ``asking``, the end of her time to answer), kept current by every write
    and swept through its partial index (app/safe_return/sweeper.py)."""

    __tablename__ = "safe_return_session"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    #: active -> asking (a check asked "Are you OK?") -> active | sos; active -> arrived | ended.
    status: Mapped[str] = mapped_column(String(16), server_default=text("'active'"))
    #: What her own phone shows when it must differ (a duress PIN: it looks answered / ended).
    member_status: Mapped[str | None] = mapped_column(String(16))
    share_with_control_centre: Mapped[bool] = mapped_column(server_default=false())
    tell_guardians: Mapped[bool] = mapped_column(server_default=text("true"))
    destination: Mapped[WKBElement | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    destination_label: Mapped[str | None] = mapped_column(Text)
    #: The destination's district: whose console counts (and, if shared, shows) the session.
    district_id: Mapped[uuid.UUID | None]
    route: Mapped[WKBElement | None] = mapped_column(
        Geography("LINESTRING", srid=4326, spatial_index=False)
    )
    expected_arrival_at: Mapped[datetime]
    #: Expected arrival plus the grace; an extension or an "I'm OK" to it moves it on.
    arrival_due_at: Mapped[datetime]
    # The thresholds are the session's own (from the settings when it started), so every
    # dispatcher sweeps it alike.
    geofence_m: Mapped[float]
    no_position_s: Mapped[float]
    corridor_m: Mapped[float]
    off_route_s: Mapped[float]
    stationary_m: Mapped[float]
    stationary_s: Mapped[float]
    low_battery_pct: Mapped[int]
    ask_s: Mapped[float]
    last_position: Mapped[WKBElement | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    last_point_at: Mapped[datetime | None]
    battery_pct: Mapped[int | None]
    #: Since when her newest positions have been outside the route corridor.
    off_route_since: Mapped[datetime | None]
    #: Where and since when she has stayed (within ``stationary_m``).
    anchor: Mapped[WKBElement | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    anchor_at: Mapped[datetime | None]
    low_battery_asked: Mapped[bool] = mapped_column(server_default=false())
    #: Her last "I'm OK": each check counts from it too.
    ok_at: Mapped[datetime | None]
    #: The check being asked (or that became the SOS).
    check_reason: Mapped[str | None] = mapped_column(String(16))
    asked_at: Mapped[datetime | None]
    next_check_at: Mapped[datetime | None]
    incident_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("incident.id", ondelete="SET NULL")
    )
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    ended_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint("status IN ('active','asking','arrived','ended','sos')", name="status"),
        CheckConstraint(
            "check_reason IS NULL OR check_reason IN ('no_arrival','no_position','off_route',"
            "'not_moving','low_battery','duress')",
            name="check_reason",
        ),
        # The sweep: the due sessions are the head of this index, however many are running.
        Index(
            "ix_safe_return_session_due",
            "next_check_at",
            postgresql_where=text("status IN ('active','asking')"),
        ),
        # One live walk per member (a second start is a 409, and two racing starts are one).
        Index(
            "uq_safe_return_session_live_member",
            "member_id",
            unique=True,
            postgresql_where=text("status IN ('active','asking')"),
        ),
        Index(
            "ix_safe_return_session_district_live",
            "district_id",
            postgresql_where=text("status IN ('active','asking')"),
        ),
        Index("ix_safe_return_session_ended_at", "ended_at"),
    )


class SafeReturnPoint(Base):
    __tablename__ = "safe_return_point"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("safe_return_session.id", ondelete="CASCADE")
    )
    geog: Mapped[WKBElement] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    accuracy_m: Mapped[float | None]
    captured_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (Index("ix_safe_return_point_session_id", "session_id", "id"),)


class SafeReturnAccess(Base):
    """Every read of a session's position by staff (or a guardian's link)."""

    __tablename__ = "safe_return_access"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("safe_return_session.id", ondelete="CASCADE"), index=True
    )
    staff_id: Mapped[uuid.UUID | None]
    guardian_id: Mapped[uuid.UUID | None]
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
