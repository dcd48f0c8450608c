"""Fixtures: real PostGIS (schema from `alembic upgrade head`) and real Redis, cleaned per test."""

from __future__ import annotations

import asyncio
import functools
import os
import time
import types
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic import command
from alembic.config import Config
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine, create_pool, create_sessionmaker
from app.main import create_app
from app.redis import create_redis
from app.security.passwords import hash_secret
from app.security.tokens import MEMBER_PREFIX, STAFF_PREFIX, hash_token, new_token
from loadtests.paths import SEOUL

ROOT = Path(__file__).resolve().parent.parent

# The database and the Redis DB come from the environment only (`make test` passes
# TEST_DATABASE_URL / TEST_REDIS_URL as DATABASE_URL / REDIS_URL), so two runs on one machine
# given different ones never share state; the defaults are the Makefile's.
for _name, _default in (
    ("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/ansim_test"),
    ("REDIS_URL", "redis://127.0.0.1:6379/9"),
):
    os.environ.setdefault(_name, os.environ.get(f"TEST_{_name}", _default))
os.environ.setdefault("ANSIM_ENVIRONMENT", "test")


@pytest.fixture
def seoul_data() -> Path:
    """The real Seoul open data beside the project (loadtests/paths.py finds it). Missing, the
    test fails and says where it looked: it is never skipped in silence."""
    if not SEOUL.is_dir():
        pytest.fail(
            f"the shared Seoul open data is not at {SEOUL}: put ../shared beside the checkout"
            " or set ANSIM_SHARED_DIR",
            pytrace=False,
        )
    return SEOUL


needs_seoul_data = pytest.mark.usefixtures("seoul_data")


@functools.cache
def hashed(secret: str) -> str:
    """Argon2 of a test PIN or password, computed once per session: each hash costs tens of
    milliseconds by design, and the tests make thousands of members and staff."""
    return hash_secret(secret)


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url)
    cfg.attributes["configure_logger"] = False
    return cfg


async def recreate_database(settings: Settings) -> None:
    """A fresh test database every run: the schema always comes from the migrations, never from
    whatever an earlier run (or an older branch) left behind."""
    dsn = settings.asyncpg_dsn
    name = dsn.rsplit("/", 1)[1].split("?")[0]
    admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
async def migrated(settings: Settings) -> None:
    await recreate_database(settings)
    import asyncio

    # Alembic's env.py runs its own event loop; keep it off ours.
    await asyncio.to_thread(command.upgrade, alembic_config(settings.async_database_url), "head")


# Tables with mutable state, emptied before each test. Reference data (districts, places) too:
# tests seed what they need.
_TABLES = (
    "dispatch_receipt, location_access, delivery_attempt, notification, guardian_view, "
    "safe_return_access, safe_return_point, safe_return_session, "
    "assignment, offer, outbox, agency_subscription, "
    "location_point, incident_event, incident, security_event, home_arming_event, device, home, "
    "guardian, member_token, "
    "member, staff_recovery_code, staff_token, staff_district, staff, safe_place, district, "
    "special_zone, crime_stat, dong, "
    "public_asset"
)


@pytest.fixture(scope="session")
async def pool(settings: Settings, migrated: None) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(settings, application_name="ansim-tests", max_size=5)
    yield p
    await p.close()


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    r = create_redis(settings, client_name="ansim-tests")
    yield r
    await r.aclose()


#: A test whose fixtures include one of these uses PostgreSQL or Redis (every fixture that
#: reaches them depends on one): ``clean`` empties both before it. Other tests (signatures,
#: lifecycle, redaction, parsing) run without either: no migration, no TRUNCATE.
_STATEFUL = frozenset({"migrated", "redis"})


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("keep_db"):
        return
    if _STATEFUL.isdisjoint(request.fixturenames):
        return
    # (A plain fixture: pytest-asyncio sets up the async one it asks for on its own loop.)
    request.getfixturevalue("emptied")


@pytest.fixture
async def emptied(pool: asyncpg.Pool, redis: Redis) -> None:
    """Both stores emptied before the test (``clean`` asks for it when a test uses them)."""
    for attempt in range(5):
        try:
            # (Identities go on: an outbox id is never used twice, as in production, so a
            # receipt an API process writes late for the previous test names no row of this one.)
            await pool.execute(f"TRUNCATE {_TABLES} CASCADE")
            break
        except asyncpg.DeadlockDetectedError:
            # A module-scoped stack's dispatcher may still be routing the previous test's last
            # entry (one statement locking several of these tables): let it finish, retry.
            if attempt == 4:
                raise
            await asyncio.sleep(0.2)
    await redis.flushdb()


