"""Homes: a member arms and disarms hers (``/v1/me/homes``), and its sensors signal
(``POST /v1/homes/devices/{device_id}/signals``, signed exactly like a store's button:
docs/devices.md)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from app.api import answers
from app.api.deps import CurrentMember, PoolDep, RedisDep, SettingsDep, kick_relay
from app.api.devices import _ERROR, _OPENAPI_EXTRA, signed_request
from app.api.schemas import StrictModel
from app.devices import health
from app.devices import service as devices
from app.errors import AppError, ServiceUnavailable
from app.homes import service
from app.homes.signals import ALARM_TYPES, HomeSignalBody, HomeSignalType, parse_home_signal
from app.models import ArmState

router = APIRouter(tags=["homes"])

_SIGNAL_OPENAPI: dict[str, Any] = {
    **_OPENAPI_EXTRA,
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": HomeSignalBody.model_json_schema()}},
    },
}


@router.post(
    "/v1/homes/devices/{device_id}/signals",
    summary="A signal from a home sensor (HMAC-signed like a store button; docs/devices.md)",
    responses={
        200: {
            "description": "Accepted (HomeSignalAck; a retried in-home button: HomePanicOut)",
            "model": answers.HomeSignalAck | answers.HomePanicOut,
        },
        201: {
            "description": "In-home button: the incident at her home",
            "model": answers.HomePanicOut,
        },
        401: {"description": "Signature, clock window, nonce or device rejected", **_ERROR},
        403: {"description": "Disarm: wrong PIN", **_ERROR},
        429: {"description": "Disarm: too many wrong PINs (see Retry-After)", **_ERROR},
        409: {"description": "Arm: an entry delay is running", **_ERROR},
        422: {"description": "The body is not a usable signal for this sensor", **_ERROR},
        503: {"description": "A backing service is down; retry with a fresh nonce", **_ERROR},
    },
    openapi_extra=_SIGNAL_OPENAPI,
)
async def post_home_signal(
    device_id: str,
    request: Request,
    pool: PoolDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> Response:
    signed = await signed_request(device_id, request)
    raw, source_ip = signed.body, signed.source_ip
    device = await service.authenticate(pool=pool, redis=redis, settings=settings, request=signed)
    signal = parse_home_signal(raw, kind=device.kind)
    kind = signal.body.type
    if kind in ALARM_TYPES:
        # An alarm is accepted without the nonce check too (Redis down): its signal_id, and the
        # home's state, make a replay harmless.
        outcome = await service.sensor_alarm(pool, settings, device=device, signal=signal)
        if outcome.created:
            kick_relay(request)
        at = await devices.update_health(
            pool=pool, device_id=device.id, battery_pct=signal.body.battery_pct
        )
        if kind is HomeSignalType.panic:
            return _json(
                {
                    "incident_id": str(outcome.incident_id),
                    "received_at": at.isoformat(),
                    "home": device.home.as_json(),
                    "server_time": int(time.time()),
                    "flags": list(signal.flags),
                    "warnings": signal.warnings,
                },
                201 if outcome.created else 200,
            )
        return _json(_ack(device.id, kind, at), 200)
    if not device.nonce_checked:
        # A replayed arm or disarm could undo what she did since: refused until Redis is back.
        # Her duress PIN is acted on first (refused alike, so the keypad cannot tell).
        pin = signal.body.pin
        if (
            kind is HomeSignalType.disarm
            and pin is not None
            and await service.duress_while_unprotected(pool, settings, device=device, pin=pin)
        ):
            kick_relay(request)
        raise ServiceUnavailable("replay protection is unavailable; retry shortly")

    extra: dict[str, Any] = {}
    if kind in (HomeSignalType.arm_away, HomeSignalType.arm_night):
        state = await service.arm(
            pool,
            home_id=device.home.id,
            mode=ArmState.away if kind is HomeSignalType.arm_away else ArmState.night,
            via="keypad",
            actor=device.actor,
            device_id=device.id,
        )
        extra = {"home": state.as_json()}
    elif kind is HomeSignalType.disarm:
        assert signal.body.pin is not None  # parse_home_signal requires it
        result = await service.disarm(
            pool,
            settings,
            home_id=device.home.id,
            pin=signal.body.pin,
            via="keypad",
            actor=device.actor,
            device_id=device.id,
            source_ip=source_ip,
        )
        if result.duress_incident_id is not None:
            kick_relay(request)
        if result.state is None:
            raise _refusal(result)
        extra = {"home": result.state.as_json()}
    elif kind is HomeSignalType.tamper:
        await devices.record_security_event(
            pool,
            kind=devices.EV_TAMPER,
            device_id=device.id,
            source_ip=source_ip,
            detail={"home_id": str(device.home.id), "firmware": signal.body.firmware},
        )
    elif kind is HomeSignalType.test:
        extra = {"home": device.home.as_json()}

    signal_health = await health.record_signal_of_type(
        pool, device_id=device.id, signal_type=kind.value, battery_pct=signal.body.battery_pct
    )
    if signal_health.reported:
        kick_relay(request)
    return _json({**_ack(device.id, kind, signal_health.at), **extra}, 200)


def _ack(device_id: uuid.UUID, kind: HomeSignalType, at: Any) -> dict[str, Any]:
    return {
        "device_id": str(device_id),
        "type": kind.value,
        "received_at": at.isoformat(),
        "server_time": int(at.timestamp()),
    }


def _json(body: dict[str, Any], status_code: int) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")


# --- her app ----------------------------------------------------------------------------------


@router.get(
    "/v1/me/homes",
    summary="Her homes: arming state and sensors",
    tags=["member account"],
    response_model=answers.MyHomesOut,
)
async def my_homes(member_id: CurrentMember, pool: PoolDep) -> dict[str, Any]:
    return {"homes": await service.member_homes(pool, member_id=member_id)}


class ArmIn(StrictModel):
    mode: Literal["away", "night"] = Field(
        description="away: nobody home (a door opened starts the entry delay); night: she is"
        " at home (a door opened is an alarm at once)."
    )


class DisarmIn(StrictModel):
    pin: str = Field(min_length=1, max_length=32)


@router.post(
    "/v1/me/homes/{home_id}/arm",
    summary="Arm her home (away or night)",
    tags=["member account"],
    responses={404: {"description": "Not her home"}, 409: {"description": "Entry delay running"}},
    response_model=answers.HomeStateOut,
)
async def arm_home(
    home_id: uuid.UUID, body: ArmIn, member_id: CurrentMember, pool: PoolDep
) -> dict[str, Any]:
    state = await service.arm(
        pool,
        home_id=home_id,
        mode=ArmState(body.mode),
        via="app",
        actor=f"member:{member_id}",
        member_id=member_id,
    )
    return state.as_json()


@router.post(
    "/v1/me/homes/{home_id}/disarm",
    summary="Disarm her home with her PIN (cancels a running entry delay)",
    tags=["member account"],
    responses={
        403: {"description": "Wrong PIN"},
        404: {"description": "Not her home"},
        429: {"description": "PinLockedOut: too many wrong PINs; see Retry-After"},
    },
    response_model=answers.HomeStateOut,
)
async def disarm_home(
    home_id: uuid.UUID,
    body: DisarmIn,
    request: Request,
    member_id: CurrentMember,
    pool: PoolDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    result = await service.disarm(
        pool,
        settings,
        home_id=home_id,
        pin=body.pin,
        via="app",
        actor=f"member:{member_id}",
        member_id=member_id,
        source_ip=request.client.host if request.client else None,
    )
    if result.duress_incident_id is not None:
        kick_relay(request)
    if result.state is None:
        raise _refusal(result)
    return result.state.as_json()


def _refusal(result: service.DisarmResult) -> AppError:
    """A wrong PIN (403 ``WrongPin``), or 429 ``PinLockedOut`` with ``Retry-After`` while her
    PINs are locked out, whatever the PIN (her duress PIN too: it raised its incident)."""
    if result.locked_for_s is not None:
        return service.PinLockedOut(result.locked_for_s)
    return service.WrongPin("wrong PIN")
