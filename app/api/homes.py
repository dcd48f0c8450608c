"""Homes: a member arms and disarms hers (``/v1/me/homes``), and its sensors signal
(``POST /v1/homes/devices/{device_id}/signals``, signed exactly like a store's button:
docs/devices.md)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app import logs
from app.admin.service import audit
from app.api import answers
from app.api.deps import CurrentMember, CurrentOperator, PoolDep, RedisDep, SettingsDep, kick_relay
from app.api.devices import _ERROR, _OPENAPI_EXTRA, signed_request
from app.api.schemas import QueryText, StrictModel
from app.devices import health
from app.devices import service as devices
from app.errors import AppError, ServiceUnavailable
from app.homes import service
from app.homes.signals import ALARM_TYPES, HomeSignalBody, HomeSignalType, parse_home_signal
from app.models import ArmState, DeviceKind

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
    # The request id goes with an alarm to the console message, as a phone's SOS's does.
    request_id = logs.request_id_of(request.scope)
    if kind in ALARM_TYPES:
        # An alarm is accepted without the nonce check too (Redis down): its signal_id, and the
        # home's state, make a replay harmless.
        outcome = await service.sensor_alarm(
            pool, settings, device=device, signal=signal, request_id=request_id
        )
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
            and await service.duress_while_unprotected(
                pool, settings, device=device, pin=pin, request_id=request_id
            )
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
            request_id=request_id,
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


class MySensorOut(BaseModel):
    id: str
    kind: str
    label: str | None
    battery_pct: int | None
    last_seen_at: str | None


class MyHomeOut(BaseModel):
    id: str
    label: str | None
    address: str
    state: str = Field(description="disarmed, away or night")
    changed_at: str
    entry_delay_running: bool
    devices: list[MySensorOut]


class MyHomesOut(BaseModel):
    homes: list[MyHomeOut]


class HomeStateOut(BaseModel):
    """The same after her PIN and after her duress PIN."""

    home_id: str
    state: str
    changed_at: str


@router.get("/v1/me/homes", summary="Her homes: arming state and sensors", tags=["member account"])
async def my_homes(member_id: CurrentMember, pool: PoolDep) -> MyHomesOut:
    homes = await service.member_homes(pool, member_id=member_id)
    return MyHomesOut(homes=[MyHomeOut.model_validate(h) for h in homes])


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
)
async def arm_home(
    home_id: uuid.UUID, body: ArmIn, member_id: CurrentMember, pool: PoolDep
) -> HomeStateOut:
    state = await service.arm(
        pool,
        home_id=home_id,
        mode=ArmState(body.mode),
        via="app",
        actor=f"member:{member_id}",
        member_id=member_id,
    )
    return HomeStateOut.model_validate(state.as_json())


@router.post(
    "/v1/me/homes/{home_id}/disarm",
    summary="Disarm her home with her PIN (cancels a running entry delay)",
    tags=["member account"],
    responses={
        403: {"description": "Wrong PIN"},
        404: {"description": "Not her home"},
        429: {"description": "PinLockedOut: too many wrong PINs; see Retry-After"},
    },
)
async def disarm_home(
    home_id: uuid.UUID,
    body: DisarmIn,
    request: Request,
    member_id: CurrentMember,
    pool: PoolDep,
    settings: SettingsDep,
) -> HomeStateOut:
    result = await service.disarm(
        pool,
        settings,
        home_id=home_id,
        pin=body.pin,
        via="app",
        actor=f"member:{member_id}",
        member_id=member_id,
        source_ip=request.client.host if request.client else None,
        request_id=logs.request_id_of(request.scope),
    )
    if result.duress_incident_id is not None:
        kick_relay(request)
    if result.state is None:
        raise _refusal(result)
    return HomeStateOut.model_validate(result.state.as_json())


def _refusal(result: service.DisarmResult) -> AppError:
    """A wrong PIN (403 ``WrongPin``), or 429 ``PinLockedOut`` with ``Retry-After`` while her
    PINs are locked out, whatever the PIN (her duress PIN too: it raised its incident)."""
    if result.locked_for_s is not None:
        return service.PinLockedOut(result.locked_for_s)
    return service.WrongPin("wrong PIN")


# --- operators: register, list and correct homes and their sensors --------------------------


class HomeIn(StrictModel):
    member_id: uuid.UUID = Field(description="The member who lives there.")
    address: str = Field(min_length=1, max_length=500, description="As police should read it.")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    label: str | None = Field(None, max_length=200, description="e.g. 'flat 302'")
    motion: bool = Field(False, description="Also a motion sensor.")
    keypad: bool = Field(False, description="Also a keypad (arm and disarm with her PIN).")


class HomePatch(StrictModel):
    address: str | None = Field(None, min_length=1, max_length=500)
    label: str | None = Field(None, max_length=200)
    lat: float | None = Field(None, ge=-90, le=90, description="With lon: the district follows.")
    lon: float | None = Field(None, ge=-180, le=180)


class SensorIn(StrictModel):
    kind: Literal["door", "home_button", "motion", "keypad"]
    label: str | None = Field(None, max_length=200)


class DistrictRefOut(BaseModel):
    code: str
    name: str


class SensorCredentialsOut(BaseModel):
    kind: str
    device_id: str
    secret: str = Field(description="Shown only this once: provision the sensor with it.")


class RegisteredHomeOut(BaseModel):
    home_id: str
    district: DistrictRefOut | None = Field(description="null: outside every district")
    devices: list[SensorCredentialsOut]


class HomeDeviceOut(BaseModel):
    id: str
    kind: str = Field(description="door, home_button, motion, keypad or panel (alarm account)")
    label: str | None
    enabled: bool
    battery_pct: int | None
    last_seen_at: str | None
    last_heartbeat_at: str | None
    offline_since: str | None


class HomeOut(BaseModel):
    id: str
    member_id: str
    label: str | None
    address: str
    district: DistrictRefOut | None
    state: str = Field(description="disarmed, away or night")
    state_changed_at: str
    entry_delay_running: bool
    enabled: bool = Field(description="false once her account is erased")
    created_at: str
    devices: list[HomeDeviceOut]


class HomesOut(BaseModel):
    homes: list[HomeOut]


_ADMIN = "/v1/admin/homes"
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such home (or it was erased)", **_ERROR}
}


@router.post(
    _ADMIN,
    status_code=201,
    tags=["operators"],
    summary="Register a member's home with its sensors (their secrets shown once)",
    responses={
        400: {"description": "Unusable address or position", **_ERROR},
        404: {"description": "No such member", **_ERROR},
    },
)
async def admin_create_home(
    body: HomeIn, operator: CurrentOperator, pool: PoolDep
) -> RegisteredHomeOut:
    async with pool.acquire() as conn, conn.transaction():
        home = await service.create_home(
            conn,
            member_id=body.member_id,
            address=body.address,
            lat=body.lat,
            lon=body.lon,
            label=body.label,
            motion=body.motion,
            keypad=body.keypad,
        )
        await audit(
            conn,
            kind="admin_home_created",
            operator_id=operator.id,
            member_id=body.member_id,
            detail={"home_id": str(home.home_id)},
        )
    return RegisteredHomeOut.model_validate(home.as_json())


@router.get(_ADMIN, tags=["operators"], summary="Homes and their devices, newest first")
async def admin_list_homes(
    _operator: CurrentOperator,
    pool: PoolDep,
    member_id: uuid.UUID | None = None,
    district_code: Annotated[QueryText | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> HomesOut:
    homes = await service.list_homes(
        pool, member_id=member_id, district_code=district_code, limit=limit
    )
    return HomesOut(homes=[HomeOut.model_validate(h) for h in homes])


@router.get(_ADMIN + "/{home_id}", tags=["operators"], summary="One home", responses=_NOT_FOUND)
async def admin_get_home(home_id: uuid.UUID, _operator: CurrentOperator, pool: PoolDep) -> HomeOut:
    return HomeOut.model_validate(await service.get_home(pool, home_id))


@router.patch(
    _ADMIN + "/{home_id}",
    tags=["operators"],
    summary="Correct a home's address, label or position (the district follows)",
    responses={
        400: {"description": "Nothing to change, or lat without lon", **_ERROR},
        **_NOT_FOUND,
    },
)
async def admin_update_home(
    home_id: uuid.UUID, body: HomePatch, operator: CurrentOperator, pool: PoolDep
) -> HomeOut:
    async with pool.acquire() as conn, conn.transaction():
        home = await service.update_home(
            conn,
            home_id=home_id,
            address=body.address,
            label=body.label,
            lat=body.lat,
            lon=body.lon,
        )
        await audit(
            conn,
            kind="admin_home_updated",
            operator_id=operator.id,
            member_id=uuid.UUID(home["member_id"]),
            detail={"home_id": str(home_id), "fields": sorted(body.model_fields_set)},
        )
    return HomeOut.model_validate(home)


@router.post(
    _ADMIN + "/{home_id}/devices",
    status_code=201,
    tags=["operators"],
    summary="Add a sensor to a home (its secret shown once)",
    responses=_NOT_FOUND,
)
async def admin_add_sensor(
    home_id: uuid.UUID, body: SensorIn, operator: CurrentOperator, pool: PoolDep
) -> SensorCredentialsOut:
    async with pool.acquire() as conn, conn.transaction():
        device_id, secret = await service.add_sensor(
            conn, home_id=home_id, kind=DeviceKind(body.kind), label=body.label
        )
        await audit(
            conn,
            kind="admin_home_device_created",
            operator_id=operator.id,
            device_id=device_id,
            detail={"home_id": str(home_id), "kind": body.kind},
        )
    return SensorCredentialsOut(kind=body.kind, device_id=str(device_id), secret=secret)
