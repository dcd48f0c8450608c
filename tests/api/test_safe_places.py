"""GET /v1/safe-places/nearest: any authenticated client, strict query, geodesic order."""

from __future__ import annotations

import pytest

URL = "/v1/safe-places/nearest"


@pytest.fixture
async def member(make_member):
    return await make_member()


async def test_nearest_needs_a_valid_token(client):
    r = await client.get(URL, params={"lat": 37.5, "lon": 127.0})
    assert r.status_code == 401
    assert r.json()["error"] == "Unauthorized" and r.json()["detail"]
    r = await client.get(
        URL, params={"lat": 37.5, "lon": 127.0}, headers={"Authorization": "Bearer nope"}
    )
    assert r.status_code == 401
    assert r.json()["error"] == "Unauthorized"


async def test_nearest_returns_places_by_distance_with_the_district(
    client, member, make_place, make_district
):
    await make_district("11140", "중구", 126.96, 37.54, 127.02, 37.57)
    far = await make_place("far", 37.5600, 126.9800, phone="02-2", address="b")
    near = await make_place("near", 37.5550, 126.9800, phone="02-1", address="a")
    r = await client.get(URL, params={"lat": 37.5540, "lon": 126.98}, headers=member.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["district"] == {"code": "11140", "name": "중구"}
    assert [p["id"] for p in body["places"]] == [str(near), str(far)]
    first = body["places"][0]
    assert set(first) == {
        "id", "name", "kind", "lat", "lon", "distance_m", "phone", "address",
        "is_safety_house", "open_now",
    }  # fmt: skip
    assert first["name"] == "near" and first["phone"] == "02-1" and first["open_now"] is True
    # 0.001° of latitude at 37.55°N is 110.99 m on the WGS84 spheroid.
    assert first["distance_m"] == pytest.approx(110.99, abs=0.1)
    distances = [p["distance_m"] for p in body["places"]]
    assert distances == sorted(distances)


async def test_staff_tokens_work_too_and_outside_every_district_is_null(
    client, make_staff, make_place
):
    staff = await make_staff("dispatcher")
    await make_place("store", 37.5, 127.0)
    r = await client.get(URL, params={"lat": 37.5, "lon": 127.0}, headers=staff.headers)
    assert r.status_code == 200, r.text
    assert r.json()["district"] is None
    assert len(r.json()["places"]) == 1


async def test_kind_filter_accepts_repeats_and_commas_and_limit_caps(client, member, make_place):
    await make_place("store", 37.5000, 127.0, kind="convenience_store")
    await make_place("box", 37.5010, 127.0, kind="police_box")
    await make_place("station", 37.5020, 127.0, kind="police_station")
    await make_place("other", 37.5030, 127.0, kind="other")
    h = member.headers
    base = {"lat": 37.5, "lon": 127.0}
    r = await client.get(URL, params={**base, "kind": ["police_box", "police_station"]}, headers=h)
    assert [p["name"] for p in r.json()["places"]] == ["box", "station"]
    r = await client.get(URL, params={**base, "kind": "police_station,other"}, headers=h)
    assert [p["name"] for p in r.json()["places"]] == ["station", "other"]
    r = await client.get(URL, params={**base, "limit": 2}, headers=h)
    assert [p["name"] for p in r.json()["places"]] == ["store", "box"]


async def test_open_now_filter_drops_closed_places(client, member, make_place):
    await make_place("unknown hours", 37.5000, 127.0, open_24h=False)
    await make_place("24h", 37.5010, 127.0, open_24h=True)
    r = await client.get(
        URL, params={"lat": 37.5, "lon": 127.0, "open_now": "true"}, headers=member.headers
    )
    assert [p["name"] for p in r.json()["places"]] == ["24h"]


@pytest.mark.parametrize(
    "params",
    [
        {"lon": 127.0},
        {"lat": 37.5},
        {"lat": 91, "lon": 127.0},
        {"lat": -90.5, "lon": 127.0},
        {"lat": 37.5, "lon": 180.01},
        {"lat": "nan", "lon": 127.0},
        {"lat": 37.5, "lon": "inf"},
        {"lat": "north", "lon": 127.0},
        {"lat": 37.5, "lon": 127.0, "limit": 0},
        {"lat": 37.5, "lon": 127.0, "limit": 51},
        {"lat": 37.5, "lon": 127.0, "limit": "five"},
        {"lat": 37.5, "lon": 127.0, "kind": "spaceship"},
        {"lat": 37.5, "lon": 127.0, "kind": "police_box,spaceship"},
        {"lat": 37.5, "lon": 127.0, "open_now": "perhaps"},
        {"lat": 37.5, "lon": 127.0, "radius": 5},
    ],
)
async def test_invalid_queries_get_422_with_the_stable_error_body(client, member, params):
    r = await client.get(URL, params=params, headers=member.headers)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "ValidationError"
    assert body["detail"]
    assert body["fields"]


async def test_unknown_kind_names_the_valid_kinds(client, member):
    r = await client.get(
        URL, params={"lat": 37.5, "lon": 127.0, "kind": "spaceship"}, headers=member.headers
    )
    assert "spaceship" in r.json()["detail"] and "police_box" in r.json()["detail"]
