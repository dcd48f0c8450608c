"""Other agencies' subscriptions to incidents (app/interop)."""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, String, Text, Uuid, text, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import UUIDPK, Base, CreatedAt


class AgencySubscription(UUIDPK, CreatedAt, Base):
    """An agency's endpoint: every change of an incident in its districts is POSTed to ``url``
    as CAP 1.2 or NENA EIDO, signed with ``secret`` (HMAC-SHA256; it signs, so it is kept as
    given, and shown only once). Deliveries are ``notification`` rows of channel ``agency``."""

    __tablename__ = "agency_subscription"

    name: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(8))
    #: Empty: every district, and incidents outside any district.
    district_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), server_default=text("'{}'"))
    enabled: Mapped[bool] = mapped_column(server_default=true())
    #: The operator who registered it (no foreign key: the record outlives the account).
    created_by: Mapped[uuid.UUID | None]

    __table_args__ = (CheckConstraint("format IN ('cap','eido')", name="format"),)
