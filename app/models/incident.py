"""Incidents, their timeline and trail, and the outbox that carries them to dispatch."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from geoalchemy2 import Geography, WKBElement
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.incidents.status import IncidentStatus, sql_list
from app.models.base import UUIDPK, Base


class IncidentSource(enum.StrEnum):
    app = "app"
    button = "button"
    sensor = "sensor"
    safe_return = "safe_return"


class Incident(UUIDPK, Base):
    __tablename__ = "incident"

    source: Mapped[str] = mapped_column(String(16))
    #: No foreign keys on ``member_id`` and ``district_id`` (migration 0008): the SOS statement
    #: resolves both itself, members are only soft-deleted and districts are reference data.
    member_id: Mapped[uuid.UUID | None]
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("device.id"))
    #: For a button: the store it is installed in.
    safe_place_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("safe_place.id"))
    #: For a home sensor (source ``sensor``): her home (app/homes/).
    home_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("home.id"))
    #: The phone's idempotency key (null when the app sent none usable); for a button, the
    #: panic's ``signal_id``.
    client_alert_id: Mapped[uuid.UUID | None]
    trigger: Mapped[str] = mapped_column(String(32))
    silent: Mapped[bool] = mapped_column(default=False, server_default=false())
    status: Mapped[str] = mapped_column(String(16), default="new", server_default=text("'new'"))
    escalation_level: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    duress: Mapped[bool] = mapped_column(default=False, server_default=false())
    #: Set by a real cancel *and* by a duress cancel: what the member's own view shows.
    member_cancelled_at: Mapped[datetime | None]
    location: Mapped[WKBElement | None] = mapped_column(
        Geography("POINT", srid=4326, spatial_index=False)
    )
    accuracy_m: Mapped[float | None]
    location_captured_at: Mapped[datetime | None]
    district_id: Mapped[uuid.UUID | None]
    battery_pct: Mapped[int | None]
    note: Mapped[str | None] = mapped_column(Text)
    #: Stable codes for what was wrong with the report (see app/incidents/intake.py).
    flags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    #: Reports that are one emergency share this id (the first report's id).
    emergency_id: Mapped[uuid.UUID | None]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    acknowledged_at: Mapped[datetime | None]
    ack_deadline_at: Mapped[datetime | None]
    #: Acknowledged: a unit must be responding by then; responding: on scene by then.
    stage_deadline_at: Mapped[datetime | None]
    #: Districts whose consoles were given it because nobody watched its own channel
    #: (app/dispatch/coverage.py); their dispatchers may read and act on it.
    covered_by: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), server_default=text("'{}'")
    )
    #: No console at all was open for it (supervisors were paged); cleared by an ack.
    unwatched_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    disposition: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (
        CheckConstraint("source IN ('app','button','sensor','safe_return')", name="source"),
        CheckConstraint(f"status IN ({sql_list(IncidentStatus)})", name="status"),
        Index(
            "uq_incident_member_client_alert",
            "member_id",
            "client_alert_id",
            unique=True,
            postgresql_where=text("client_alert_id IS NOT NULL"),
        ),
        Index(
            "uq_incident_device_client_alert",
            "device_id",
            "client_alert_id",
            unique=True,
            postgresql_where=text("device_id IS NOT NULL AND client_alert_id IS NOT NULL"),
        ),
        Index(
            "ix_incident_open",
            "district_id",
            "received_at",
            postgresql_where=text("closed_at IS NULL"),
        ),
        # A member's (a button's) incidents, and the SOS fold check: her open alert of the last
        # seconds is a short range of this index, however many others arrive (migration 0006).
        # Partial (0008): every lookup is by equality, and a phone's SOS has no device (a
        # button's no member) to index. No GiST index on ``location``: no query needs one.
        Index(
            "ix_incident_member_received",
            "member_id",
            "received_at",
            postgresql_where=text("member_id IS NOT NULL"),
        ),
        Index(
            "ix_incident_device_received",
            "device_id",
            "received_at",
            postgresql_where=text("device_id IS NOT NULL"),
        ),
        Index("ix_incident_emergency_id", "emergency_id"),
        # Routing's link lookup from a phone SOS: the open button presses (and home sensor
        # alarms, 0017) of the last minutes. Partial on the literal sources, so no other lookup
        # by time can take it (0007).
        Index(
            "ix_incident_open_presses",
            "received_at",
            postgresql_where=text("closed_at IS NULL AND source IN ('button','sensor')"),
        ),
        Index(
            "ix_incident_ack_deadline",
            "ack_deadline_at",
            postgresql_where=text("status = 'new' AND ack_deadline_at IS NOT NULL"),
        ),
        Index(
            "ix_incident_stage_deadline",
            "stage_deadline_at",
            postgresql_where=text("stage_deadline_at IS NOT NULL"),
        ),
    )


class IncidentEvent(Base):
    """The timeline: every report, delivery, acknowledgement, escalation and status change.

    No foreign key to the incident (migration 0008): every event is written by a statement that
    has just inserted or read its incident, and incidents are never deleted by the service."""

    __tablename__ = "incident_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(48))
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class LocationPoint(Base):
    """The live trail a phone sends while an alert is open."""

    __tablename__ = "location_point"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    geog: Mapped[WKBElement] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    accuracy_m: Mapped[float | None]
    captured_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Outbox(Base):
    """Written in the same transaction as the change it announces; relayed to Redis after commit."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    topic: Mapped[str] = mapped_column(String(48))
    incident_id: Mapped[uuid.UUID | None]
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    published_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        # The reconciler looks for recently published rows that were never processed.
        Index("ix_outbox_published_at", "published_at"),
        # A phone's retry re-publishes its unrouted SOS (migration 0006).
        Index("ix_outbox_incident_id", "incident_id"),
    )


