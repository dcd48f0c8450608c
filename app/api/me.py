"""The member's own account: profile, guardians, data export and erasure."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import Field

from app.api import answers
from app.api.deps import CurrentMember, SessionDep, SettingsDep
from app.api.schemas import StrictModel
from app.errors import error_response
from app.incidents import member_data

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
