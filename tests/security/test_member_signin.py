"""Her app's sign-in by a one-time code (app/security/member_signin.py): texted through the
notification queue, never stored, single-use, short-lived, guesses limited, and the answers never
say whether a number is registered."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from app.notifications.service import Claimed, render
from app.security.member_signin import code_for, normalize_phone
from tests.test_cli import ansim


async def phone_of(pool, member) -> str:
    phone: str = await pool.fetchval("SELECT phone FROM member WHERE id = $1", member.id)
    return phone


def domestic(phone: str) -> str:
    """+821012345678 as she would type it: 010-1234-5678."""
    local = "0" + phone[3:]
    return f"{local[:3]}-{local[3:7]}-{local[7:]}"


async def ask(client, phone: str):
    return await client.post("/v1/auth/member/code", json={"phone": phone})


async def exchange(client, phone: str, code: str):
    return await client.post("/v1/auth/member/token", json={"phone": phone, "code": code})


async def the_texted_code(pool, settings, member) -> str:
    """The code as the gateway gets it: the queued row rendered by the sender's own ``render``."""
    row = await pool.fetchrow(
        "SELECT * FROM notification WHERE target = $1 ORDER BY created_at DESC LIMIT 1",
        f"member:{member.id}",
    )
    assert row is not None and row["channel"] == "sms" and row["signin_code_id"] is not None
    claimed = Claimed(
        row["id"], None, row["channel"], row["target"], row["message"], row["dedupe_key"], 1,
        row["next_attempt_at"],
    )  # fmt: skip
    text = render(settings, claimed)["text"]
    code = code_for(settings.secret_key, row["signin_code_id"])
    assert code in text
    return code


def test_numbers_are_one_however_they_are_written():
    assert normalize_phone("+82 10-1234-5678") == normalize_phone("010 1234 5678") == "01012345678"
    assert normalize_phone("+821012345678") != normalize_phone("+821012345679")


async def test_a_texted_code_signs_in_once_and_is_stored_nowhere(
    client, pool, settings, make_member
):
    member = await make_member()
    phone = await phone_of(pool, member)
    r = await ask(client, domestic(phone))
    assert r.status_code == 202
    assert r.json() == {"sent": True, "expires_in_s": 600, "code_digits": 6}
    code = await the_texted_code(pool, settings, member)
    # Neither the code table nor the queued SMS holds the code.
    for table in ("member_signin_code", "notification"):
        rows = await pool.fetch(f"SELECT * FROM {table}")
        assert rows and all(code not in json.dumps(dict(r), default=str) for r in rows), table

    signed = await exchange(client, phone, code)
    assert signed.status_code == 200, signed.text
    token = signed.json()["token"]
    assert signed.json()["member_id"] == str(member.id) and token.startswith("am_")
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200

    again = await exchange(client, phone, code)
    assert again.status_code == 401 and again.json()["error"] == "SignInCodeInvalid"


async def test_an_unknown_number_gets_the_same_answers(client, pool, make_member):
    member = await make_member()
    known = await ask(client, await phone_of(pool, member))
    unknown = await ask(client, "+821099998888")
    assert (unknown.status_code, unknown.json()) == (known.status_code, known.json())
    assert await pool.fetchval("SELECT count(*) FROM notification") == 1
    wrong_known = await exchange(client, await phone_of(pool, member), "000000")
    wrong_unknown = await exchange(client, "+821099998888", "000000")
    assert wrong_known.status_code == wrong_unknown.status_code == 401
    assert wrong_known.json() == wrong_unknown.json()


async def test_an_expired_code_is_refused(client, pool, settings, make_member):
    member = await make_member()
    phone = await phone_of(pool, member)
    await ask(client, phone)
    code = await the_texted_code(pool, settings, member)
    await pool.execute("UPDATE member_signin_code SET expires_at = now() - interval '1 second'")
    r = await exchange(client, phone, code)
    assert r.status_code == 401 and r.json()["error"] == "SignInCodeInvalid"