class Offer(UUIDPK, Base):
    """An incident offered to an escort volunteer."""

    __tablename__ = "offer"

    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    volunteer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff.id"))
    status: Mapped[str] = mapped_column(
        String(16), default="offered", server_default=text("'offered'")
    )
    distance_m: Mapped[float | None]
    offered_at: Mapped[datetime] = mapped_column(server_default=func.now())
    responded_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("incident_id", "volunteer_id", name="uq_offer_incident_volunteer"),
        CheckConstraint(
            "status IN ('offered','accepted','declined','covered','withdrawn')", name="status"
        ),
    )


class Assignment(UUIDPK, Base):
    """A police unit or a volunteer assigned to an incident."""

    __tablename__ = "assignment"

    incident_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str | None] = mapped_column(Text)
    volunteer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff.id"))
    assigned_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())

    __table_args__ = (CheckConstraint("kind IN ('unit','volunteer')", name="kind"),)


class DeliveryAttempt(Base):
    """Every attempt to reach a person through a gateway (push, SMS), kept for the timeline."""

    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    incident_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int]
    ok: Mapped[bool]
    http_status: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    #: The notification this attempt was for (migration 0010).
    notification_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("notification.id", ondelete="SET NULL"), index=True
    )


class LocationAccess(Base):
    """Append-only: every staff (or guardian) read of a woman's location or trail.

    A row is one write's reads of one incident for one reason, the readers in ``staff_ids``
    (distinct, sorted; migration 0009): the consoles' stream reads are written together once a
    second, so K connected consoles add one row per SOS (two when a write falls between their
    reads), not K.

    No foreign keys (migration 0006): an audit record outlives what it records (a reader's
    staff row included), and the application already guarantees what they would check."""

    __tablename__ = "location_access"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    staff_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid))
    #: A guardian's read through her guardian view (``staff_ids`` is then empty).
    guardian_id: Mapped[uuid.UUID | None]
    #: An export's or delivery's agency subscription (app/interop; migration 0022).
    agency_subscription_id: Mapped[uuid.UUID | None]
    incident_id: Mapped[uuid.UUID]
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(server_default=func.now())

    # UPDATE and DELETE are refused by a trigger (migration 0005_trust).
    __table_args__ = (
        Index("ix_location_access_incident_id", "incident_id"),
        # A staff member's reads: ``staff_ids @> ARRAY[id]``.
        Index("ix_location_access_staff_ids", "staff_ids", postgresql_using="gin"),
    )


class DispatchReceipt(Base):
    """An outbox id a dispatcher has routed: a redelivered stream entry is not routed again."""

    __tablename__ = "dispatch_receipt"

    outbox_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_at: Mapped[datetime] = mapped_column(server_default=func.now())
