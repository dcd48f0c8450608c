"""Creating members and staff and issuing their tokens (shared by the CLI, demo and login)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import BadRequest, Conflict, NotFound
from app.models import (
    District,
    Member,
    MemberToken,
    Staff,
    StaffRecoveryCode,
    StaffToken,
    staff_district,
)
from app.security import totp
from app.security.passwords import hash_secret
from app.security.tokens import MEMBER_PREFIX, STAFF_PREFIX, hash_token, new_token


def _check_pins(pin: str, duress_pin: str | None) -> None:
    if duress_pin is not None and duress_pin == pin:
        raise BadRequest("the duress PIN must differ from the PIN")


async def create_member(
    session: AsyncSession, *, phone: str, name: str, pin: str, duress_pin: str | None
) -> Member:
    _check_pins(pin, duress_pin)
    if await session.scalar(select(Member.id).where(Member.phone == phone)):
        raise Conflict(f"a member with phone {phone} exists")
    member = Member(
        phone=phone,
        name=name,
        pin_hash=hash_secret(pin),
        duress_pin_hash=hash_secret(duress_pin) if duress_pin else None,
    )
    session.add(member)
    await session.flush()
    return member


async def issue_member_token(
    session: AsyncSession, *, member_id: uuid.UUID, label: str | None = None
) -> str:
    """A new app credential; it never expires, it can be revoked."""
    token = new_token(MEMBER_PREFIX)
    session.add(MemberToken(member_id=member_id, token_hash=hash_token(token), label=label))
    await session.flush()
    return token


async def create_members(
    session: AsyncSession,
    people: Sequence[tuple[str, str]],
    *,
    pin: str,
    duress_pin: str | None,
    token_label: str,
) -> list[str]:
    """Many members (phone, name) sharing one PIN, each with an app token, in two statements:
    a bulk enrolment, or the benchmark's thousands of test members. The tokens are returned
    once, in the order of ``people``; a phone already registered fails the whole batch."""
    _check_pins(pin, duress_pin)
    pin_hash = hash_secret(pin)
    duress_hash = hash_secret(duress_pin) if duress_pin else None
    ids = [uuid.uuid4() for _ in people]
    await session.execute(
        insert(Member),
        [
            {"id": i, "phone": phone, "name": name, "pin_hash": pin_hash,
             "duress_pin_hash": duress_hash}
            for i, (phone, name) in zip(ids, people, strict=True)
        ],
    )  # fmt: skip
    tokens = [new_token(MEMBER_PREFIX) for _ in people]
    await session.execute(
        insert(MemberToken),
        [
            {"member_id": i, "token_hash": hash_token(t), "label": token_label}
            for i, t in zip(ids, tokens, strict=True)
        ],
    )
    return tokens


@dataclass(frozen=True)
class NewStaff:
    username: str
    name: str
    city_wide: bool = False
    badge_number: str | None = None


async def create_staff_many(
    session: AsyncSession, people: Sequence[NewStaff], *, role: str, password: str, ttl_s: int
) -> list[str]:
    """Many staff of one role sharing one password, each with a session token, in two
    statements (the benchmark's consoles and volunteers); tokens in the order of ``people``."""
    password_hash = hash_secret(password)
    ids = [uuid.uuid4() for _ in people]
    await session.execute(
        insert(Staff),
        [
            {"id": i, "role": role, "username": p.username, "name": p.name,
             "password_hash": password_hash, "city_wide": p.city_wide,
             "badge_number": p.badge_number}
            for i, p in zip(ids, people, strict=True)
        ],
    )  # fmt: skip
    tokens = [new_token(STAFF_PREFIX) for _ in people]
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl_s)
    await session.execute(
        insert(StaffToken),
        [
            {"staff_id": i, "token_hash": hash_token(t), "expires_at": expires_at}
            for i, t in zip(ids, tokens, strict=True)
        ],
    )
    return tokens


async def create_staff(
    session: AsyncSession,
    *,
    role: str,
    username: str,
    name: str,
    password: str,
    district_codes: list[str] | None = None,
    city_wide: bool = False,
    badge_number: str | None = None,
    phone: str | None = None,
    on_call: bool = False,
) -> Staff:
    if await session.scalar(select(Staff.id).where(Staff.username == username)):
        raise Conflict(f"staff user {username} exists")
    staff = Staff(
        role=role,
        username=username,
        name=name,
        password_hash=hash_secret(password),
        city_wide=city_wide,
        badge_number=badge_number,
        phone=phone,
        on_call=on_call,
    )
    session.add(staff)
    await session.flush()
    await set_staff_districts(session, staff_id=staff.id, district_codes=district_codes or [])
    return staff


async def set_staff_districts(
    session: AsyncSession, *, staff_id: uuid.UUID, district_codes: list[str]
) -> None:
    if not district_codes:
        return
    rows = (
        await session.execute(
            select(District.id, District.code).where(District.code.in_(district_codes))
        )
    ).all()
    missing = set(district_codes) - {r.code for r in rows}
    if missing:
        raise BadRequest(f"unknown district codes: {', '.join(sorted(missing))}")
    await session.execute(
        staff_district.insert(), [{"staff_id": staff_id, "district_id": r.id} for r in rows]
    )


async def enrol_totp(session: AsyncSession, *, staff: Staff, secret_key: str) -> totp.Enrolment:
    """A new TOTP secret and ten recovery codes for ``staff``, replacing any earlier ones; from
    now on the password alone does not sign in. The answer is the only time they are shown."""
    secret = totp.new_secret()
    codes = totp.new_recovery_codes()
    hashes = await asyncio.to_thread(
        lambda: [hash_secret(totp.normalize_recovery_code(c)) for c in codes]
    )
    staff.totp_secret = totp.encrypt_secret(secret, secret_key=secret_key, staff_id=staff.id)
    staff.totp_last_step = None
    await session.execute(delete(StaffRecoveryCode).where(StaffRecoveryCode.staff_id == staff.id))
    session.add_all(StaffRecoveryCode(staff_id=staff.id, code_hash=h) for h in hashes)
    await session.flush()
    return totp.Enrolment(
        secret=secret,
        otpauth_uri=totp.otpauth_uri(secret, staff.username),
        recovery_codes=codes,
    )


async def staff_by_username(session: AsyncSession, username: str) -> Staff:
    staff = await session.scalar(select(Staff).where(Staff.username == username))
    if staff is None:
        raise NotFound(f"no staff user {username}")
    return staff


async def issue_staff_token(
    session: AsyncSession, *, staff_id: uuid.UUID, ttl_s: int
) -> tuple[str, datetime]:
    """A session token for staff: it expires, and can be revoked earlier."""
    token = new_token(STAFF_PREFIX)
    expires_at = datetime.now(UTC) + timedelta(seconds=ttl_s)
    session.add(StaffToken(staff_id=staff_id, token_hash=hash_token(token), expires_at=expires_at))
    await session.flush()
    return token, expires_at
