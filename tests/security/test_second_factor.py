"""Staff sign-in with a second factor: TOTP codes (once each), recovery codes (once each), a
per-account limit on wrong codes, and operators who must enrol in production."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pyotp
import pytest

from app.config import Settings
from app.main import create_app
from app.security import totp
from app.security.accounts import create_staff, enrol_totp

PASSWORD = "correct horse battery"


@pytest.fixture
def enrolled(sessionmaker, settings):
    async def make(role: str = "dispatcher", *, with_totp: bool = True):
        username = f"{role}-{uuid.uuid4().hex[:8]}"
        async with sessionmaker() as session, session.begin():
            staff = await create_staff(
                session,
                role=role,
                username=username,
                name="Park",
                password=PASSWORD,
                city_wide=role == "dispatcher",
            )
            enrolment = (
                await enrol_totp(session, staff=staff, secret_key=settings.secret_key)
                if with_totp
                else None
            )
        return username, staff.id, enrolment

    return make


async def login(client: httpx.AsyncClient, username: str, **extra: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/login", json={"username": username, "password": PASSWORD, **extra}
    )


async def test_the_password_alone_asks_for_the_code_and_the_code_signs_in_once(client, enrolled):
    username, _, enrolment = await enrolled()
    alone = await login(client, username)
    assert alone.status_code == 401 and alone.json()["error"] == "SecondFactorRequired"
    assert "token" not in alone.json()

    wrong_password = await client.post(
        "/v1/auth/login",
        json={
            "username": username,
            "password": "nope",
            "totp": totp.current_code(enrolment.secret),
        },
    )
    assert wrong_password.status_code == 401 and wrong_password.json()["error"] == "Unauthorized"

    code = pyotp.TOTP(enrolment.secret).now()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    r = await login(client, username, totp=wrong)
    assert r.status_code == 401 and r.json()["error"] == "SecondFactorInvalid"

    ok = await login(client, username, totp=code)
    assert ok.status_code == 200, ok.text
    me = await client.get(
        "/v1/console/incidents", headers={"Authorization": f"Bearer {ok.json()['token']}"}
    )
    assert me.status_code == 200

    replay = await login(client, username, totp=code)
    assert replay.status_code == 401 and replay.json()["error"] == "SecondFactorInvalid"


async def test_a_code_from_an_earlier_step_than_the_last_accepted_is_a_replay(client, enrolled):
    username, _, enrolment = await enrolled()
    t = pyotp.TOTP(enrolment.secret)
    now = int(time.time() // totp.STEP_S)
    assert (await login(client, username, totp=t.generate_otp(now))).status_code == 200
    # The previous step's code is within the drift allowed, but older than the one used.
    earlier = await login(client, username, totp=t.generate_otp(now - 1))
    assert earlier.status_code == 401 and earlier.json()["error"] == "SecondFactorInvalid"


async def test_two_sign_ins_racing_with_one_code_let_one_in(client, enrolled):
    username, _, enrolment = await enrolled()
    code = totp.current_code(enrolment.secret)
    answers = await asyncio.gather(*(login(client, username, totp=code) for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [200, 401, 401, 401]


async def test_a_recovery_code_signs_in_once_and_is_forgiving_about_its_format(
    client, enrolled, pool
):
    username, staff_id, enrolment = await enrolled()
    assert len(enrolment.recovery_codes) == 10 and len(set(enrolment.recovery_codes)) == 10
    first = enrolment.recovery_codes[3]
    typed = " " + first.upper().replace("-", " ") + " "
    assert (await login(client, username, recovery_code=typed)).status_code == 200
    again = await login(client, username, recovery_code=first)
    assert again.status_code == 401 and again.json()["error"] == "SecondFactorInvalid"
    assert (
        await pool.fetchval(
            "SELECT count(*) FILTER (WHERE used_at IS NULL) FROM staff_recovery_code"
            " WHERE staff_id = $1",
            staff_id,
        )
        == 9
    )
    assert (await login(client, username, recovery_code="aaaaa-bbbbb")).status_code == 401
    assert (
        await login(client, username, recovery_code=enrolment.recovery_codes[0])
    ).status_code == 200


async def test_nothing_of_the_second_factor_is_stored_in_the_clear(enrolled, pool, settings):
    _, staff_id, enrolment = await enrolled()
    stored = await pool.fetchval("SELECT totp_secret FROM staff WHERE id = $1", staff_id)
    assert enrolment.secret not in stored
    assert totp.decrypt_secret(stored, secret_key=settings.secret_key, staff_id=staff_id) == (
        enrolment.secret
    )
    with pytest.raises(totp.UndecryptableSecret):
        totp.decrypt_secret(stored, secret_key="another key", staff_id=staff_id)
    with pytest.raises(totp.UndecryptableSecret):  # copied onto another account
        totp.decrypt_secret(stored, secret_key=settings.secret_key, staff_id=uuid.uuid4())
    hashes = [r["code_hash"] for r in await pool.fetch("SELECT code_hash FROM staff_recovery_code")]
    assert len(hashes) == 10
    for code in enrolment.recovery_codes:
        assert all(code not in h and totp.normalize_recovery_code(code) not in h for h in hashes)


async def test_enrolling_again_voids_the_old_secret_and_codes(
    client, enrolled, sessionmaker, settings
):
    username, staff_id, old = await enrolled()
    from app.models import Staff

    async with sessionmaker() as session, session.begin():
        staff = await session.get(Staff, staff_id)
        new = await enrol_totp(session, staff=staff, secret_key=settings.secret_key)
    assert (await login(client, username, recovery_code=old.recovery_codes[0])).status_code == 401
    stale = totp.current_code(old.secret)
    if stale != totp.current_code(new.secret):
        assert (await login(client, username, totp=stale)).status_code == 401
    assert (await login(client, username, totp=totp.current_code(new.secret))).status_code == 200


async def test_an_account_without_a_second_factor_signs_in_with_its_password(client, enrolled):
    username, _, _ = await enrolled(with_totp=False)
    assert (await login(client, username)).status_code == 200


@pytest.fixture
async def production_client(settings: Settings, migrated):
    strict = settings.model_copy(
        update={"environment": "production", "rate_limit_second_factor_per_min": 3}
    )
    app = create_app(strict, process_name="ansim-tests-2fa")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_in_production_an_operator_without_a_second_factor_is_told_to_enrol(
    production_client, client, enrolled
):
    username, _, _ = await enrolled("operator", with_totp=False)
    r = await login(production_client, username)
    assert r.status_code == 403 and r.json()["error"] == "SecondFactorNotEnrolled"
    assert "ansim staff enrol-totp" in r.json()["detail"]
    # A wrong password still says only that.
    bad = await production_client.post(
        "/v1/auth/login", json={"username": username, "password": "nope"}
    )
    assert bad.status_code == 401 and bad.json()["error"] == "Unauthorized"
    # Development and test keep the demo usable.
    assert (await login(client, username)).status_code == 200
    # A dispatcher may go without one, even in production.
    dispatcher, _, _ = await enrolled("dispatcher", with_totp=False)
    assert (await login(production_client, dispatcher)).status_code == 200
    enrolled_operator, _, enrolment = await enrolled("operator")
    ok = await login(production_client, enrolled_operator, totp=totp.current_code(enrolment.secret))
    assert ok.status_code == 200 and ok.json()["role"] == "operator"


@pytest.mark.usefixtures("limit_clock_mid_minute")  # all the tries in one minute
async def test_wrong_codes_are_limited_per_account(production_client, enrolled):
    username, _, enrolment = await enrolled()
    other, _, other_enrolment = await enrolled()
    code = totp.current_code(enrolment.secret)
    wrong = f"{(int(code) + 500_000) % 1_000_000:06d}"
    codes = [(await login(production_client, username, totp=wrong)).status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    # Over the limit even the right code (or a recovery code) is refused until the minute ends.
    locked = await login(production_client, username, totp=code)
    assert locked.status_code == 429 and locked.json()["error"] == "TooManyRequests"
    assert 1 <= int(locked.headers["retry-after"]) <= 60
    recovery = await login(production_client, username, recovery_code=enrolment.recovery_codes[0])
    assert recovery.status_code == 429
    # Another account is not held back.
    ok = await login(production_client, other, totp=totp.current_code(other_enrolment.secret))
    assert ok.status_code == 200


async def test_a_malformed_code_is_a_clear_422(client, enrolled):
    username, _, _ = await enrolled()
    for bad in ("12345", "1234567", "abcdef", "12 456"):
        r = await login(client, username, totp=bad)
        assert r.status_code == 422 and r.json()["error"] == "ValidationError", bad
