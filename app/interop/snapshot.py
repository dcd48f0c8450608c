"""What an agency is given of an incident: one read, shared by the CAP and EIDO documents.

Nothing of her person goes out: no name, phone, note, home address, PIN state or the
dispatchers' disposition text (free words that may name people). What goes is what police
need to respond: the position and its accuracy, the district, the kind of alarm, the status
and the timeline's kinds and times (with a police unit's call sign, never a person's name)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg

from app.incidents.console_service import incident_summary

#: Korea Standard Time (no daylight saving): CAP 1.2's XSD refuses ``Z``, so every timestamp
#: carries this offset.
KST = timezone(timedelta(hours=9))

#: Timeline kinds that are about our own deliveries, not the incident: they are left out of
#: the documents (and change nothing an agency is told).
DELIVERY_KINDS = frozenset({"notified", "notify_failed"})


def stamp(at: datetime) -> str:
    """``2026-12-07T23:41:07+09:00``: whole seconds, with the offset (never ``Z``)."""
    return at.astimezone(KST).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    at: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    id: uuid.UUID
    source: str
    trigger: str
    status: str
    silent: bool
    duress: bool
    escalation_level: int
    lat: float | None
    lon: float | None
    accuracy_m: float | None
    district_code: str | None
    district_name: str | None
    place_name: str | None
    received_at: datetime
    events: tuple[Event, ...]
    #: Who may see it (``in_scope``): its district and the districts covering it.
    district_id: str | None = None
    covered_by: tuple[str, ...] = ()

    @property
    def located(self) -> bool:
        return self.lat is not None and self.lon is not None

    @property
    def first(self) -> Event | None:
        return self.events[0] if self.events else None

    @property
    def last(self) -> Event | None:
        return self.events[-1] if self.events else None

    @property
    def updated_at(self) -> datetime:
        last = self.last
        return last.at if last is not None else self.received_at

    @property
    def version(self) -> int:
        """The last timeline event's id: the same state gives the same document identifiers."""
        last = self.last
        return last.id if last is not None else 0


_EVENTS_SQL = """
SELECT id, kind, at, data FROM incident_event
WHERE incident_id = $1 AND NOT (kind = ANY($2::text[])) ORDER BY at, id
"""
_PLACE_SQL = "SELECT name FROM safe_place WHERE id = $1"


async def load(conn: asyncpg.Connection | asyncpg.Pool, incident_id: uuid.UUID) -> Snapshot | None:
    """The incident as an agency may see it, or None if it does not exist."""
    summary = await incident_summary(conn, incident_id)
    if summary is None:
        return None
    rows = await conn.fetch(_EVENTS_SQL, incident_id, sorted(DELIVERY_KINDS))
    place = (
        await conn.fetchval(_PLACE_SQL, uuid.UUID(summary["safe_place_id"]))
        if summary["safe_place_id"] and summary["source"] == "button"
        else None
    )
    return Snapshot(
        id=incident_id,
        source=summary["source"],
        trigger=summary["trigger"],
        status=summary["status"],
        silent=bool(summary["silent"]),
        duress=bool(summary["duress"]),
        escalation_level=int(summary["escalation_level"]),
        lat=summary["lat"],
        lon=summary["lon"],
        accuracy_m=summary["accuracy_m"],
        district_code=summary["district_code"],
        district_name=summary["district_name"],
        place_name=place,
        received_at=datetime.fromisoformat(summary["received_at"]).astimezone(UTC),
        events=tuple(Event(r["id"], r["kind"], r["at"], dict(r["data"] or {})) for r in rows),
        district_id=summary["district_id"],
        covered_by=tuple(summary["covered_by"]),
    )


def event_title(s: Snapshot) -> str:
    """What kind of alarm it is, in words an agency's dispatcher reads."""
    if s.source == "button":
        title = "Panic button pressed at a Women's Safety House"
        if s.place_name:
            title += f" ({s.place_name})"
    elif s.source == "sensor":
        title = f"Home alarm of a woman living alone ({s.trigger.replace('_', ' ')})"
    elif s.source == "safe_return":
        title = "Walk home: she did not answer a safety check"
    else:
        title = "Personal safety SOS from the Ansim phone app"
    if s.duress:
        title += ", under duress"
    return title


#: One line for each timeline kind (what happened, without who by name).
_NOTE = {
    "reported": "Alert received",
    "routed": "Shown on the district's police consoles",
    "repeat_report": "She pressed SOS again",
    "acknowledged": "Acknowledged by a police dispatcher",
    "responding": "Police are on their way",
    "on_scene": "Police are on scene",
    "resolved": "Closed: resolved",
    "false_alarm": "Closed: false alarm",
    "cancelled": "Cancelled by her",
    "duress": "Duress signal: she is under threat",
    "duress_cancel": "Cancelled with her duress PIN: she is under threat, treat as active",
    "wrong_pin_escalation": "Repeated wrong cancel PINs: escalated",
    "escalated": "Escalated",
    "volunteer_assigned": "An escort volunteer was assigned",
    "offer_declined": "An escort volunteer declined",
    "linked": "Linked with another report of the same emergency",
}


def note_text(event: Event) -> str:
    text = _NOTE.get(event.kind, event.kind.replace("_", " ").capitalize())
    if event.kind == "assigned":
        unit = event.data.get("unit")
        text = f"Police unit {unit} assigned" if unit else "An escort volunteer was assigned"
    elif event.kind == "escalated" and "level" in event.data:
        text += f" to level {event.data['level']}"
    return text


def area_description(s: Snapshot) -> str:
    if s.district_name:
        return f"{s.district_name}, Seoul"
    return "Outside every district served" if s.located else "Position unknown"
