"""Safe Return Scouts (escorts on foot, booked ahead) and her saved places (app/safe_return/).

Scouts are staff with the ``volunteer`` role (their badge number is the one she checks); a team
is a pair of them in one district. The district's service hours and lead time are its own."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    Time,
    UniqueConstraint,
    Uuid,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base, CreatedAt

#: A booking still to be walked (or being walked): one per woman, and a team's time is taken.
LIVE_BOOKING = ("booked", "walking")


class SavedPlace(UUIDPK, CreatedAt, Base):
    """A place she names once (home, a friend's) and picks as a walk's destination."""

    __tablename__ = "saved_place"

    member_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(Text)
    geog: Mapped[WKBElement] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))

    __table_args__ = (UniqueConstraint("member_id", "label", name="uq_saved_place_member_label"),)


class ScoutDistrict(Base):
    """A district that offers scouts: its lead time (its hours are ``scout_hours``)."""

    __tablename__ = "scout_district"

    district_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("district.id", ondelete="CASCADE"), primary_key=True
    )
    min_lead_s: Mapped[float]
    active: Mapped[bool] = mapped_column(server_default=true())


class ScoutHours(Base):
    """One evening of a district's week: meetings from ``opens`` until ``closes`` (local time;
    a ``closes`` at or before ``opens`` is after midnight). A weekday without a row is closed."""

    __tablename__ = "scout_hours"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    district_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("district.id", ondelete="CASCADE"))
    #: 0 = Monday ... 6 = Sunday (the evening's own day, not the day after midnight).
    weekday: Mapped[int] = mapped_column(SmallInteger)
    opens: Mapped[time] = mapped_column(Time)
    closes: Mapped[time] = mapped_column(Time)

    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        UniqueConstraint("district_id", "weekday", name="uq_scout_hours_district_weekday"),
    )


class ScoutClosedDay(Base):
    """A holiday: no scouts that evening (in one district, or city-wide when ``district_id`` is
    NULL)."""

    __tablename__ = "scout_closed_day"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    district_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("district.id", ondelete="CASCADE")
    )
    day: Mapped[date] = mapped_column(Date)
    label: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_scout_closed_day_day", "day"),)


class ScoutTeam(UUIDPK, CreatedAt, Base):
    """Two scouts who walk together (2인 1조) in one district, on the weekdays of their shift."""

    __tablename__ = "scout_team"

    district_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("district.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(Text)
    scout_a_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    scout_b_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff.id", ondelete="CASCADE"))
    #: Where the team starts its evening (the district office, a patrol post).
    base: Mapped[WKBElement] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    #: The evenings of its shift, 0 = Monday.
    weekdays: Mapped[list[int]] = mapped_column(
        ARRAY(SmallInteger), server_default=text("'{0,1,2,3,4}'::smallint[]")
    )
    active: Mapped[bool] = mapped_column(server_default=true())

    __table_args__ = (CheckConstraint("scout_a_id <> scout_b_id", name="pair"),)


class ScoutBooking(UUIDPK, CreatedAt, Base):
    """An escort: where and when the scouts meet her, where they walk her, and what became of
    it. ``code`` is the one-time code both her app and the scouts' show at the meeting point."""

    __tablename__ = "scout_booking"

    #: Her account; NULL for a booking a call-taker made for someone without the app.
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("member.id", ondelete="CASCADE"))
    guest_name: Mapped[str | None] = mapped_column(Text)
    guest_phone: Mapped[str | None] = mapped_column(String(32))
    #: ``app``, ``call_centre`` (120) or ``district_office``.
    booked_via: Mapped[str] = mapped_column(String(16))
    booked_by_staff_id: Mapped[uuid.UUID | None]
    district_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("district.id", ondelete="CASCADE"))
    team_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("scout_team.id", ondelete="CASCADE"))
    #: Teams that cancelled it: it is not given back to them.
    declined_team_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid), server_default=text("'{}'::uuid[]")
    )
    #: booked -> walking -> completed; booked -> cancelled | no_show.
    status: Mapped[str] = mapped_column(String(16), server_default=text("'booked'"))
    meet_at: Mapped[datetime]
    #: The team's time is taken until then (the walk at walking speed, and the turnaround).
    ends_at: Mapped[datetime]
    meeting_point: Mapped[WKBElement | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    meeting_label: Mapped[str | None] = mapped_column(Text)
    destination: Mapped[WKBElement | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    destination_label: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(String(8))
    scouts_arrived_at: Mapped[datetime | None]
    met_at: Mapped[datetime | None]
    safe_return_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("safe_return_session.id", ondelete="SET NULL")
    )
    cancelled_at: Mapped[datetime | None]
    #: ``member``, ``scouts`` or ``staff``.
    cancelled_by: Mapped[str | None] = mapped_column(String(16))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    no_show_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint(
            "status IN ('booked','walking','completed','cancelled','no_show')", name="status"
        ),
        CheckConstraint("booked_via IN ('app','call_centre','district_office')", name="booked_via"),
        CheckConstraint("member_id IS NOT NULL OR guest_phone IS NOT NULL", name="who"),
        Index("ix_scout_booking_team_meet_at", "team_id", "meet_at"),
        Index("ix_scout_booking_district_meet_at", "district_id", "meet_at"),
        # One live booking per woman: a second is a 409, two racing ones make one.
        Index(
            "uq_scout_booking_live_member",
            "member_id",
            unique=True,
            postgresql_where=text("status IN ('booked','walking')"),
        ),
        Index(
            "uq_scout_booking_live_guest",
            "guest_phone",
            unique=True,
            postgresql_where=text("status IN ('booked','walking') AND member_id IS NULL"),
        ),
        # The no-show sweep: bookings the scouts have not checked in to.
        Index(
            "ix_scout_booking_no_show",
            "meet_at",
            postgresql_where=text("status = 'booked' AND scouts_arrived_at IS NULL"),
        ),
        Index("ix_scout_booking_safe_return_id", "safe_return_id"),
    )
