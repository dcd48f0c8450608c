"""The operator CLI, run as a real process against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from app.security.tokens import hash_token


def ansim(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert not check or done.returncode == 0, done.stderr
    return done


async def test_members_create_prints_a_working_token_once(client, pool):
    out = ansim(
        "members",
        "create",
        "--phone",
        "+821012345678",
        "--name",
        "Jiyoung",
        "--pin",
        "1234",
        "--duress-pin",
        "9999",
        "--json",
    )
    created = json.loads(out.stdout)
    assert set(created) == {"member_id", "token"}
    stored = await pool.fetchval("SELECT token_hash FROM member_token")
    assert stored == hash_token(created["token"]) and created["token"].encode() not in stored
    r = await client.post(
        "/v1/alerts",
        json={"client_alert_id": str(uuid.uuid4())},
        headers={"Authorization": f"Bearer {created['token']}"},
    )
    assert r.status_code == 201


async def test_members_create_refuses_a_duplicate_phone_and_equal_pins(pool):
    ansim("members", "create", "--phone", "+821099990000", "--name", "A", "--pin", "1111")
    dup = ansim(
        "members", "create", "--phone", "+821099990000", "--name", "B", "--pin", "2", check=False
    )
    assert dup.returncode == 1 and "exists" in dup.stderr
    same = ansim(
        "members",
        "create",
        "--phone",
        "+821099990001",
        "--name",
        "C",
        "--pin",
        "5",
        "--duress-pin",
        "5",
        check=False,
    )
    assert same.returncode == 1 and "differ" in same.stderr
    assert await pool.fetchval("SELECT count(*) FROM member") == 1


async def test_dispatchers_create_scopes_to_districts(make_district, pool, client):
    await make_district("11680", "강남구", 127.0, 37.45, 127.1, 37.53)
    out = ansim(
        "dispatchers",
        "create",
        "--username",
        "kim",
        "--name",
        "Kim",
        "--password",
        "s3cret-pass",
        "--district",
        "11680",
        "--json",
    )
    created = json.loads(out.stdout)
    codes = await pool.fetch(
        "SELECT d.code FROM staff_district sd JOIN district d ON d.id = sd.district_id"
    )
    assert [r["code"] for r in codes] == ["11680"]
    login = await client.post("/v1/auth/login", json={"username": "kim", "password": "s3cret-pass"})
    assert login.status_code == 200 and login.json()["role"] == "dispatcher"
    assert created["token"] != login.json()["token"]
    bad = ansim(
        "dispatchers",
        "create",
        "--username",
        "lee",
        "--name",
        "Lee",
        "--password",
        "x",
        "--district",
        "99999",
        check=False,
    )
    assert bad.returncode == 1 and "unknown district" in bad.stderr


@pytest.mark.parametrize("password", ["wrong", "PW", "pw "])
async def test_login_refuses_a_wrong_password_with_the_stable_body(client, make_staff, password):
    staff = await make_staff()
    username = f"dispatcher-{staff.id.hex[:8]}"  # how make_staff names them; its password is pw
    right = await client.post("/v1/auth/login", json={"username": username, "password": "pw"})
    assert right.status_code == 200, right.text
    wrong = await client.post("/v1/auth/login", json={"username": username, "password": password})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "Unauthorized", "detail": "wrong username or password"}
    assert "token" not in wrong.text
    # A real user's wrong password reads like an unknown user: nothing tells the two apart.
    nobody = await client.post("/v1/auth/login", json={"username": "nobody", "password": "pw"})
    assert (nobody.status_code, nobody.json()) == (wrong.status_code, wrong.json())


async def test_login_refuses_an_empty_password_as_bad_input(client, make_staff):
    staff = await make_staff()
    username = f"dispatcher-{staff.id.hex[:8]}"
    r = await client.post("/v1/auth/login", json={"username": username, "password": ""})
    assert r.status_code == 422 and {"error", "detail"} <= set(r.json())


async def test_demo_is_idempotent_and_its_credentials_work(client, pool, tmp_path):
    first = json.loads(ansim("demo", "--out", str(tmp_path / "c.json")).stdout)
    counts = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM safe_place) p, (SELECT count(*) FROM district) d,"
        " (SELECT count(*) FROM staff) s, (SELECT count(*) FROM device) dev"
    )
    second = json.loads(ansim("demo", "--out", str(tmp_path / "c.json")).stdout)
    again = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM safe_place) p, (SELECT count(*) FROM district) d,"
        " (SELECT count(*) FROM staff) s, (SELECT count(*) FROM device) dev"
    )
    assert counts == again and counts["p"] == 150 and counts["d"] == 25
    assert first["device"] == second["device"]
    r = await client.post(
        "/v1/alerts",
        json={"location": {"lat": 37.5006, "lon": 127.0364}},  # Yeoksam station, 강남구
        headers={"Authorization": f"Bearer {second['member']['token']}"},
    )
    assert r.status_code == 201 and r.json()["district"]["code"] == "11680"
    assert len(r.json()["nearest_safe_places"]) == 5
    # The demo operator has a second factor; the printed secret signs it in.
    import pyotp

    operator = second["operator"]
    assert operator["totp_secret"] == first["operator"]["totp_secret"]
    assert "recovery_codes" in first["operator"] and "recovery_codes" not in operator
    r = await client.post(
        "/v1/auth/login",
        json={
            "username": operator["username"],
            "password": operator["password"],
            "totp": pyotp.TOTP(operator["totp_secret"]).now(),
        },
    )
    assert r.status_code == 200 and r.json()["role"] == "operator"


async def test_operators_are_enrolled_with_totp_and_recovery_codes_shown_once(client, pool):
    import pyotp

    out = ansim(
        "operators", "create", "--username", "ops", "--name", "Ops", "--password", "pw", "--json"
    )
    created = json.loads(out.stdout)
    assert "shown this once" in out.stderr
    assert created["otpauth_uri"].startswith("otpauth://totp/Ansim:ops?")
    assert f"secret={created['totp_secret']}" in created["otpauth_uri"]
    assert len(created["recovery_codes"]) == 10
    stored = await pool.fetchrow("SELECT totp_secret FROM staff WHERE username = 'ops'")
    assert created["totp_secret"] not in stored["totp_secret"]
    hashes = " ".join(r["code_hash"] for r in await pool.fetch("SELECT * FROM staff_recovery_code"))
    assert not any(c in hashes or c.replace("-", "") in hashes for c in created["recovery_codes"])
    alone = await client.post("/v1/auth/login", json={"username": "ops", "password": "pw"})
    assert alone.status_code == 401 and alone.json()["error"] == "SecondFactorRequired"
    code = pyotp.TOTP(created["totp_secret"]).now()
    ok = await client.post(
        "/v1/auth/login", json={"username": "ops", "password": "pw", "totp": code}
    )
    assert ok.status_code == 200 and ok.json()["role"] == "operator"

    # Enrolling again voids the old recovery codes.
    again = json.loads(ansim("staff", "enrol-totp", "--username", "ops", "--json").stdout)
    assert again["totp_secret"] != created["totp_secret"]
    old = await client.post(
        "/v1/auth/login",
        json={"username": "ops", "password": "pw", "recovery_code": created["recovery_codes"][0]},
    )
    assert old.status_code == 401 and old.json()["error"] == "SecondFactorInvalid"
    assert ansim("staff", "enrol-totp", "--username", "nobody", check=False).returncode == 1


async def test_dispatchers_choose_a_second_factor_with_totp(make_district, client):
    await make_district("11680", "강남구", 127.0, 37.45, 127.1, 37.53)
    common = ["--name", "N", "--password", "pw", "--district", "11680", "--json"]
    plain = json.loads(ansim("dispatchers", "create", "--username", "d1", *common).stdout)
    assert "otpauth_uri" not in plain
    with_code = json.loads(
        ansim("dispatchers", "create", "--username", "d2", "--totp", *common).stdout
    )
    assert len(with_code["recovery_codes"]) == 10
    for username, error in (("d1", None), ("d2", "SecondFactorRequired")):
        r = await client.post("/v1/auth/login", json={"username": username, "password": "pw"})
        assert (r.json().get("error") if r.status_code != 200 else None) == error
