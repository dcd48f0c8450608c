"""Safe places and districts: the spatial reference data."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, time

from geoalchemy2 import Geography, Geometry, WKBElement
from sqlalchemy import (
    CheckConstraint,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base, CreatedAt


class PlaceKind(enum.StrEnum):
    convenience_store = "convenience_store"
    safety_house = "safety_house"
    police_station = "police_station"
    police_box = "police_box"
    other = "other"


POLICE_KINDS = (PlaceKind.police_station, PlaceKind.police_box)


class District(UUIDPK, CreatedAt, Base):
    __tablename__ = "district"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(Text)
    name_en: Mapped[str | None] = mapped_column(Text)
    boundary: Mapped[WKBElement] = mapped_column(
        Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)
    )

    __table_args__ = (Index("ix_district_boundary", "boundary", postgresql_using="gist"),)


class SafePlace(UUIDPK, CreatedAt, Base):
    __tablename__ = "safe_place"

    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    open_24h: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: Daily opening hours in local time when not open 24h; closes_at < opens_at spans midnight.
    opens_at: Mapped[time | None]
    closes_at: Mapped[time | None]
    is_safety_house: Mapped[bool] = mapped_column(default=False, server_default=false())
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    #: Where the row came from (an import preset or file name) and its key there.
    source: Mapped[str] = mapped_column(Text, default="manual")
    external_ref: Mapped[str] = mapped_column(Text, default=lambda: str(uuid.uuid4()))
    geog: Mapped[WKBElement] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    __table_args__ = (
        UniqueConstraint("source", "external_ref", name="uq_safe_place_source_ref"),
        CheckConstraint(
            "kind IN ('convenience_store','safety_house','police_station','police_box','other')",
            name="kind",
        ),
        Index("ix_safe_place_geog", "geog", postgresql_using="gist"),
    )
