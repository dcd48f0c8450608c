"""Staff sign-in: username and password for a session token with an expiry."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import update

from app.api.deps import CurrentStaff, RedisDep, SessionDep, SettingsDep, bearer_token
from app.api.schemas import StrictModel
from app.models import StaffToken
from app.security.accounts import issue_staff_token
from app.security.signin import sign_in
from app.security.tokens import hash_token

router = APIRouter(prefix="/v1/auth", tags=["staff sign-in"])


class LoginIn(StrictModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)
    totp: str | None = Field(
        None,
        pattern=r"^[0-9]{6}$",
        description="The authenticator's current 6-digit code (accounts with a second factor)",
    )
    recovery_code: str | None = Field(
        None, min_length=1, max_length=64, description="A one-time recovery code instead of totp"
    )


class LoginOut(BaseModel):
    token: str
    expires_at: datetime
    staff_id: str
    role: str
    name: str
    city_wide: bool


_LOGIN_DOC = """Sign in with the password and, for an account with a second factor, `totp` (or a
`recovery_code`, each usable once) in the same request.

* `401 Unauthorized`: wrong username or password.
* `401 SecondFactorRequired`: the password is right and the account has a second factor: ask
  for the code and send both again.
* `401 SecondFactorInvalid`: the code is wrong, or was already used (a code signs in once).
* `403 SecondFactorNotEnrolled`: an operator without a second factor, in production.
* `429 TooManyRequests`: too many attempts from this address, or wrong codes for this account.
"""


@router.post(
    "/login",
    response_model=LoginOut,
    description=_LOGIN_DOC,
    responses={
        401: {"description": "Bad login, or a second factor is required or wrong"},
        403: {"description": "An operator must enrol a second factor (production)"},
        429: {"description": "Too many attempts"},
    },
)
async def login(
    body: LoginIn, session: SessionDep, redis: RedisDep, settings: SettingsDep
) -> LoginOut:
    staff = await sign_in(
        session=session,
        redis=redis,
        settings=settings,
        username=body.username,
        password=body.password,
        totp_code=body.totp,
        recovery_code=body.recovery_code,
    )
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
