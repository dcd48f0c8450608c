"""Phone SOS intake: forgiving by design.

Any JSON object from an authenticated member raises (or replays) an alert. What cannot be used is
dropped or cleaned, flagged on the incident, and reported back as a warning so app developers
notice; nothing here ever refuses an SOS.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from app.config import Settings
from app.errors import BadRequest

TRIGGERS = frozenset({"button", "shake", "wearable", "voice"})
KNOWN_FIELDS = frozenset(
    {"client_alert_id", "trigger", "silent", "location", "battery_pct", "note"}
)
LOCATION_FIELDS = frozenset({"lat", "lon", "accuracy_m", "captured_at"})
NOTE_MAX = 1000
_TRUTHY = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class NotAJSONObject(BadRequest):
    """The body is not JSON, or is JSON but not an object."""


@dataclass(frozen=True)
class IntakeWarning:
    code: str
    field: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "detail": self.detail}


@dataclass
class ParsedSOS:
    client_alert_id: uuid.UUID | None = None
    trigger: str = "button"
    silent: bool = False
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    captured_at: datetime | None = None
    battery_pct: int | None = None
    note: str | None = None
    warnings: list[IntakeWarning] = field(default_factory=list)
    #: Facts about the report that dispatchers should see (no location, poor fix...).
    conditions: list[str] = field(default_factory=list)

    def warn(self, code: str, field_name: str, detail: str) -> None:
        self.warnings.append(IntakeWarning(code, field_name, detail))

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.conditions, *(w.code for w in self.warnings)]))


def load_json_object(body: bytes) -> dict[str, Any]:
    """Parse leniently: orjson first; then the stdlib, which also takes NaN/Infinity literals
    and lone surrogates; invalid UTF-8 is replaced rather than refused."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(body.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError) as exc:
            raise NotAJSONObject("the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise NotAJSONObject("the body must be a JSON object")
    return data


def clean_text(value: str) -> tuple[str, bool]:
    """Remove NUL bytes and unpaired surrogates (PostgreSQL text takes neither)."""
    cleaned = value.replace("\x00", "")
    cleaned = cleaned.encode("utf-8", errors="replace").decode("utf-8")
    return cleaned, cleaned != value


def _finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _parse_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    number = _finite_number(value)
    if number is not None and 0 < number < 1e11:  # unix seconds
        return datetime.fromtimestamp(number, UTC)
    return None


def parse_sos(data: dict[str, Any], settings: Settings, *, now: datetime) -> ParsedSOS:
    sos = ParsedSOS()
    for key in data:
        if key not in KNOWN_FIELDS:
            sos.warn("unknown_field", str(key)[:64], "ignored")

    raw_id = data.get("client_alert_id")
    if raw_id is None:
        sos.warn(
            "client_alert_id_missing",
            "client_alert_id",
            "no idempotency key: a retry of this alert would create a second incident",
        )
    else:
        try:
            sos.client_alert_id = uuid.UUID(str(raw_id))
        except ValueError:
            sos.warn("client_alert_id_invalid", "client_alert_id", "not a UUID; ignored")

    trigger = data.get("trigger")
    if trigger is None:
        pass
    elif isinstance(trigger, str) and trigger in TRIGGERS:
        sos.trigger = trigger
    else:
        sos.trigger = "unknown"
        sos.warn("trigger_unknown", "trigger", f"expected one of {sorted(TRIGGERS)}")

    silent = data.get("silent")
    if isinstance(silent, bool):
        sos.silent = silent
    elif silent is not None:
        coerced = _TRUTHY.get(str(silent).strip().lower())
        # When in doubt, treat the alert as silent: a sound could give her away.
        sos.silent = True if coerced is None else coerced
        sos.warn("silent_invalid", "silent", f"not a boolean; read as {sos.silent}")

    _parse_location(sos, data.get("location"), settings, now=now)

    battery = data.get("battery_pct")
    if battery is not None:
        number = _finite_number(battery)
        if number is not None and 0 <= number <= 100:
            sos.battery_pct = round(number)
        else:
            sos.warn("battery_pct_invalid", "battery_pct", "expected a number 0..100; ignored")

    note = data.get("note")
    if note is not None:
        if isinstance(note, str):
            cleaned, changed = clean_text(note)
            if changed:
                sos.warn("note_cleaned", "note", "NUL bytes or invalid characters removed")
            if len(cleaned) > NOTE_MAX:
                cleaned = cleaned[:NOTE_MAX]
                sos.warn("note_truncated", "note", f"cut to {NOTE_MAX} characters")
            sos.note = cleaned or None
        else:
            sos.warn("note_invalid", "note", "expected a string; ignored")
    return sos


def _parse_location(sos: ParsedSOS, loc: Any, settings: Settings, *, now: datetime) -> None:
    if loc is None:
        sos.conditions.append("no_location")
        return
    if not isinstance(loc, dict):
        sos.conditions.append("no_location")
        sos.warn("location_invalid", "location", "expected an object; ignored")
        return
    for key in loc:
        if key not in LOCATION_FIELDS:
            sos.warn("unknown_field", f"location.{str(key)[:64]}", "ignored")
    lat, lon = _finite_number(loc.get("lat")), _finite_number(loc.get("lon"))
    if lat is None or lon is None or not (-90 <= lat <= 90) or not (-180 <= lon <= 180):
        sos.conditions.append("no_location")
        sos.warn("location_invalid", "location", "lat/lon missing, not finite or out of range")
        return
    sos.lat, sos.lon = lat, lon

    if "accuracy_m" in loc and loc["accuracy_m"] is not None:
        accuracy = _finite_number(loc["accuracy_m"])
        if accuracy is None or accuracy < 0:
            sos.warn("accuracy_invalid", "location.accuracy_m", "not a finite number >= 0")
        else:
            sos.accuracy_m = accuracy
    if sos.accuracy_m is None or sos.accuracy_m > settings.poor_accuracy_m:
        sos.conditions.append("location_poor")

    if "captured_at" in loc and loc["captured_at"] is not None:
        captured = _parse_datetime(loc["captured_at"])
        if captured is None:
            sos.warn("captured_at_invalid", "location.captured_at", "not an ISO 8601 time")
        elif captured > now + timedelta(minutes=5):
            sos.warn("captured_at_future", "location.captured_at", "in the future; ignored")
        else:
            sos.captured_at = captured
            if (now - captured).total_seconds() > settings.stale_location_s:
                sos.conditions.append("location_stale")
