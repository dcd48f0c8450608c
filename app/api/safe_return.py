"""Safe return ("walk me home"): her phone starts a monitored walk and sends its trail; her
guardians follow it through their link; the district console sees the district's walks.
The contract is docs/safe-return.md."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from app.api.deps import CurrentDispatcher, CurrentMember, PoolDep, SettingsDep, kick_relay
from app.api.schemas import StrictModel
from app.errors import NotFound, error_response
from app.notifications import sender
from app.safe_return import places, service

router = APIRouter(tags=["safe return"])


class PointIn(StrictModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class StartIn(StrictModel):
    destination: PointIn | None = Field(None, description="A point, or give destination_place_id")
    destination_place_id: uuid.UUID | None = Field(
        None, description="One of her saved places (GET /v1/me/places) instead of a point"
    )
    destination_label: str | None = Field(None, max_length=200)
    origin: PointIn | None = Field(None, description="Where she is now (for the arrival time)")
    expected_arrival_at: datetime | None = Field(
        None, description="ISO 8601 with a time zone; computed at walking speed when left out"
    )
    #: Bounded by the body size limit too; the service names the limit in its refusal.
    route: list[PointIn] = Field(default_factory=list, description="Her route, first to last")
    tell_guardians: bool = True
    share_with_control_centre: bool = False
    battery_pct: int | None = Field(None, ge=0, le=100)


class StartOut(BaseModel):
    session_id: uuid.UUID
    status: str
    started_at: datetime
    expected_arrival_at: datetime
    arrival_due_at: datetime = Field(description="expected arrival plus the grace")
    guardians_told: int
    share_with_control_centre: bool


_REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {"description": "SessionAlreadyActive / SessionEnded"},
    422: {"description": "OutsideServiceArea, ArrivalTimeInvalid, RouteInvalid, or a bad field"},
}


@router.post(
    "/v1/safe-return",
    status_code=201,
    summary="Start a walk home",
    response_model=StartOut,
    responses=_REFUSALS,
)
async def start(
    body: StartIn, member_id: CurrentMember, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    destination, label = await destination_of(
        pool, member_id, body.destination, body.destination_place_id, body.destination_label
    )
    req = service.StartRequest(
        destination=destination,
        destination_label=label,
        origin=service.Point(body.origin.lat, body.origin.lon) if body.origin else None,
        expected_arrival_at=body.expected_arrival_at,
        route=tuple(service.Point(p.lat, p.lon) for p in body.route),
        tell_guardians=body.tell_guardians,
        share_with_control_centre=body.share_with_control_centre,
        battery_pct=body.battery_pct,
    )
    result = await service.start(pool, settings, member_id=member_id, req=req)
    sender.kick()
    return result


async def destination_of(
    pool: PoolDep,
    member_id: uuid.UUID,
    point: PointIn | None,
    place_id: uuid.UUID | None,
    label: str | None,
) -> tuple[service.Point, str | None]:
    """A point, or one of her saved places (its label unless she gave one): exactly one."""
    if (point is None) == (place_id is None):
        raise places.DestinationInvalid("give either destination or destination_place_id")
    if point is not None:
        return service.Point(point.lat, point.lon), label
    assert place_id is not None
    place = await places.get(pool, member_id=member_id, place_id=place_id)
    return service.Point(place["lat"], place["lon"]), label or place["label"]


class TrailPointIn(PointIn):
    accuracy_m: float | None = Field(None, ge=0)
    captured_at: datetime | None = None


class TrailIn(StrictModel):
    points: list[TrailPointIn] = Field(min_length=1, max_length=500)
    battery_pct: int | None = Field(None, ge=0, le=100)


class TrailOut(BaseModel):
    session_id: uuid.UUID
    status: str
    stored: int


@router.post(
    "/v1/safe-return/{session_id}/locations",
    status_code=202,
    summary="Send her trail during a walk",
    response_model=TrailOut,
    responses={404: {"description": "No such walk of hers"}},
)
async def locations(
    session_id: uuid.UUID,
    body: TrailIn,
    member_id: CurrentMember,
    pool: PoolDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    result = await service.add_trail(
        pool,
        settings,
        member_id=member_id,
        session_id=session_id,
        points=[service.TrailPoint(p.lat, p.lon, p.accuracy_m, p.captured_at) for p in body.points],
        battery_pct=body.battery_pct,
    )
    sender.kick()
    return result


class PinIn(StrictModel):
    pin: str = Field(min_length=1, max_length=32)


_PIN_REFUSALS: dict[int | str, dict[str, Any]] = {
    403: {"description": "Wrong PIN"},
    404: {"description": "No such walk"},
    429: {"description": "PinLockedOut: too many wrong PINs (with her SOS cancels'); Retry-After"},
}


class AnswerOut(BaseModel):
    session_id: uuid.UUID
    status: str


def _answer(result: service.Answer, request: Request) -> Any:
    if result.duress:
        kick_relay(request)
    if result.locked_for_s is not None:
        return error_response(
            429,
            "PinLockedOut",
            "too many wrong PINs: PINs are locked for a while",
            headers={"Retry-After": str(result.locked_for_s)},
        )
    if not result.body:
        return error_response(403, "WrongPin", "wrong PIN")
    sender.kick()
    return result.body


@router.post(
    "/v1/safe-return/{session_id}/ok",
    summary='"I\'m OK": answer a check with her PIN',
    description=(
        "Her PIN clears the check being asked (an arrival check gives her the grace again). The "
        "duress PIN answers exactly the same and raises a silent SOS. A wrong PIN is 403 "
        "`WrongPin`."
    ),
    response_model=AnswerOut,
    responses=_PIN_REFUSALS,
)
async def ok(
    session_id: uuid.UUID,
    body: PinIn,
    request: Request,
    member_id: CurrentMember,
    pool: PoolDep,
    settings: SettingsDep,
) -> Any:
    result = await service.answer_ok(
        pool, settings, member_id=member_id, session_id=session_id, pin=body.pin
    )
    return _answer(result, request)


@router.post(
    "/v1/safe-return/{session_id}/end",
    summary="End the walk with her PIN",
    description="The duress PIN answers exactly the same and raises a silent SOS.",
    response_model=AnswerOut,
    responses=_PIN_REFUSALS,
)
async def end(
    session_id: uuid.UUID,
    body: PinIn,
    request: Request,
    member_id: CurrentMember,
    pool: PoolDep,
    settings: SettingsDep,
) -> Any:
    result = await service.end(
        pool, settings, member_id=member_id, session_id=session_id, pin=body.pin
    )
    return _answer(result, request)


class ExtendIn(StrictModel):
    minutes: int = Field(ge=1, le=60)


class ExtendOut(BaseModel):
    session_id: uuid.UUID
    status: str
    expected_arrival_at: datetime | None = None
    arrival_due_at: datetime | None = None


@router.post(
    "/v1/safe-return/{session_id}/extend",
    summary="She needs longer: move her arrival time",
    response_model=ExtendOut,
    responses=_REFUSALS,
)
async def extend(
    session_id: uuid.UUID,
    body: ExtendIn,
    member_id: CurrentMember,
    pool: PoolDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    return await service.extend(
        pool, settings, member_id=member_id, session_id=session_id, minutes=body.minutes
    )


class CheckOut(BaseModel):
    reason: str | None
    asked_at: datetime
    answer_by: datetime


class PointOut(BaseModel):
    lat: float
    lon: float


class SessionView(BaseModel):
    session_id: uuid.UUID
    status: str = Field(description="active | asking | arrived | ended | sos")
    check: CheckOut | None = Field(description="the check being asked, while asking")
    started_at: datetime
    expected_arrival_at: datetime
    arrival_due_at: datetime
    ended_at: datetime | None
    destination: PointOut | None
    destination_label: str | None
    incident_id: uuid.UUID | None = Field(description="the SOS it became, if it did")
    share_with_control_centre: bool


@router.get(
    "/v1/safe-return/{session_id}",
    summary="Her own view of a walk",
    response_model=SessionView,
    responses={404: {"description": "No such walk of hers"}},
)
async def get_session(
    session_id: uuid.UUID, member_id: CurrentMember, pool: PoolDep
) -> dict[str, Any]:
    return await service.view(pool, member_id=member_id, session_id=session_id)


class WalkPosition(BaseModel):
    lat: float
    lon: float
    accuracy_m: float | None = None
    captured_at: str | None


class WalkViewOut(BaseModel):
    session_id: uuid.UUID
    name: str
    status: str
    started_at: datetime
    expected_arrival_at: datetime
    destination: PointOut | None
    destination_label: str | None
    location: WalkPosition | None
    trail: list[WalkPosition]


@router.get(
    "/v1/guardian/walk/{token}",
    tags=["guardians"],
    summary="A guardian's view of her walk home",
    response_model=WalkViewOut,
    responses={404: {"description": "no such link"}, 410: {"description": "the walk is over"}},
)
async def walk_view(token: str, pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    if len(token) > 100:
        raise NotFound("no such link")
    return await service.guardian_view(pool, settings, token=token)


class DistrictCount(BaseModel):
    code: str
    name: str
    active: int


class ConsoleSession(BaseModel):
    session_id: uuid.UUID
    status: str
    sos: bool = Field(description="it became an SOS: highlight it")
    check_reason: str | None
    district: str
    incident_id: uuid.UUID | None
    started_at: datetime
    expected_arrival_at: datetime
    shared: bool = Field(description="she shared it with the control centre (position shown)")
    destination: PointOut | None
    destination_label: str | None
    location: PointOut | None
    last_point_at: datetime | None


class ConsoleWalks(BaseModel):
    active: int = Field(description="walks running in the districts you see")
    districts: list[DistrictCount]
    sessions: list[ConsoleSession]


@router.get(
    "/v1/console/safe-return",
    tags=["console"],
    summary="The district's walks home",
    description=(
        "How many walks are running, each one she shared with the control centre (with her "
        "position; every such read is logged), and the walks that became an SOS."
    ),
    response_model=ConsoleWalks,
)
async def console_walks(staff: CurrentDispatcher, pool: PoolDep) -> dict[str, Any]:
    return await service.console_view(
        pool, staff_id=staff.id, city_wide=staff.city_wide, district_ids=staff.district_ids
    )


# --- her saved places ---------------------------------------------------------------------------


class SavedPlaceIn(StrictModel):
    label: str = Field(min_length=1, max_length=100)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class SavedPlaceOut(BaseModel):
    id: uuid.UUID
    label: str
    lat: float
    lon: float
    created_at: datetime


class SavedPlacesOut(BaseModel):
    places: list[SavedPlaceOut]


@router.post(
    "/v1/me/places",
    status_code=201,
    tags=["member account"],
    summary="Save a place (home, a friend's) to pick as a destination",
    response_model=SavedPlaceOut,
    responses={
        409: {"description": "A place with that label already"},
        422: {"description": "TooManySavedPlaces, or a bad field"},
    },
)
async def add_place(
    body: SavedPlaceIn, member_id: CurrentMember, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    return await places.add(
        pool, settings, member_id=member_id, label=body.label, lat=body.lat, lon=body.lon
    )


@router.get(
    "/v1/me/places",
    tags=["member account"],
    summary="Her saved places",
    response_model=SavedPlacesOut,
)
async def list_places(member_id: CurrentMember, pool: PoolDep) -> dict[str, Any]:
    return {"places": await places.list_places(pool, member_id=member_id)}


@router.delete(
    "/v1/me/places/{place_id}",
    status_code=204,
    tags=["member account"],
    summary="Delete one of her saved places",
    responses={404: {"description": "No such place of hers"}},
)
async def delete_place(place_id: uuid.UUID, member_id: CurrentMember, pool: PoolDep) -> Response:
    await places.delete(pool, member_id=member_id, place_id=place_id)
    return Response(status_code=204)
