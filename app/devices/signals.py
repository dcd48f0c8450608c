"""Parsing a button's signal body: strict for everything except a panic.

A panic must never be lost to a sloppy firmware field, so for ``panic`` and ``silent_panic`` an
unknown field or an unusable optional field is dropped, flagged on the incident and reported in
``warnings`` (like the phone SOS). Every other type is strict: unknown fields or bad values are a
422, because nothing is lost by asking the firmware to fix its request.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError


class SignalType(enum.StrEnum):
    panic = "panic"
    silent_panic = "silent_panic"
    cancel = "cancel"
    #: The clerk's duress sequence: answered exactly like a cancel, escalates silently.
    duress = "duress"
    test = "test"
    heartbeat = "heartbeat"
    low_battery = "low_battery"
    tamper = "tamper"


PANIC_TYPES = frozenset({SignalType.panic, SignalType.silent_panic})

Firmware = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e]{1,64}$")]
BatteryPct = Annotated[int, Field(ge=0, le=100, strict=True)]


class SignalBody(BaseModel):
    """The JSON body of ``POST /v1/devices/{device_id}/signals``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: SignalType = Field(description="What happened at the button.")
    signal_id: uuid.UUID | None = Field(
        None,
        description="Idempotency key of a panic: a retry of the same press carries the same id "
        "(with a fresh timestamp, nonce and signature) and gets the same incident.",
    )
    battery_pct: BatteryPct | None = Field(None, description="Battery level, 0-100.")
    sent_at: datetime | None = Field(
        None, description="When the button registered the press (ISO 8601 or unix seconds)."
    )
    firmware: Firmware | None = Field(None, description="Firmware version, printable ASCII.")


BodyT = TypeVar("BodyT", bound=BaseModel)


@dataclass
class Parsed(Generic[BodyT]):
    body: BodyT
    #: Same shape as the phone SOS warnings: ``{"code", "field", "detail"}``.
    warnings: list[dict[str, str]] = field(default_factory=list)

    def warn(self, code: str, field_name: str, detail: str) -> None:
        self.warnings.append({"code": code, "field": field_name, "detail": detail})

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(w["code"] for w in self.warnings))


#: A store button's signal.
ParsedSignal = Parsed[SignalBody]


_OPTIONAL = ("signal_id", "battery_pct", "sent_at", "firmware")
_FIELD_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "signal_id": TypeAdapter(uuid.UUID),
    "battery_pct": TypeAdapter(BatteryPct),
    "sent_at": TypeAdapter(datetime),
    "firmware": TypeAdapter(Firmware),
}


def _invalid(loc: tuple[str, ...], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *loc), "msg": msg, "type": kind}])


def parse_signal(raw: bytes) -> ParsedSignal:
    """The signal in ``raw``; raises ``RequestValidationError`` (422) when it cannot be used."""
    return parse_signal_body(raw, model=SignalBody, types=SignalType, lenient=PANIC_TYPES)


def parse_signal_body(
    raw: bytes,
    *,
    model: type[BodyT],
    types: type[enum.StrEnum],
    lenient: frozenset[Any],
) -> Parsed[BodyT]:
    """A signal body of ``model`` (its ``type`` one of ``types``): strict, except for the
    ``lenient`` types (the alarms), whose unusable optional fields are dropped with a warning.
    Shared by store buttons and home sensors (app/homes/signals.py)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # The stdlib also reads NaN literals, lone surrogates and (replaced) invalid UTF-8: a
        # panic from a sloppy JSON encoder is still a panic. Strict types refuse such values
        # later, field by field.
        try:
            data = json.loads(raw.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):
            raise _invalid((), "body must be a JSON object", "json_invalid") from None
    if not isinstance(data, dict):
        raise _invalid((), "body must be a JSON object", "model_type")
    try:
        signal_type = TypeAdapter(types).validate_python(data.get("type"))
    except ValidationError:
        allowed = ", ".join(t.value for t in types)
        raise _invalid(("type",), f"type must be one of: {allowed}", "enum") from None

    if signal_type not in lenient:
        try:
            return Parsed(model.model_validate(data))
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            ) from None
    return _parse_lenient(model, signal_type, data)


def _parse_lenient(model: type[BodyT], signal_type: Any, data: dict[str, Any]) -> Parsed[BodyT]:
    parsed = Parsed(model.model_construct(type=signal_type))
    unknown = sorted(str(k) for k in data if k != "type" and k not in _OPTIONAL)
    for key in unknown[:20]:
        # Printable only: the name is stored in JSONB, which refuses NUL and lone surrogates.
        shown = "".join(c if c.isprintable() else "\ufffd" for c in key[:64])
        parsed.warn("unknown_field", shown, "ignored")
    values: dict[str, Any] = {}
    for name in _OPTIONAL:
        if name not in data or data[name] is None:
            continue
        try:
            values[name] = _FIELD_ADAPTERS[name].validate_python(data[name])
        except ValidationError as exc:
            reason = exc.errors(include_url=False)[0]["msg"]
            parsed.warn(f"{name}_invalid", name, f"{reason}; ignored")
    parsed.body = model.model_construct(type=signal_type, **values)
    return parsed
