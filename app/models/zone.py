"""Special control zones, dongs and the crime comparison layer (app/zones/, app/analytics/)."""

from __future__ import annotations

from datetime import datetime, time

from geoalchemy2 import Geometry, WKBElement
from sqlalchemy import CheckConstraint, Index, String, Text, func, text, true
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base, CreatedAt


class SpecialZone(UUIDPK, CreatedAt, Base):
    """A polygon the police watch more closely: during its daily hours (Asia/Seoul; both NULL =
    all day, ``active_to < active_from`` spans midnight) its incidents rank higher."""

    __tablename__ = "special_zone"

    name: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    boundary: Mapped[WKBElement] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)
    )
    active_from: Mapped[time | None]
    active_to: Mapped[time | None]
    priority_raise: Mapped[int] = mapped_column(default=1, server_default=text("1"))
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    source: Mapped[str] = mapped_column(Text, default="manual", server_default=text("'manual'"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    __table_args__ = (
        CheckConstraint("priority_raise BETWEEN 0 AND 3", name="priority_raise"),
        CheckConstraint("(active_from IS NULL) = (active_to IS NULL)", name="hours"),
        Index("ix_special_zone_boundary", "boundary", postgresql_using="gist"),
    )


class Dong(Base):
    """A legal dong (법정동): the analytics count incidents by it."""

    __tablename__ = "dong"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str | None] = mapped_column(Text)
    district_code: Mapped[str | None] = mapped_column(String(32))
    boundary: Mapped[WKBElement] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)
    )

    __table_args__ = (Index("ix_dong_boundary", "boundary", postgresql_using="gist"),)


class CrimeStat(Base):
    """Seoul's five major crimes by district and year (a comparison layer, not our data)."""

    __tablename__ = "crime_stat"

    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    district_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    crime: Mapped[str] = mapped_column(String(32), primary_key=True)
    occurred: Mapped[int]
    arrested: Mapped[int]


class AnalyticsRefresh(Base):
    """One row: when the ``analytics_incident`` view was last refreshed, and how long it took."""

    __tablename__ = "analytics_refresh"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    refreshed_at: Mapped[datetime | None]
    seconds: Mapped[float | None]

    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)
