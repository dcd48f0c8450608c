"""Her app's first run: a one-time code, sent by SMS (or read out by an operator), exchanged for
her member token, which stays only on her phone.

- **Nothing that signs in is stored.** The code is six digits derived from ``ANSIM_SECRET_KEY``
  and the id of its ``member_signin_code`` row (HMAC-SHA256, like a guardian's link): the
  table and the SMS queue hold the id only, and the text is made when the sender hands the
  message to the gateway (``sms_text``). A copy of the database mints no code.
- **Asking tells nothing.** ``POST /v1/auth/member/code`` answers the same ``202`` whether the
  number is hers, unknown or erased, and the limits count every number alike: per number and
  per address, ``member_code_per_phone_per_hour`` and ``member_code_per_ip_per_hour``.
- **A code signs in once, for a short time.** It lives ``member_code_ttl_s``; a new one voids
  the older ones; the exchange that uses it is one conditional ``UPDATE``, so two racing
  exchanges of one code give one token.
- **Guessing is limited twice.** A wrong code counts on the live code (at
  ``member_code_max_attempts`` it is void: the right one no longer works) and on the number in
  Redis (at the same count every exchange for that number, registered or not, is refused with
  ``429`` for the code's lifetime). Six digits at five tries per code cannot be guessed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.config import Settings
from app.errors import TooManyRequests, Unauthorized
from app.security.tokens import MEMBER_PREFIX, hash_token, new_token

log = logging.getLogger(__name__)

CODE_DIGITS = 6


class SignInCodeInvalid(Unauthorized):
    """Wrong, expired, used or void code, or a number we do not know: one answer for all."""


@dataclass(frozen=True)
class IssuedCode:
    id: uuid.UUID
    member_id: uuid.UUID
    code: str
    expires_at: datetime


def normalize_phone(phone: str) -> str:
    """Digits only, a Korean +82 number written as its domestic 0… form: ``+82 10-1234-5678``,
    ``010 1234 5678`` and ``01012345678`` are one number."""
    digits = re.sub(r"\D", "", phone)
    return "0" + digits[2:] if phone.strip().startswith("+82") else digits


#: The same normalisation of ``member.phone`` in SQL (a member is found by her number as typed).
_DIGITS_SQL = "regexp_replace(m.phone, '\\D', '', 'g')"
_PHONE_SQL = (
    f"CASE WHEN btrim(m.phone) LIKE '+82%' THEN '0' || substr({_DIGITS_SQL}, 3)"
    f" ELSE {_DIGITS_SQL} END"
)


def code_for(secret_key: str, code_id: uuid.UUID) -> str:
    mac = hmac.new(secret_key.encode(), b"member-signin:" + code_id.bytes, hashlib.sha256)
    return f"{int.from_bytes(mac.digest()[:8], 'big') % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


def sms_text(secret_key: str, code_id: uuid.UUID) -> str:
    code = code_for(secret_key, code_id)
    return f"[안심 Ansim] 인증번호 {code} (sign-in code). 다른 사람에게 알려주지 마세요."


_MEMBER_SQL = f"""
SELECT m.id, m.phone FROM member m
WHERE m.deleted_at IS NULL AND {_PHONE_SQL} = $1
ORDER BY m.created_at LIMIT 1
"""
_ISSUE_SQL = """
WITH void AS (
  UPDATE member_signin_code SET expires_at = least(expires_at, now())
  WHERE member_id = $2 AND used_at IS NULL AND expires_at > now()
)
INSERT INTO member_signin_code (id, member_id, issued_by, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4::float8))
RETURNING expires_at
"""


async def issue_code(
    conn: asyncpg.Connection, settings: Settings, *, member_id: uuid.UUID, issued_by: str
) -> IssuedCode:
    """A new code for her (the older ones are void), inside the caller's transaction."""
    code_id = uuid.uuid4()
    expires_at = await conn.fetchval(
        _ISSUE_SQL, code_id, member_id, issued_by, settings.member_code_ttl_s
    )
    return IssuedCode(code_id, member_id, code_for(settings.secret_key, code_id), expires_at)


