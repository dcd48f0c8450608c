"""Sign-in: staff (username, password, second factor) for a session token with an expiry;
her app (a one-time code by SMS) for her member token."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import update

from app.api.deps import CurrentStaff, PoolDep, RedisDep, SessionDep, SettingsDep, bearer_token
from app.api.schemas import StrictModel
from app.models import StaffToken
from app.notifications import sender
from app.security import member_signin
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


# --- her app: a one-time code for her member token ----------------------------------------

member_router = APIRouter(prefix="/v1/auth/member", tags=["member sign-in"])

_PHONE = r"^\+?[0-9][0-9 -]{5,30}$"


class MemberCodeIn(StrictModel):
    phone: str = Field(pattern=_PHONE, description="Her number as she types it (+82…, 010…)")


class MemberCodeOut(BaseModel):
    sent: bool = Field(description="Always true: the answer never says whether the number is known")
    expires_in_s: int
    code_digits: int


class MemberTokenIn(StrictModel):
    phone: str = Field(pattern=_PHONE)
    code: str = Field(pattern=r"^[0-9]{6}$", description="The 6 digits of the SMS")
    label: str | None = Field(None, max_length=64, description="Names this phone in her tokens")


class MemberTokenOut(BaseModel):
    token: str = Field(description="Her member token: keep it on this device only")
    member_id: uuid.UUID


@member_router.post(
    "/code",
    status_code=202,
    response_model=MemberCodeOut,
    summary="Text her a one-time sign-in code",
    description=(
        "Queues an SMS with a 6-digit code through the notification gateway if the number is a "
        "member's. The answer is the same `202` for any number. `429 TooManyRequests` (with "
        "`Retry-After`) after `member_code_per_phone_per_hour` codes for a number or "
        "`member_code_per_ip_per_hour` from an address, counted alike for every number."
    ),
    responses={429: {"description": "Too many codes asked for"}},
)
async def member_code(
    body: MemberCodeIn, request: Request, pool: PoolDep, redis: RedisDep, settings: SettingsDep
) -> MemberCodeOut:
    client = request.client.host if request.client else "unknown"
    if await member_signin.request_code(
        pool=pool, redis=redis, settings=settings, phone=body.phone, client_ip=client
    ):
        sender.kick()
    return MemberCodeOut(
        sent=True,
        expires_in_s=int(settings.member_code_ttl_s),
        code_digits=member_signin.CODE_DIGITS,
    )


@member_router.post(
    "/token",
    response_model=MemberTokenOut,
    summary="Exchange her one-time code for her member token",
    description=(
        "* `401 SignInCodeInvalid`: wrong, expired, already used or void code, or an unknown "
        "number (one answer). A code signs in once; a new code voids the older ones; "
        "`member_code_max_attempts` wrong codes void it.\n"
        "* `429 TooManyRequests`: that many wrong codes for this number; wait `Retry-After`."
    ),
    responses={
        401: {"description": "Wrong, expired or used code"},
        429: {"description": "Too many wrong codes"},
    },
)
async def member_token(
    body: MemberTokenIn, pool: PoolDep, redis: RedisDep, settings: SettingsDep
) -> MemberTokenOut:
    member_id, token = await member_signin.exchange_code(
        pool=pool, redis=redis, settings=settings, phone=body.phone, code=body.code,
        label=body.label,
    )  # fmt: skip
    return MemberTokenOut(token=token, member_id=member_id)
