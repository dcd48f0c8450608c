"""Typed dependencies: clients from the lifespan state, the unit of work, who is calling."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.errors import Forbidden, Unauthorized
from app.incidents.console_service import in_scope
from app.incidents.timeline import OUTBOX_WRITTEN
from app.security.tokens import hash_token, member_by_token_sql


# Providers are ``async def``: FastAPI runs a plain ``def`` dependency in the thread pool, and
# the thread hand-offs were a third of the API's CPU time on the SOS path (py-spy).
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


def kick_relay(request: Request) -> None:
    """Publish freshly committed outbox rows now rather than at the relay's next sweep."""
    request.app.state.relay.kick()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success (then kick the relay if the outbox was written),
    roll back on error. Services only flush."""
    maker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with maker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
        if session.info.get(OUTBOX_WRITTEN):
            kick_relay(request)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
RedisDep = Annotated[Redis, Depends(get_redis)]
# scope="function": the commit happens before the response is sent, so no 2xx ever reports a
# change that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token")
    return token.strip()


_MEMBER_SQL = member_by_token_sql("$1")

_STAFF_SQL = """
SELECT s.id, s.role, s.name, s.city_wide,
       coalesce(array_agg(sd.district_id) FILTER (WHERE sd.district_id IS NOT NULL), '{}')
         AS district_ids
FROM staff_token t JOIN staff s ON s.id = t.staff_id
LEFT JOIN staff_district sd ON sd.staff_id = s.id
WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now() AND s.active
GROUP BY s.id
"""


async def member_from_token(pool: asyncpg.Pool, token: str) -> uuid.UUID | None:
    member_id: uuid.UUID | None = await pool.fetchval(_MEMBER_SQL, hash_token(token))
    return member_id


async def get_current_member(request: Request, pool: PoolDep) -> uuid.UUID:
    member_id = await member_from_token(pool, bearer_token(request))
    if member_id is None:
        raise Unauthorized("invalid or revoked member token")
    return member_id


CurrentMember = Annotated[uuid.UUID, Depends(get_current_member)]


@dataclass(frozen=True)
class StaffPrincipal:
    id: uuid.UUID
    role: str
    name: str
    city_wide: bool
    district_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)

    def sees_district(self, district_id: uuid.UUID | None) -> bool:
        """City-wide staff see everything; others only their districts (not unlocated ones)."""
        return self.city_wide or (district_id is not None and district_id in self.district_ids)

    def sees(
        self, district_id: uuid.UUID | str | None, covered_by: Iterable[uuid.UUID | str] = ()
    ) -> bool:
        """An incident of ``district_id`` that the districts ``covered_by`` cover (nobody watched
        its own channel) is theirs to see and act on too."""
        return in_scope(
            city_wide=self.city_wide,
            district_ids=self.district_ids,
            district_id=district_id,
            covered_by=covered_by,
        )


async def staff_from_token(pool: asyncpg.Pool, token: str) -> StaffPrincipal | None:
    row = await pool.fetchrow(_STAFF_SQL, hash_token(token))
    if row is None:
        return None
    return StaffPrincipal(
        id=row["id"],
        role=row["role"],
        name=row["name"],
        city_wide=row["city_wide"],
        district_ids=frozenset(row["district_ids"]),
    )


async def get_current_staff(request: Request, pool: PoolDep) -> StaffPrincipal:
    staff = await staff_from_token(pool, bearer_token(request))
    if staff is None:
        raise Unauthorized("invalid, expired or revoked staff token")
    return staff


CurrentStaff = Annotated[StaffPrincipal, Depends(get_current_staff)]


def _require_role(*roles: str):  # type: ignore[no-untyped-def]
    async def dependency(staff: CurrentStaff) -> StaffPrincipal:
        if staff.role not in roles:
            raise Forbidden(f"this action needs the {' or '.join(roles)} role")
        return staff

    return dependency


CurrentDispatcher = Annotated[StaffPrincipal, Depends(_require_role("dispatcher"))]
CurrentVolunteer = Annotated[StaffPrincipal, Depends(_require_role("volunteer"))]
CurrentOperator = Annotated[StaffPrincipal, Depends(_require_role("operator"))]


async def get_any_client(request: Request, pool: PoolDep) -> uuid.UUID:
    """Any authenticated caller: a member or a staff member."""
    token = bearer_token(request)
    member_id = await member_from_token(pool, token)
    if member_id is not None:
        return member_id
    staff = await staff_from_token(pool, token)
    if staff is not None:
        return staff.id
    raise Unauthorized("invalid or revoked token")


AnyClient = Annotated[uuid.UUID, Depends(get_any_client)]