async def test_a_new_code_voids_the_older_one(client, pool, settings, make_member):
    member = await make_member()
    phone = await phone_of(pool, member)
    await ask(client, phone)
    first = await the_texted_code(pool, settings, member)
    await asyncio.sleep(0.01)
    await ask(client, phone)
    second = await the_texted_code(pool, settings, member)
    assert first != second
    assert (await exchange(client, phone, first)).status_code == 401
    assert (await exchange(client, phone, second)).status_code == 200


async def test_wrong_codes_void_the_code_and_lock_the_number(
    client, pool, redis, settings, make_member
):
    member = await make_member()
    phone = await phone_of(pool, member)
    await ask(client, phone)
    code = await the_texted_code(pool, settings, member)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(settings.member_code_max_attempts):
        r = await exchange(client, phone, wrong)
        assert r.status_code == 401
    locked = await exchange(client, phone, code)
    assert locked.status_code == 429 and locked.json()["error"] == "TooManyRequests"
    assert int(locked.headers["Retry-After"]) > 0
    # An unknown number is locked the same way: the 429 says nothing about registration.
    for _ in range(settings.member_code_max_attempts):
        assert (await exchange(client, "+821077776666", "123456")).status_code == 401
    assert (await exchange(client, "+821077776666", "123456")).status_code == 429
    # Without Redis's count (lost, flushed) the code itself stays void: the right one fails.
    await redis.flushdb()
    assert await pool.fetchval("SELECT attempts FROM member_signin_code") == 5
    assert (await exchange(client, phone, code)).status_code == 401


async def test_codes_asked_for_are_limited_per_number_and_per_address(
    client, app, pool, make_member, monkeypatch
):
    member = await make_member()
    phone = await phone_of(pool, member)
    per_phone = app.state.settings.member_code_per_phone_per_hour
    for number in (phone, "+821055554444"):  # registered or not, alike
        for _ in range(per_phone):
            assert (await ask(client, number)).status_code == 202
        over = await ask(client, number)
        assert over.status_code == 429 and int(over.headers["Retry-After"]) > 0
    assert await pool.fetchval("SELECT count(*) FROM notification") == per_phone
    # This address asked 2 * (per_phone + 1) times: two more, then it is refused, any number.
    monkeypatch.setattr(app.state.settings, "member_code_per_ip_per_hour", 2 * per_phone + 4)
    answers = [(await ask(client, f"+82103333{n:04d}")).status_code for n in range(4)]
    assert answers == [202, 202, 429, 429]


async def test_two_exchanges_racing_with_one_code_give_one_token(
    client, pool, settings, make_member
):
    member = await make_member()
    phone = await phone_of(pool, member)
    await ask(client, phone)
    code = await the_texted_code(pool, settings, member)
    answers = await asyncio.gather(*(exchange(client, phone, code) for _ in range(4)))
    assert sorted(r.status_code for r in answers) == [200, 401, 401, 401]
    assert (
        await pool.fetchval("SELECT count(*) FROM member_token WHERE member_id = $1", member.id)
        == 2
    )


async def test_malformed_requests_are_clear_422s(client):
    for path, body in [
        ("/v1/auth/member/code", {"phone": "call me"}),
        ("/v1/auth/member/code", {"phone": "+821012345678", "extra": 1}),
        ("/v1/auth/member/token", {"phone": "+821012345678", "code": "12345"}),
        ("/v1/auth/member/token", {"phone": "+821012345678", "code": "abcdef"}),
    ]:
        r = await client.post(path, json=body)
        assert r.status_code == 422 and r.json()["error"] == "ValidationError", (path, body)


@pytest.mark.usefixtures("migrated")
async def test_an_operator_reads_her_a_code_from_the_cli(client, pool, make_member):
    member = await make_member()
    phone = await phone_of(pool, member)
    out = json.loads(ansim("members", "code", "--phone", domestic(phone), "--json").stdout)
    assert out["member_id"] == str(member.id) and len(out["code"]) == 6
    assert await pool.fetchval("SELECT issued_by FROM member_signin_code") == "operator"
    assert await pool.fetchval("SELECT count(*) FROM notification") == 0  # read out, not texted
    assert (await exchange(client, phone, out["code"])).status_code == 200
    missing = ansim("members", "code", "--phone", "+821000000001", check=False)
    assert missing.returncode == 1 and "no member" in missing.stderr
    assert uuid.UUID(out["member_id"]) == member.id
