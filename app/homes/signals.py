"""A home sensor's signal body (``POST /v1/homes/devices/{device_id}/signals``): strict, except
for the alarms (``panic``, ``open``, ``motion``), which are read as forgivingly as a store
button's panic (app/devices/signals.py)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.devices.signals import BatteryPct, Firmware, Parsed, parse_signal_body
from app.models import DeviceKind


class HomeSignalType(enum.StrEnum):
    #: The in-home emergency button (or the keypad's panic key): an incident at once.
    panic = "panic"
    #: The door contact opened / closed.
    open = "open"
    close = "close"
    #: The motion sensor saw someone.
    motion = "motion"
    #: The keypad: arm (nobody home / at home for the night) and disarm with her PIN.
    arm_away = "arm_away"
    arm_night = "arm_night"
    disarm = "disarm"
    test = "test"
    heartbeat = "heartbeat"
    low_battery = "low_battery"
    tamper = "tamper"


ALARM_TYPES = frozenset({HomeSignalType.panic, HomeSignalType.open, HomeSignalType.motion})
HEALTH_TYPES = frozenset(
    {
        HomeSignalType.test,
        HomeSignalType.heartbeat,
        HomeSignalType.low_battery,
        HomeSignalType.tamper,
    }
)
#: What each kind of sensor may send (besides its health signals).
ALLOWED: dict[str, frozenset[HomeSignalType]] = {
    DeviceKind.door: frozenset({HomeSignalType.open, HomeSignalType.close}),
    DeviceKind.home_button: frozenset({HomeSignalType.panic}),
    DeviceKind.motion: frozenset({HomeSignalType.motion}),
    DeviceKind.keypad: frozenset(
        {
            HomeSignalType.arm_away,
            HomeSignalType.arm_night,
            HomeSignalType.disarm,
            HomeSignalType.panic,
        }
    ),
}

Pin = Annotated[str, StringConstraints(pattern=r"^[0-9]{4,12}$")]


class HomeSignalBody(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    type: HomeSignalType = Field(description="What happened at the sensor.")
    signal_id: uuid.UUID | None = Field(
        None, description="Idempotency key of an alarm (panic, open, motion): same on a retry."
    )
    battery_pct: BatteryPct | None = Field(None, description="Battery level, 0-100.")
    sent_at: datetime | None = Field(None, description="When the sensor registered it.")
    firmware: Firmware | None = Field(None, description="Firmware version, printable ASCII.")
    pin: Pin | None = Field(None, description="Her PIN, entered on the keypad (disarm only).")


HomeSignal = Parsed[HomeSignalBody]


def parse_home_signal(raw: bytes, *, kind: str) -> HomeSignal:
    """The signal in ``raw`` from a sensor of ``kind``; 422 when it cannot be used, or is not
    something that kind of sensor sends."""
    signal = parse_signal_body(raw, model=HomeSignalBody, types=HomeSignalType, lenient=ALARM_TYPES)
    kind_ = signal.body.type
    if kind_ not in HEALTH_TYPES and kind_ not in ALLOWED.get(kind, frozenset()):
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "type"),
                    "msg": f"a {kind} sensor does not send {kind_.value}",
                    "type": "signal_not_for_device",
                }
            ]
        )
    if kind_ is HomeSignalType.disarm and signal.body.pin is None:
        raise RequestValidationError(
            [{"loc": ("body", "pin"), "msg": "a disarm needs her PIN", "type": "missing"}]
        )
    if kind_ is not HomeSignalType.disarm and signal.body.pin is not None:
        raise RequestValidationError(
            [{"loc": ("body", "pin"), "msg": "only a disarm carries a PIN", "type": "extra"}]
        )
    return signal