@pytest.fixture(scope="session")
async def sessionmaker(
    settings: Settings, migrated: None
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings, application_name="ansim-tests-orm")
    yield create_sessionmaker(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def app(settings: Settings, migrated: None) -> AsyncIterator[FastAPI]:
    application = create_app(settings, process_name="ansim-tests-api")
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def limit_clock_mid_minute(monkeypatch: pytest.MonkeyPatch) -> float:
    """The rate limiters' clock stopped half-way through a minute. Their windows are fixed
    minutes of ``time.time()``: on the real clock a minute can end between a test's requests,
    its count starts again, and the test that wanted a 429 gets a 2xx (one run in a few dozen)."""
    at = (time.time() // 60) * 60 + 30
    clock = types.SimpleNamespace(time=lambda: at)
    monkeypatch.setattr("app.security.ratelimit.time", clock)
    monkeypatch.setattr("app.security.signin.time", clock)
    return at


async def room_in_the_minute(seconds: float) -> None:
    """Wait, if need be, until ``seconds`` are left before the next minute: for limits counted
    by processes of their own, whose clock a test cannot stop."""
    left = 60 - time.time() % 60
    if left < seconds:
        await asyncio.sleep(left + 0.05)


@pytest.fixture
def relay_paused(request: pytest.FixtureRequest) -> None:
    """The session app's outbox relay stopped for the test: for tests that publish the outbox
    by hand and count what they published (a relay in the background takes rows from them)."""
    if "migrated" in request.fixturenames:  # a test without the database has no rows to race
        request.getfixturevalue("_relay_stopped")


@pytest.fixture
async def _relay_stopped(app: FastAPI) -> AsyncIterator[None]:
    await app.state.relay.stop()
    try:
        yield
    finally:
        app.state.relay.start()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass
class MemberCreds:
    id: uuid.UUID
    token: str
    pin: str = "1234"
    duress_pin: str = "9999"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def make_member(pool: asyncpg.Pool):
    async def make(
        name: str = "Jiyoung", pin: str = "1234", duress_pin: str = "9999"
    ) -> MemberCreds:
        member_id = uuid.uuid4()
        token = new_token(MEMBER_PREFIX)
        phone = "+8210" + str(uuid.uuid4().int)[:8]
        await pool.execute(
            "INSERT INTO member (id, phone, name, pin_hash, duress_pin_hash, wrong_pin_count)"
            " VALUES ($1, $2, $3, $4, $5, 0)",
            member_id,
            phone,
            name,
            hashed(pin),
            hashed(duress_pin),
        )
        await pool.execute(
            "INSERT INTO member_token (id, member_id, token_hash) VALUES ($1, $2, $3)",
            uuid.uuid4(),
            member_id,
            hash_token(token),
        )
        return MemberCreds(member_id, token, pin, duress_pin)

    return make


@dataclass
class StaffCreds:
    id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
async def make_staff(pool: asyncpg.Pool):
    async def make(
        role: str = "dispatcher",
        *,
        district_ids: tuple[uuid.UUID, ...] = (),
        city_wide: bool = False,
        name: str = "Kim",
        badge_number: str | None = None,
    ) -> StaffCreds:
        staff_id = uuid.uuid4()
        token = new_token(STAFF_PREFIX)
        await pool.execute(
            "INSERT INTO staff (id, username, name, role, password_hash, city_wide, badge_number,"
            " active) VALUES ($1, $2, $3, $4, $5, $6, $7, true)",
            staff_id,
            f"{role}-{staff_id.hex[:8]}",
            name,
            role,
            hashed("pw"),
            city_wide,
            badge_number,
        )
        for d in district_ids:
            await pool.execute("INSERT INTO staff_district VALUES ($1, $2)", staff_id, d)
        await pool.execute(
            "INSERT INTO staff_token (id, staff_id, token_hash, expires_at)"
            " VALUES ($1, $2, $3, now() + interval '1 hour')",
            uuid.uuid4(),
            staff_id,
            hash_token(token),
        )
        return StaffCreds(staff_id, token)

    return make


@pytest.fixture
async def make_district(pool: asyncpg.Pool):
    """A rectangular district from (lon0, lat0) to (lon1, lat1)."""

    async def make(
        code: str, name: str, lon0: float, lat0: float, lon1: float, lat1: float
    ) -> uuid.UUID:
        district_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO district (id, code, name, boundary) VALUES"
            " ($1, $2, $3, ST_Multi(ST_MakeEnvelope($4, $5, $6, $7, 4326)))",
            district_id,
            code,
            name,
            lon0,
            lat0,
            lon1,
            lat1,
        )
        return district_id

    return make


@pytest.fixture
async def make_place(pool: asyncpg.Pool):
    async def make(
        name: str,
        lat: float,
        lon: float,
        *,
        kind: str = "convenience_store",
        open_24h: bool = True,
        is_safety_house: bool = True,
        phone: str | None = "02-000-0000",
        address: str | None = "Seoul",
    ) -> uuid.UUID:
        place_id = uuid.uuid4()
        await pool.execute(
            "INSERT INTO safe_place (id, kind, name, address, phone, open_24h, is_safety_house,"
            " active, source, external_ref, geog) VALUES ($1, $2, $3, $4, $5, $6, $7, true,"
            " 'test', $8, ST_SetSRID(ST_MakePoint($9, $10), 4326)::geography)",
            place_id,
            kind,
            name,
            address,
            phone,
            open_24h,
            is_safety_house,
            str(place_id),
            lon,
            lat,
        )
        return place_id

    return make