async def member_by_phone(conn: asyncpg.Connection, phone: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(_MEMBER_SQL, normalize_phone(phone))
    return row


def _phone_key(settings: Settings, kind: str, phone: str) -> str:
    # A hash, never the number: the limiter's keys hold nothing personal.
    digest = hashlib.sha256(f"{settings.secret_key}:{normalize_phone(phone)}".encode()).hexdigest()
    return f"{settings.redis_prefix}rl:member-code:{kind}:{digest[:24]}"


async def _count(redis: Redis, key: str, ttl_s: int) -> int | None:
    """INCR (the key lives ``ttl_s`` after the last count); None when Redis is unavailable:
    like the request limiter, an outage lets her sign in."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, ttl_s)
            count, _ = await pipe.execute()
        return int(count)
    except RedisError as exc:
        log.warning("member sign-in limiter unavailable (%s)", exc)
        return None


def _too_many(detail: str, retry_after_s: float) -> TooManyRequests:
    error = TooManyRequests(detail)
    error.headers = {"Retry-After": str(max(1, int(retry_after_s)))}
    return error


async def request_code(
    *, pool: asyncpg.Pool, redis: Redis, settings: Settings, phone: str, client_ip: str
) -> bool:
    """Queue her code's SMS if the number is a member's; the caller answers the same either
    way. Returns whether an SMS was queued (for the caller to wake the sender)."""
    hour = int(time.time() // 3600)
    retry_after = 3600 - time.time() % 3600
    by_phone = await _count(redis, _phone_key(settings, f"ask:{hour}", phone), 3700)
    by_ip = await _count(
        redis, f"{settings.redis_prefix}rl:member-code:ip:{client_ip}:{hour}", 3700
    )
    if (by_phone or 0) > settings.member_code_per_phone_per_hour or (
        by_ip or 0
    ) > settings.member_code_per_ip_per_hour:
        raise _too_many("too many codes asked for; try again later", retry_after)
    async with pool.acquire() as conn, conn.transaction():
        member = await member_by_phone(conn, phone)
        if member is None:
            return False
        issued = await issue_code(conn, settings, member_id=member["id"], issued_by="sms")
        await conn.execute(
            "INSERT INTO notification (channel, target, message, dedupe_key, deadline_at,"
            " signin_code_id) VALUES ('sms', $1, $2, $3, $4, $5)",
            f"member:{member['id']}",
            {
                "type": "member_signin_code",
                "phone": member["phone"],
                "signin_code_id": str(issued.id),
            },
            f"signin:{issued.id}",
            issued.expires_at,
            issued.id,
        )
    return True


_LIVE_SQL = """
SELECT c.id FROM member_signin_code c
WHERE c.member_id = $1 AND c.used_at IS NULL AND c.expires_at > now() AND c.attempts < $2
ORDER BY c.created_at DESC LIMIT 1
FOR UPDATE
"""
_USE_SQL = """
UPDATE member_signin_code SET used_at = now()
WHERE id = $1 AND used_at IS NULL AND expires_at > now()
RETURNING member_id
"""


async def exchange_code(
    *,
    pool: asyncpg.Pool,
    redis: Redis,
    settings: Settings,
    phone: str,
    code: str,
    label: str | None,
) -> tuple[uuid.UUID, str]:
    """Her member id and a new member token for the right live code; ``SignInCodeInvalid``
    for anything else (one answer), ``TooManyRequests`` once the number has had its tries."""
    wrong_key = _phone_key(settings, "wrong", phone)
    try:
        wrong = await redis.get(wrong_key)
    except RedisError as exc:  # the code's own attempt count still limits guessing
        log.warning("member sign-in limiter unavailable (%s)", exc)
        wrong = None
    if wrong is not None and int(wrong) >= settings.member_code_max_attempts:
        raise _too_many(
            "too many wrong codes for this number; ask for a new one later",
            settings.member_code_ttl_s,
        )
    token: str | None = None
    member_id: uuid.UUID | None = None
    async with pool.acquire() as conn, conn.transaction():
        member = await member_by_phone(conn, phone)
        code_id = (
            await conn.fetchval(_LIVE_SQL, member["id"], settings.member_code_max_attempts)
            if member is not None
            else None
        )
        # Compared whether or not there is a code, so an unknown number costs the same.
        expected = code_for(settings.secret_key, code_id or uuid.UUID(int=0))
        if code_id is not None and hmac.compare_digest(expected, code):
            member_id = await conn.fetchval(_USE_SQL, code_id)
        if member_id is not None:
            token = new_token(MEMBER_PREFIX)
            await conn.execute(
                "INSERT INTO member_token (id, member_id, token_hash, label)"
                " VALUES ($1, $2, $3, $4)",
                uuid.uuid4(),
                member_id,
                hash_token(token),
                label or "app",
            )
        elif code_id is not None:
            await conn.execute(
                "UPDATE member_signin_code SET attempts = attempts + 1 WHERE id = $1", code_id
            )
    if member_id is None or token is None:
        await _count(redis, wrong_key, int(settings.member_code_ttl_s))
        raise SignInCodeInvalid("wrong or expired code; ask for a new one")
    return member_id, token
