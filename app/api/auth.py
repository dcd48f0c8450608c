"""Staff sign-in: username and password for a session token with an expiry."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from app.api.deps import CurrentStaff, SessionDep, SettingsDep, bearer_token
from app.api.schemas import StrictModel
from app.errors import Unauthorized
from app.models import Staff, StaffToken
from app.security.accounts import issue_staff_token
from app.security.passwords import hash_secret, verify_secret
from app.security.tokens import hash_token

router = APIRouter(prefix="/v1/auth", tags=["staff sign-in"])

# Verifying against a throwaway hash for unknown users keeps the timing the same.
_DUMMY_HASH = hash_secret("not-a-password")


class LoginIn(StrictModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class LoginOut(BaseModel):
    token: str
    expires_at: datetime
    staff_id: str
    role: str
    name: str
    city_wide: bool


@router.post("/login", response_model=LoginOut, responses={401: {"description": "Bad login"}})
async def login(body: LoginIn, session: SessionDep, settings: SettingsDep) -> LoginOut:
    staff = await session.scalar(select(Staff).where(Staff.username == body.username, Staff.active))
    ok = await asyncio.to_thread(
        verify_secret, staff.password_hash if staff else _DUMMY_HASH, body.password
    )
    if staff is None or not ok:
        raise Unauthorized("wrong username or password")
    token, expires_at = await issue_staff_token(
        session, staff_id=staff.id, ttl_s=settings.staff_token_ttl_s
    )
    return LoginOut(
        token=token,
        expires_at=expires_at,
        staff_id=str(staff.id),
        role=staff.role,
        name=staff.name,
        city_wide=staff.city_wide,
    )


@router.post("/logout", status_code=204, summary="Revoke the token used for this call")
async def logout(request: Request, staff: CurrentStaff, session: SessionDep) -> None:
    await session.execute(
        update(StaffToken)
        .where(StaffToken.token_hash == hash_token(bearer_token(request)))
        .values(revoked_at=datetime.now(UTC))
    )
