"""The member's own account: profile, guardians, data export and erasure."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator

from app.api import answers
from app.api.deps import CurrentMember, PoolDep, SessionDep, SettingsDep, kick_relay
from app.api.schemas import StrictModel
from app.errors import error_response
from app.incidents import member_data
from app.security import member_pins

router = APIRouter(prefix="/v1/me", tags=["member account"])

PHONE = r"^\+?[0-9][0-9 -]{5,30}$"


@router.get("", summary="Her profile and guardians", response_model=answers.ProfileOut)
async def get_profile(member_id: CurrentMember, session: SessionDep) -> dict[str, Any]:
    return await member_data.profile(session, member_id=member_id)


class GuardianIn(StrictModel):
    name: str = Field(min_length=1, max_length=100)
    phone: str = Field(pattern=PHONE)


@router.post(
    "/guardians",
    status_code=201,
    summary="Add a guardian (up to 5), texted when she raises an alert",
    responses={409: {"description": "Already 5 guardians"}},
    response_model=answers.GuardianOut,
)
async def add_guardian(
    body: GuardianIn, member_id: CurrentMember, session: SessionDep
) -> dict[str, Any]:
    g = await member_data.add_guardian(
        session, member_id=member_id, name=body.name, phone=body.phone
    )
    return {"id": str(g.id), "name": g.name, "phone": g.phone}


@router.delete("/guardians/{guardian_id}", status_code=204, summary="Remove a guardian")
async def remove_guardian(
    guardian_id: uuid.UUID, member_id: CurrentMember, session: SessionDep
) -> Response:
    await member_data.remove_guardian(session, member_id=member_id, guardian_id=guardian_id)
    return Response(status_code=204)


@router.get(
    "/export", summary="Everything the service holds about her", response_model=answers.ExportOut
)
async def export(
    member_id: CurrentMember, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    return await member_data.export(
        session, member_id=member_id, cancel_hold_s=settings.cancel_hold_s
    )


class EraseIn(StrictModel):
    pin: str = Field(min_length=1, max_length=32)


@router.post(
    "/erase",
    status_code=204,
    summary="Delete her account and data (PIN required)",
    responses={403: {"description": "Wrong PIN"}, 409: {"description": "An alert is open"}},
)
async def erase(body: EraseIn, member_id: CurrentMember, session: SessionDep) -> Response:
    if not await member_data.erase(session, member_id=member_id, pin=body.pin):
        return error_response(403, "WrongPin", "wrong PIN")
    return Response(status_code=204)


_NEW_PIN = r"^[0-9]{4,8}$"


class PinChangeIn(StrictModel):
    current_pin: str = Field(min_length=1, max_length=32)
    new_pin: str = Field(pattern=_NEW_PIN, description="4 to 8 digits")
    new_duress_pin: str = Field(pattern=_NEW_PIN, description="4 to 8 digits, not the new PIN")

    @model_validator(mode="after")
    def _pins_differ(self) -> PinChangeIn:
        if self.new_pin == self.new_duress_pin:
            raise ValueError("the duress PIN must differ from the PIN")
        return self


class PinChangeOut(BaseModel):
    changed_at: datetime


@router.post(
    "/pin",
    response_model=PinChangeOut,
    summary="Change her PIN and duress PIN (with her current PIN)",
    description=(
        "Both PINs are set at once. Her duress PIN as `current_pin` gets exactly the answer "
        "her PIN gets (docs/app.md says what it does). A wrong PIN is `403 WrongPin` and counts "
        "with her cancels' wrong PINs: after `cancel_pin_lockout_after` in a row every change is "
        "`429 PinLockedOut` with `Retry-After` for `cancel_pin_lockout_s`, whatever the PIN."
    ),
    responses={
        403: {"description": "Wrong PIN"},
        429: {"description": "Locked out after too many wrong PINs"},
    },
)
async def change_pin(
    body: PinChangeIn,
    request: Request,
    member_id: CurrentMember,
    pool: PoolDep,
    settings: SettingsDep,
) -> PinChangeOut | Response:
    result = await member_pins.change_pins(
        pool=pool,
        settings=settings,
        member_id=member_id,
        current_pin=body.current_pin,
        new_pin=body.new_pin,
        new_duress_pin=body.new_duress_pin,
        source_ip=request.client.host if request.client else None,
    )
    if result.outcome == "changed":
        kick_relay(request)  # a duress PIN's silent SOS
        assert result.changed_at is not None
        return PinChangeOut(changed_at=result.changed_at)
    if result.outcome == "locked_out":
        retry = str(result.locked_for_s)
        return error_response(
            429, "PinLockedOut", "too many wrong PINs; try again later",
            headers={"Retry-After": retry},
        )  # fmt: skip
    return error_response(403, "WrongPin", "wrong PIN")
