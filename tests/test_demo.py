"""The demo city (`ansim demo`): Seoul's 25 real districts from the shipped file, synthetic places
inside them, a dispatcher per district. Seeded once for the module (argon2 makes each seed take
seconds), on a database that an older demo had seeded with its four rectangles."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import pytest

from app.demo import LEGACY_DISPATCHERS, LEGACY_DISTRICTS, PASSWORD, seed_demo
from app.geo.shipped import SEOUL_DISTRICTS
from tests.conftest import _TABLES

pytestmark = pytest.mark.keep_db  # the module fixture seeds once; the tests only read it

# 역삼역, 830 m inside 강남구. (Gangnam station, 37.4979 127.0276, is not: the border runs along
# Gangnam-daero through the station, and that point lies 4 m inside 서초구 in the source data too.)
YEOKSAM_STATION = (37.5006, 127.0364)
GANGNAM_STATION = (37.4979, 127.0276)
GWANGHWAMUN = (37.5759, 126.9769)  # 광화문, 종로구


async def _counts(pool: asyncpg.Pool) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT (SELECT count(*) FROM district) d, (SELECT count(*) FROM safe_place) p,"
        " (SELECT count(*) FROM safe_place WHERE active) active,"
        " (SELECT count(*) FROM staff) s, (SELECT count(*) FROM device) dev"
    )


@pytest.fixture(scope="module")
async def demo(pool: asyncpg.Pool, sessionmaker: Any, redis: Any) -> dict[str, Any]:
    await pool.execute(f"TRUNCATE {_TABLES} CASCADE")
    await redis.flushdb()
    # What `ansim demo` seeded before: a rectangle, its dispatcher, a store in it.
    await pool.execute(
        "INSERT INTO district (id, code, name, boundary) VALUES (gen_random_uuid(), 'DEMO-NW',"
        " 'Demo North-West', ST_Multi(ST_MakeEnvelope(126.9, 37.54, 127.0, 37.6, 4326)))"
    )
    await pool.execute(
        "INSERT INTO staff (id, username, name, role, password_hash)"
        " VALUES (gen_random_uuid(), 'dispatcher-nw', 'Dispatcher NW', 'dispatcher', 'x')"
    )
    await pool.execute(
        "INSERT INTO safe_place (id, source, external_ref, kind, name, geog) VALUES"
        " (gen_random_uuid(), 'demo', 'store-1', 'convenience_store', 'Demo Mart #1',"
        " ST_SetSRID(ST_MakePoint(126.95, 37.55), 4326)::geography)"
    )
    async with sessionmaker() as session, session.begin():
        first: dict[str, Any] = await seed_demo(session)
    counts = await _counts(pool)
    async with sessionmaker() as session, session.begin():
        second: dict[str, Any] = await seed_demo(session)
    return {"first": first, "creds": second, "counts": (counts, await _counts(pool))}


async def test_the_demo_seeds_the_25_districts_of_the_shipped_file(pool, demo) -> None:
    shipped = json.loads(SEOUL_DISTRICTS.read_text(encoding="utf-8"))["features"]
    expected = sorted(
        (f["properties"]["SIG_CD"], f["properties"]["SIG_KOR_NM"], f["properties"]["SIG_ENG_NM"])
        for f in shipped
    )
    rows = await pool.fetch(
        "SELECT code, name, name_en, ST_IsValid(boundary) AS valid FROM district ORDER BY code"
    )
    assert [(r["code"], r["name"], r["name_en"]) for r in rows] == expected
    assert len(rows) == 25 and all(r["valid"] for r in rows)
    assert ("11680", "강남구", "Gangnam-gu") in expected and (
        "11110",
        "종로구",
        "Jongno-gu",
    ) in expected
    # The real districts tile the city: no overlaps between neighbours (a shared border once).
    overlap = await pool.fetchval(
        "SELECT sum(ST_Area(boundary::geography)) - ST_Area(ST_Union(boundary)::geography)"
        " FROM district"
    )
    assert abs(overlap) < 1.0  # m²


async def test_running_it_twice_changes_nothing_and_retires_the_old_rectangles(pool, demo):
    before, after = demo["counts"]
    assert before == after
    assert after["d"] == 25 and after["active"] == 25 * 6
    assert demo["first"]["device"] == demo["creds"]["device"]
    assert not await pool.fetchval(
        "SELECT count(*) FROM district WHERE code = ANY($1::text[])", list(LEGACY_DISTRICTS)
    )
    retired = await pool.fetch(
        "SELECT active FROM staff WHERE username = ANY($1::text[])", list(LEGACY_DISPATCHERS)
    )
    assert [r["active"] for r in retired] == [False]
    old_store = await pool.fetchval(
        "SELECT active FROM safe_place WHERE source = 'demo' AND external_ref = 'store-1'"
    )
    assert old_store is False


async def test_every_synthetic_place_lies_inside_its_district_and_says_it_is_synthetic(
    pool, demo
) -> None:
    rows = await pool.fetch(
        "SELECT p.name, p.address, p.kind, p.is_safety_house, d.code,"
        "       ST_Contains(d.boundary, p.geog::geometry) AS inside"
        " FROM safe_place p JOIN district d ON d.code = split_part(p.external_ref, '-', 1)"
        " WHERE p.source = 'demo' AND p.active"
    )
    assert len(rows) == 150
    assert all(r["inside"] for r in rows), [r["name"] for r in rows if not r["inside"]]
    assert all("(synthetic)" in r["name"] and "(synthetic)" in r["address"] for r in rows)
    per_district: dict[str, list[str]] = {}
    for r in rows:
        per_district.setdefault(r["code"], []).append(r["kind"])
    assert len(per_district) == 25
    for kinds in per_district.values():
        assert sorted(kinds) == ["convenience_store"] * 4 + ["police_box", "police_station"]
    assert sum(r["is_safety_house"] for r in rows) == 50


async def test_a_dispatcher_per_real_district_with_the_demo_password(client, demo) -> None:
    dispatchers = {d["username"]: d for d in demo["creds"]["dispatchers"]}
    assert len(dispatchers) == 25
    gangnam = dispatchers["dispatcher-gangnam"]
    assert (gangnam["district"], gangnam["district_name"]) == ("11680", "강남구")
    assert dispatchers["dispatcher-jongno"]["district"] == "11110"
    assert {"dispatcher-jung", "dispatcher-jungnang", "dispatcher-yeongdeungpo"} <= set(dispatchers)
    r = await client.post(
        "/v1/auth/login", json={"username": "dispatcher-gangnam", "password": PASSWORD}
    )
    assert r.status_code == 200 and r.json()["role"] == "dispatcher"
    supervisor = await client.post(
        "/v1/auth/login", json={"username": "supervisor", "password": PASSWORD}
    )
    assert supervisor.status_code == 200
    # The panic button sits in a Safety House in 강남구.
    assert "Gangnam-gu" in demo["creds"]["device"]["place"]


async def test_gangnam_station_lies_on_the_seocho_side_of_the_border(pool, demo) -> None:
    code = await pool.fetchval(
        "SELECT code FROM district WHERE ST_Covers(boundary, ST_SetSRID(ST_MakePoint($2, $1),"
        " 4326))",
        *GANGNAM_STATION,
    )
    assert code == "11650"  # 서초구: one district for a border point, the source's


async def _sos(client: Any, member: Any, at: tuple[float, float]) -> dict[str, Any]:
    r = await client.post(
        "/v1/alerts",
        headers=member.headers,
        json={
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": {"lat": at[0], "lon": at[1], "accuracy_m": 10},
        },
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_gangnams_dispatcher_sees_an_sos_at_gangnam_station_and_not_one_in_jongno(
    client, demo, make_member
) -> None:
    in_gangnam = await _sos(client, await make_member(), YEOKSAM_STATION)
    in_jongno = await _sos(client, await make_member(), GWANGHWAMUN)
    assert in_gangnam["district"]["code"] == "11680"
    assert in_jongno["district"]["code"] == "11110"

    async def seen_by(username: str) -> set[str]:
        login = await client.post(
            "/v1/auth/login", json={"username": username, "password": PASSWORD}
        )
        token = login.json()["token"]
        r = await client.get("/v1/console/incidents", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
        return {i["id"] for i in r.json()["incidents"]}

    ids = {in_gangnam["incident_id"], in_jongno["incident_id"]}
    assert await seen_by("dispatcher-gangnam") & ids == {in_gangnam["incident_id"]}
    assert await seen_by("dispatcher-jongno") & ids == {in_jongno["incident_id"]}
    assert await seen_by("supervisor") >= ids


async def test_the_nearest_safe_places_of_a_real_point_are_inside_seoul(client, pool, demo) -> None:
    member = demo["creds"]["member"]
    lat, lon = YEOKSAM_STATION
    r = await client.get(
        f"/v1/safe-places/nearest?lat={lat}&lon={lon}&limit=5",
        headers={"Authorization": f"Bearer {member['token']}"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["district"]["code"] == "11680" and len(body["places"]) == 5
    for place in body["places"]:
        assert "(synthetic)" in place["name"]
        inside = await pool.fetchval(
            "SELECT bool_or(ST_Covers(boundary, ST_SetSRID(ST_MakePoint($1, $2), 4326)))"
            " FROM district",
            place["lon"],
            place["lat"],
        )
        assert inside, place
    # Nearest first, and within a few km of the station (not somewhere else in the city).
    distances = [p["distance_m"] for p in body["places"]]
    assert distances == sorted(distances) and distances[0] < 3000
