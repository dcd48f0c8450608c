"""Public assets around an incident: CCTV sites and emergency bells (issue 22 §1)."""

from __future__ import annotations

import enum
from datetime import datetime

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import CheckConstraint, Index, String, Text, UniqueConstraint, func, true
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base, CreatedAt


class AssetKind(enum.StrEnum):
    cctv = "cctv"
    bell = "bell"


class PublicAsset(UUIDPK, CreatedAt, Base):
    """A district CCTV site or an emergency bell, as the public files list it. Reference data for
    the control room; never a safe place (nobody is sent to a camera pole)."""

    __tablename__ = "public_asset"

    kind: Mapped[str] = mapped_column(String(16))
    #: Where the row came from (an import preset or file name) and its key there.
    source: Mapped[str] = mapped_column(Text)
    external_ref: Mapped[str] = mapped_column(Text)
    #: A bell's installation place (설치위치); a camera site has none in the public files.
    name: Mapped[str | None] = mapped_column(Text)
    address: Mapped[str | None] = mapped_column(Text)
    #: The managing office (관리기관명) and its phone (관리기관전화번호).
    office: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    #: CCTV only: 카메라대수, 촬영방면정보 and 설치목적구분 where the file has them.
    cameras: Mapped[int | None]
    direction: Mapped[str | None] = mapped_column(Text)
    purpose: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True, server_default=true())
    geog: Mapped[WKBElement] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        UniqueConstraint("source", "external_ref", name="uq_public_asset_source_ref"),
        CheckConstraint("kind IN ('cctv','bell')", name="kind"),
        CheckConstraint("cameras IS NULL OR cameras > 0", name="cameras"),
        Index("ix_public_asset_geog", "geog", postgresql_using="gist"),
    )
