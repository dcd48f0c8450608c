"""Safe Return Scouts: her bookings (the app), the scouts' side (volunteers), the district
office's and the 120 call centre's (dispatchers), and the operators' teams and hours. The
contract is docs/safe-return.md."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, field_validator

from app.api.deps import (
    CurrentDispatcher,
    CurrentMember,
    CurrentOperator,
    CurrentVolunteer,
    PoolDep,
    SettingsDep,
)
from app.api.safe_return import PointIn, StartOut, destination_of
from app.api.schemas import StrictModel
from app.notifications import sender
from app.safe_return import scouts
from app.safe_return.service import Point

router = APIRouter(tags=["safe return scouts"])


class PointOut(BaseModel):
    lat: float
    lon: float


class ScoutOut(BaseModel):
    id: uuid.UUID
    name: str
    badge_number: str | None = Field(description="on the ID card she checks")
    photo_url: str = Field(description="a placeholder image where there is no photo")


class NamedOut(BaseModel):
    code: str
    name: str


class TeamOut(BaseModel):
    id: uuid.UUID
    name: str


class BookingOut(BaseModel):
    booking_id: uuid.UUID
    status: str = Field(description="booked | walking | completed | cancelled | no_show")
    booked_via: str
    meet_at: datetime
    ends_at: datetime = Field(description="the team's time is taken until then")
    meeting_point: PointOut | None
    meeting_label: str | None
    destination: PointOut | None
    destination_label: str | None
    district: NamedOut
    team: TeamOut
    scouts: list[ScoutOut]
    code: str | None = Field(description="the one-time code both apps show (while booked/walking)")
    scouts_arrived_at: datetime | None
    met_at: datetime | None
    safe_return_id: uuid.UUID | None = Field(description="the walk (a safe-return session)")
    cancelled_at: datetime | None
    cancelled_by: str | None
    cancel_reason: str | None
    no_show_at: datetime | None
    completed_at: datetime | None
    created_at: datetime


class StaffBookingOut(BookingOut):
    her_name: str | None


class HerPosition(BaseModel):
    lat: float
    lon: float
    captured_at: datetime | None


class ScoutBookingOut(StaffBookingOut):
    her_position: HerPosition | None = Field(
        None, description="only while they walk her (every read logged)"
    )


class ScoutBookingsOut(BaseModel):
    bookings: list[StaffBookingOut]


class StartedOut(BookingOut):
    walk: StartOut


_REFUSALS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "NoScoutTeamFree (with next_free_at), BookingAlreadyActive, BookingClosed"
    },
    422: {
        "description": "OutsideServiceArea, OutsideDistrict, OutsideServiceHours or "
        "BookingTooLate (with next_free_at), BookingTimeInvalid, or a bad field"
    },
}


# --- her side ------------------------------------------------------------------------------


class BookIn(StrictModel):
    meeting_point: PointIn = Field(description="usually a subway exit or a bus stop")
    meeting_label: str | None = Field(None, max_length=200)
    meet_at: datetime = Field(description="ISO 8601 with a time zone")
    destination: PointIn | None = None
    destination_place_id: uuid.UUID | None = Field(None, description="one of her saved places")
    destination_label: str | None = Field(None, max_length=200)


def _request(body: BookIn | StaffBookIn, destination: Point, label: str | None) -> Any:
    return scouts.BookingRequest(
        meeting_point=Point(body.meeting_point.lat, body.meeting_point.lon),
        meet_at=body.meet_at,
        destination=destination,
        meeting_label=body.meeting_label,
        destination_label=label,
    )


@router.post(
    "/v1/scout-bookings",
    status_code=201,
    summary="Book Safe Return Scouts to meet her and walk her home",
    response_model=BookingOut,
    responses=_REFUSALS,
)
async def book(
    body: BookIn, member_id: CurrentMember, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    destination, label = await destination_of(
        pool, member_id, body.destination, body.destination_place_id, body.destination_label
    )
    result = await scouts.book(
        pool,
        settings,
        req=_request(body, destination, label),
        booker=scouts.Booker(member_id=member_id),
    )
    sender.kick()
    return result


@router.get(
    "/v1/scout-bookings/{booking_id}",
    summary="Her booking: the scouts' names, photos, badges and the one-time code",
    response_model=BookingOut,
    responses={404: {"description": "No such booking of hers"}},
)
async def her_booking(booking_id: uuid.UUID, member_id: CurrentMember, pool: PoolDep) -> Any:
    return await scouts.her_view(pool, member_id=member_id, booking_id=booking_id)


class CancelIn(StrictModel):
    reason: str | None = Field(None, max_length=500)


async def _cancel(
    pool: PoolDep,
    settings: SettingsDep,
    booking_id: uuid.UUID,
    body: CancelIn | None,
    **who: Any,
) -> dict[str, Any]:
    result = await scouts.cancel(
        pool, settings, booking_id=booking_id, reason=body.reason if body else None, **who
    )
    sender.kick()
    return result


@router.post(
    "/v1/scout-bookings/{booking_id}/cancel",
    summary="She cancels her booking (the scouts are told)",
    response_model=BookingOut,
    responses={404: {"description": "No such booking"}, 409: {"description": "BookingClosed"}},
)
async def her_cancel(
    booking_id: uuid.UUID,
    member_id: CurrentMember,
    pool: PoolDep,
    settings: SettingsDep,
    body: CancelIn | None = None,
) -> Any:
    return await _cancel(pool, settings, booking_id, body, by="member", member_id=member_id)


class StartWalkIn(StrictModel):
    code: str | None = Field(
        None, max_length=8, description="the code on the scouts' phone: checked if given"
    )
    share_with_control_centre: bool = False
    tell_guardians: bool = True
    battery_pct: int | None = Field(None, ge=0, le=100)


@router.post(
    "/v1/scout-bookings/{booking_id}/start",
    summary="She met her scouts: the walk starts (a safe-return session with them attached)",
    response_model=StartedOut,
    responses={
        404: {"description": "No such booking"},
        409: {"description": "BookingClosed, SessionAlreadyActive"},
        422: {"description": "CodeMismatch (do not go with them), BookingTimeInvalid"},
    },
)
async def start_walk(
    booking_id: uuid.UUID,
    member_id: CurrentMember,
    pool: PoolDep,
    settings: SettingsDep,
    body: StartWalkIn | None = None,
) -> Any:
    body = body or StartWalkIn()
    result = await scouts.start_walk(
        pool,
        settings,
        member_id=member_id,
        booking_id=booking_id,
        code=body.code,
        share_with_control_centre=body.share_with_control_centre,
        tell_guardians=body.tell_guardians,
        battery_pct=body.battery_pct,
    )
    sender.kick()
    return result


# --- the scouts' side ---------------------------------------------------------------------------


@router.get(
    "/v1/scouts/bookings",
    summary="The scout's team's bookings (from the last 12 hours on)",
    response_model=ScoutBookingsOut,
)
async def scout_bookings(volunteer: CurrentVolunteer, pool: PoolDep) -> dict[str, Any]:
    return {"bookings": await scouts.scout_bookings(pool, scout_id=volunteer.id)}


@router.get(
    "/v1/scouts/bookings/{booking_id}",
    summary="One booking; her live position only while they walk her (logged)",
    response_model=ScoutBookingOut,
    responses={404: {"description": "No such booking of the scout's team"}},
)
async def scout_booking(booking_id: uuid.UUID, volunteer: CurrentVolunteer, pool: PoolDep) -> Any:
    return await scouts.scout_view(pool, scout_id=volunteer.id, booking_id=booking_id)


@router.post(
    "/v1/scouts/bookings/{booking_id}/arrived",
    summary="Check in at the meeting point (she is told who to look for)",
    response_model=StaffBookingOut,
    responses={404: {"description": "No such booking"}, 409: {"description": "BookingClosed"}},
)
async def scouts_arrived(
    booking_id: uuid.UUID, volunteer: CurrentVolunteer, pool: PoolDep, settings: SettingsDep
) -> Any:
    result = await scouts.scouts_arrived(
        pool, settings, scout_id=volunteer.id, booking_id=booking_id
    )
    sender.kick()
    return result


@router.post(
    "/v1/scouts/bookings/{booking_id}/start",
    summary="A call-taker's booking (she has no app): the scouts met her",
    response_model=StaffBookingOut,
    responses={404: {"description": "No such booking"}, 409: {"description": "BookingClosed"}},
)
async def scouts_start(booking_id: uuid.UUID, volunteer: CurrentVolunteer, pool: PoolDep) -> Any:
    return await scouts.scouts_start_guest(pool, scout_id=volunteer.id, booking_id=booking_id)


@router.post(
    "/v1/scouts/bookings/{booking_id}/complete",
    summary="The scouts left her at her destination",
    response_model=StaffBookingOut,
    responses={404: {"description": "No such booking"}, 409: {"description": "BookingClosed"}},
)
async def scouts_complete(booking_id: uuid.UUID, volunteer: CurrentVolunteer, pool: PoolDep) -> Any:
    return await scouts.complete(pool, scout_id=volunteer.id, booking_id=booking_id)


@router.post(
    "/v1/scouts/bookings/{booking_id}/cancel",
    summary="The scouts cannot come: another free team takes it, or it is cancelled",
    response_model=StaffBookingOut,
    responses={404: {"description": "No such booking"}, 409: {"description": "BookingClosed"}},
)
async def scouts_cancel(
    booking_id: uuid.UUID,
    volunteer: CurrentVolunteer,
    pool: PoolDep,
    settings: SettingsDep,
    body: CancelIn | None = None,
) -> Any:
    return await _cancel(pool, settings, booking_id, body, by="scouts", scout_id=volunteer.id)


# --- the district office and the 120 call centre ---------------------------------------------


class StaffBookIn(StrictModel):
    guest_name: str = Field(min_length=1, max_length=100)
    guest_phone: str = Field(min_length=5, max_length=32, pattern=r"^\+?[0-9 -]+$")
    meeting_point: PointIn
    meeting_label: str | None = Field(None, max_length=200)
    meet_at: datetime
    destination: PointIn
    destination_label: str | None = Field(None, max_length=200)
    booked_via: Literal["call_centre", "district_office"] = "district_office"


@router.post(
    "/v1/console/scout-bookings",
    status_code=201,
    tags=["console"],
    summary="Book scouts for someone without the app (120 call centre, district office)",
    response_model=StaffBookingOut,
    responses={**_REFUSALS, 403: {"description": "Not one of your districts"}},
)
async def staff_book(
    body: StaffBookIn, staff: CurrentDispatcher, pool: PoolDep, settings: SettingsDep
) -> dict[str, Any]:
    result = await scouts.book(
        pool,
        settings,
        req=_request(
            body, Point(body.destination.lat, body.destination.lon), body.destination_label
        ),
        booker=scouts.Booker(
            via=body.booked_via,
            guest_name=body.guest_name,
            guest_phone=body.guest_phone,
            staff_id=staff.id,
            scope=staff.district_ids,
            city_wide=staff.city_wide,
        ),
    )
    sender.kick()
    return result


class EveningOut(BaseModel):
    evening: date
    counts: dict[str, int] = Field(description="bookings by status (no_show: the scouts failed)")
    bookings: list[StaffBookingOut]


@router.get(
    "/v1/console/scout-bookings",
    tags=["console"],
    summary="The district office's view of an evening's bookings",
    response_model=EveningOut,
)
async def evening(
    staff: CurrentDispatcher,
    pool: PoolDep,
    settings: SettingsDep,
    day: date | None = Query(None, alias="evening", description="YYYY-MM-DD; tonight if left out"),
) -> dict[str, Any]:
    return await scouts.district_evening(
        pool,
        settings,
        city_wide=staff.city_wide,
        district_ids=staff.district_ids,
        evening=day or scouts.evening_of(settings, datetime.now().astimezone()),
    )


@router.post(
    "/v1/console/scout-bookings/{booking_id}/cancel",
    tags=["console"],
    summary="A call-taker cancels a booking (she and the scouts are told)",
    response_model=StaffBookingOut,
    responses={404: {"description": "No such booking in your districts"}},
)
async def staff_cancel(
    booking_id: uuid.UUID,
    staff: CurrentDispatcher,
    pool: PoolDep,
    settings: SettingsDep,
    body: CancelIn | None = None,
) -> Any:
    return await _cancel(
        pool,
        settings,
        booking_id,
        body,
        by="staff",
        staff_scope=(staff.city_wide, staff.district_ids),
    )


# --- operators --------------------------------------------------------------------------------


class HoursIn(StrictModel):
    weekday: int = Field(ge=0, le=6, description="0 = Monday")
    opens: time
    closes: time = Field(description="at or before `opens`: after midnight")


class DistrictIn(StrictModel):
    min_lead_minutes: float | None = Field(None, ge=0, le=24 * 60)
    hours: list[HoursIn] | None = Field(
        None, max_length=7, description="left out: Seoul's (Mon 22-24, Tue-Fri 22-01)"
    )
    active: bool = True

    @field_validator("hours")
    @classmethod
    def _one_per_day(cls, v: list[HoursIn] | None) -> list[HoursIn] | None:
        if v is not None and len({h.weekday for h in v}) != len(v):
            raise ValueError("one entry per weekday")
        return v


class HoursOut(BaseModel):
    weekday: int
    opens: str
    closes: str


class DistrictOut(BaseModel):
    district: NamedOut
    min_lead_s: float
    active: bool
    hours: list[HoursOut]


@router.put(
    "/v1/admin/scouts/districts/{district_code}",
    tags=["admin"],
    summary="A district's scouts service: lead time and evenings",
    response_model=DistrictOut,
    responses={404: {"description": "No such district"}},
)
async def configure_district(
    district_code: str,
    body: DistrictIn,
    operator: CurrentOperator,
    pool: PoolDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    return await scouts.configure_district(
        pool,
        settings,
        district_code=district_code,
        min_lead_s=None if body.min_lead_minutes is None else body.min_lead_minutes * 60,
        hours=None if body.hours is None else [(h.weekday, h.opens, h.closes) for h in body.hours],
        active=body.active,
    )


class ClosedDayIn(StrictModel):
    day: date
    district_code: str | None = Field(None, max_length=16, description="left out: city-wide")
    label: str | None = Field(None, max_length=200)


class ClosedDayOut(BaseModel):
    day: date
    district: str | None
    label: str | None


@router.post(
    "/v1/admin/scouts/closed-days",
    status_code=201,
    tags=["admin"],
    summary="A holiday: no scouts that evening",
    response_model=ClosedDayOut,
)
async def closed_day(body: ClosedDayIn, operator: CurrentOperator, pool: PoolDep) -> Any:
    return await scouts.add_closed_day(
        pool, day=body.day, district_code=body.district_code, label=body.label
    )


class TeamIn(StrictModel):
    district_code: str = Field(max_length=16)
    name: str = Field(min_length=1, max_length=100)
    scouts: list[str] = Field(min_length=2, max_length=2, description="two volunteers' usernames")
    base: PointIn = Field(description="where the team starts its evening")
    weekdays: list[int] = Field(default=[0, 1, 2, 3, 4], min_length=1, max_length=7)

    @field_validator("weekdays")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if any(d < 0 or d > 6 for d in v) or len(set(v)) != len(v):
            raise ValueError("weekdays are distinct, 0 (Monday) to 6")
        return sorted(v)


class TeamCreated(BaseModel):
    team_id: uuid.UUID
    district: str
    name: str
    scouts: list[str]
    weekdays: list[int]


class TeamsOut(BaseModel):
    teams: list[TeamCreated]


@router.post(
    "/v1/admin/scouts/teams",
    status_code=201,
    tags=["admin"],
    summary="A scout team: two volunteers of one district",
    response_model=TeamCreated,
    responses={422: {"description": "NotAScout"}, 404: {"description": "No such district"}},
)
async def create_team(body: TeamIn, operator: CurrentOperator, pool: PoolDep) -> Any:
    return await scouts.create_team(
        pool,
        district_code=body.district_code,
        name=body.name,
        scouts=(body.scouts[0], body.scouts[1]),
        base=Point(body.base.lat, body.base.lon),
        weekdays=body.weekdays,
    )


@router.get(
    "/v1/admin/scouts/teams",
    tags=["admin"],
    summary="Every scout team",
    response_model=TeamsOut,
)
async def teams(operator: CurrentOperator, pool: PoolDep) -> dict[str, Any]:
    return {"teams": await scouts.list_teams(pool)}
