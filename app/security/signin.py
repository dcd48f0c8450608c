"""Staff sign-in: the password, then (for an enrolled account) a TOTP or recovery code.

A wrong second factor is limited per account in Redis as well as per IP (the login limit of
app/security/ratelimit.py counts every attempt): only someone who knows the password can spend
an account's tries, and six digits cannot be guessed at five tries a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import Forbidden, TooManyRequests, Unauthorized
from app.models import Staff, StaffRecoveryCode, StaffRole
from app.security import totp
from app.security.passwords import hash_secret, verify_secret

log = logging.getLogger(__name__)

# Verifying against a throwaway hash for unknown users keeps the timing the same.
_DUMMY_HASH = hash_secret("not-a-password")


class SecondFactorRequired(Unauthorized):
    """The password is right; send it again with ``totp`` (or ``recovery_code``)."""


class SecondFactorInvalid(Unauthorized):
    """The code is wrong, or was already used."""


class SecondFactorNotEnrolled(Forbidden):
    """An operator without a second factor, in production."""


async def sign_in(
    *,
    session: AsyncSession,
    redis: Redis,
    settings: Settings,
    username: str,
    password: str,
    totp_code: str | None,
    recovery_code: str | None,
) -> Staff:
    """The staff member these credentials sign in, or the error that says what is missing."""
    staff = await session.scalar(select(Staff).where(Staff.username == username, Staff.active))
    ok = await asyncio.to_thread(
        verify_secret, staff.password_hash if staff else _DUMMY_HASH, password
    )
    if staff is None or not ok:
        raise Unauthorized("wrong username or password")
    if staff.totp_secret is None:
        if staff.role == StaffRole.operator and settings.environment == "production":
            raise SecondFactorNotEnrolled(
                "operators must sign in with a second factor: enrol one with "
                f"`ansim staff enrol-totp --username {staff.username}`"
            )
        return staff
    if totp_code is None and recovery_code is None:
        raise SecondFactorRequired("this account needs a second factor: send `totp`")
    await _refuse_if_over_limit(redis, settings, staff.id)
    if totp_code is not None:
        accepted = await _accept_totp(session, settings, staff, totp_code)
    else:
        assert recovery_code is not None
        accepted = await _accept_recovery_code(session, staff.id, recovery_code)
    if not accepted:
        await _count_failure(redis, settings, staff.id)
        raise SecondFactorInvalid("wrong or already used code")
    return staff


async def _accept_totp(session: AsyncSession, settings: Settings, staff: Staff, code: str) -> bool:
    assert staff.totp_secret is not None
    try:
        secret = totp.decrypt_secret(
            staff.totp_secret, secret_key=settings.secret_key, staff_id=staff.id
        )
    except totp.UndecryptableSecret as exc:
        log.error("staff %s: %s; enrol the account again", staff.id, exc)
        return False
    step = totp.matching_step(secret, code)
    if step is None:
        return False
    # One statement decides a replay, so two sign-ins racing with one code cannot both pass:
    # the second waits for the first's row lock, then finds the step taken.
    taken = await session.scalar(
        update(Staff)
        .where(
            Staff.id == staff.id,
            (Staff.totp_last_step.is_(None)) | (Staff.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .returning(Staff.id)
    )
    return taken is not None


async def _accept_recovery_code(session: AsyncSession, staff_id: uuid.UUID, code: str) -> bool:
    typed = totp.normalize_recovery_code(code)
    unused = (
        await session.execute(
            select(StaffRecoveryCode.id, StaffRecoveryCode.code_hash).where(
                StaffRecoveryCode.staff_id == staff_id, StaffRecoveryCode.used_at.is_(None)
            )
        )
    ).all()

    def find() -> uuid.UUID | None:
        for code_id, code_hash in unused:
            if verify_secret(code_hash, typed):
                found: uuid.UUID = code_id
                return found
        return None

    code_id = await asyncio.to_thread(find)
    if code_id is None:
        return False
    used = await session.scalar(
        update(StaffRecoveryCode)
        .where(StaffRecoveryCode.id == code_id, StaffRecoveryCode.used_at.is_(None))
        .values(used_at=func.now())
        .returning(StaffRecoveryCode.id)
    )
    return used is not None


def _window() -> tuple[int, int]:
    now = time.time()
    return int(now // 60), max(1, 60 - int(now % 60))


def _key(settings: Settings, staff_id: uuid.UUID, window: int) -> str:
    return f"{settings.redis_prefix}rl:second-factor:{staff_id}:{window}"


async def _refuse_if_over_limit(redis: Redis, settings: Settings, staff_id: uuid.UUID) -> None:
    window, retry_after = _window()
    try:
        failures = await redis.get(_key(settings, staff_id, window))
    except RedisError as exc:  # like the request limiter: an outage lets staff sign in
        log.warning("second-factor limiter unavailable (%s)", exc)
        return
    if failures is not None and int(failures) >= settings.rate_limit_second_factor_per_min:
        error = TooManyRequests("too many wrong codes for this account; wait a minute")
        error.headers = {"Retry-After": str(retry_after)}
        raise error


async def _count_failure(redis: Redis, settings: Settings, staff_id: uuid.UUID) -> None:
    window, _ = _window()
    key = _key(settings, staff_id, window)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, 120)
            await pipe.execute()
    except RedisError as exc:
        log.warning("second-factor limiter unavailable (%s)", exc)
