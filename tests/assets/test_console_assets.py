"""The cameras and bells around an incident: exact against a brute force on the real files,
scoped like the incident detail, following her latest position, and logged as a read of it."""

from __future__ import annotations

import random
import uuid

import pytest
from pyproj import Geod

from app.assets import importer
from app.assets.nearby import assets_near
from tests.conftest import SEOUL, needs_seoul_data

pytestmark = needs_seoul_data

GEOD = Geod(ellps="WGS84")
CCTV = SEOUL / "seoul_public_cctv_district_standard_2019_2020.csv"
BELLS = SEOUL / "seoul_safety_emergency_bells.csv"
#: 장안근린공원 (동대문구): bells and cameras around it in the real files.
JANGAN = {"lat": 37.5771, "lon": 127.0709, "accuracy_m": 12.0}
#: 신림동 (관악구), 14 km away: where her trail goes.
SILLIM = {"lat": 37.4759, "lon": 126.9407, "accuracy_m": 9.0}


async def _import_both(pool) -> None:
    async with pool.acquire() as conn:
        for path, kind in ((CCTV, "cctv"), (BELLS, "bell")):
            await importer.import_assets(conn, data=path.read_bytes(), kind=kind, source=kind)


async def _every_asset(pool) -> tuple[list[str], list[str], list[float], list[float]]:
    rows = await pool.fetch(
        "SELECT id::text, kind, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon"
        " FROM public_asset WHERE active"
    )
    return ([r["id"] for r in rows], [r["kind"] for r in rows], [r["lat"] for r in rows],
            [r["lon"] for r in rows])  # fmt: skip


def _brute_force(every, lat: float, lon: float, radius: float, limit: int):
    """Karney's geodesics (pyproj) to every asset: the nearest ``limit`` of each kind within
    ``radius`` by (distance, id), and how many are within it."""
    ids, kinds, lats, lons = every
    _, _, dist = GEOD.inv([lon] * len(ids), [lat] * len(ids), lons, lats)
    out: dict[str, list[tuple[float, str]]] = {"cctv": [], "bell": []}
    for i, kind, d in zip(ids, kinds, dist, strict=True):
        if d <= radius:
            out[kind].append((d, i))
    return {k: sorted(v)[:limit] for k, v in out.items()}, {k: len(v) for k, v in out.items()}


async def test_the_nearest_within_the_radius_match_a_brute_force_over_every_asset(pool):
    await _import_both(pool)
    rng = random.Random(22)
    points = [(rng.uniform(37.45, 37.68), rng.uniform(126.82, 127.15)) for _ in range(60)]
    points.append((JANGAN["lat"], JANGAN["lon"]))
    nonempty = 0
    every = await _every_asset(pool)
    assert len(every[0]) > 35000
    for lat, lon in points:
        found = await assets_near(pool, lat=lat, lon=lon, radius_m=400.0, limit=10)
        expected, within = _brute_force(every, lat, lon, 400.0, 10)
        for kind, got in (("cctv", found.cameras), ("bell", found.bells)):
            assert [a.id for a in got] == [i for _, i in expected[kind]], (lat, lon, kind)
            for a, (d, _) in zip(got, expected[kind], strict=True):
                assert a.distance_m == pytest.approx(d, abs=0.01)
        assert (found.cameras_within, found.bells_within) == (within["cctv"], within["bell"])
        nonempty += bool(found.cameras) and bool(found.bells)
    assert nonempty >= 10  # the test saw both kinds at many points, not just empty answers


async def _sos(client, member, where) -> str:
    r = await client.post(
        "/v1/alerts",
        json={"client_alert_id": str(uuid.uuid4()), "trigger": "button", "location": where},
        headers=member.headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["incident_id"])


async def _reads(pool, incident_id: str) -> list[tuple[list[uuid.UUID], str]]:
    rows = await pool.fetch(
        "SELECT staff_ids, reason FROM location_access WHERE incident_id = $1 ORDER BY id",
        uuid.UUID(incident_id),
    )
    return [(list(r["staff_ids"]), r["reason"]) for r in rows]


async def test_the_list_follows_her_trail_and_each_read_is_logged(
    client, pool, make_district, make_staff, make_member
):
    await _import_both(pool)
    a = await make_district("11230", "동대문구", 127.00, 37.55, 127.10, 37.60)
    dispatcher = await make_staff("dispatcher", district_ids=(a,))
    member = await make_member()
    incident = await _sos(client, member, JANGAN)
    url = f"/v1/console/incidents/{incident}/assets"

    r = await client.get(url, headers=dispatcher.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["position"] == JANGAN
    assert body["radius_m"] == 300.0  # ANSIM_ASSETS_RADIUS_M
    assert body["bells"] and body["cameras"]
    assert all(b["office"] and b["phone"] for b in body["bells"])
    assert all(c["cameras"] >= 1 for c in body["cameras"])
    distances = [x["distance_m"] for x in body["cameras"]]
    assert distances == sorted(distances) and distances[-1] <= 300.0
    assert len(body["cameras"]) <= 10 and body["cameras_within"] >= len(body["cameras"])
    assert await _reads(pool, incident) == [([dispatcher.id], "console_assets")]

    # Her trail moves to 신림동: the list is read around her latest position.
    moved = await client.post(
        f"/v1/alerts/{incident}/locations", json={"points": [SILLIM]}, headers=member.headers
    )
    assert moved.status_code == 202, moved.text
    after = (await client.get(url, headers=dispatcher.headers)).json()
    assert after["position"] == SILLIM
    assert {c["id"] for c in after["cameras"]}.isdisjoint(c["id"] for c in body["cameras"])
    assert all(c["office"] == "관악구청" for c in after["cameras"])
    for c in after["cameras"]:
        _, _, d = GEOD.inv(SILLIM["lon"], SILLIM["lat"], c["lon"], c["lat"])
        assert c["distance_m"] == pytest.approx(d, abs=0.05)
    assert [reason for _, reason in await _reads(pool, incident)] == ["console_assets"] * 2

    # A wider radius and a limit; an inactive site is not listed.
    wide = (await client.get(f"{url}?radius_m=1000&limit=3", headers=dispatcher.headers)).json()
    assert len(wide["cameras"]) == 3 and wide["cameras_within"] > after["cameras_within"]
    await pool.execute("UPDATE public_asset SET active = false WHERE id = $1::uuid",
                       wide["cameras"][0]["id"])  # fmt: skip
    without = (await client.get(f"{url}?radius_m=1000&limit=3", headers=dispatcher.headers)).json()
    assert wide["cameras"][0]["id"] not in {c["id"] for c in without["cameras"]}
    assert without["cameras_within"] == wide["cameras_within"] - 1


async def test_scoped_like_the_incident_detail(
    client, pool, make_district, make_staff, make_member
):
    await _import_both(pool)
    a = await make_district("11230", "동대문구", 127.00, 37.55, 127.10, 37.60)
    b = await make_district("11620", "관악구", 126.90, 37.45, 126.99, 37.50)
    mine = await make_staff("dispatcher", district_ids=(a,))
    other = await make_staff("dispatcher", district_ids=(b,))
    city = await make_staff("dispatcher", city_wide=True)
    volunteer = await make_staff("volunteer")
    member = await make_member()
    incident = await _sos(client, member, JANGAN)
    url = f"/v1/console/incidents/{incident}/assets"

    async def status(headers) -> int:
        return (await client.get(url, headers=headers)).status_code

    for who in (mine, other, city):
        detail = await client.get(f"/v1/console/incidents/{incident}", headers=who.headers)
        assert await status(who.headers) == detail.status_code
    assert await status(other.headers) == 404
    assert await status(city.headers) == 200
    assert await status(volunteer.headers) == 403
    assert await status(member.headers) == 401
    assert await status({}) == 401
    missing = await client.get(f"/v1/console/incidents/{uuid.uuid4()}/assets", headers=city.headers)
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"
    # Another district's dispatcher read nothing: no entry names them.
    readers = {s for ids, _ in await _reads(pool, incident) for s in ids}
    assert other.id not in readers and city.id in readers

    # A district covering for hers (nobody watched it) sees it, as on the detail.
    await pool.execute("UPDATE incident SET covered_by = $2 WHERE id = $1", uuid.UUID(incident),
                       [b])  # fmt: skip
    assert await status(other.headers) == 200


async def test_bad_parameters_are_clear_4xx_and_no_position_reads_nothing(
    client, pool, make_district, make_staff, make_member
):
    city = await make_staff("dispatcher", city_wide=True)
    member = await make_member()
    r = await client.post(
        "/v1/alerts",
        json={"client_alert_id": str(uuid.uuid4()), "trigger": "button"},
        headers=member.headers,
    )
    incident = str(r.json()["incident_id"])
    url = f"/v1/console/incidents/{incident}/assets"
    body = (await client.get(url, headers=city.headers)).json()
    assert body["position"] is None and body["cameras"] == body["bells"] == []
    assert await _reads(pool, incident) == []

    too_far = await client.get(f"{url}?radius_m=5000", headers=city.headers)
    assert too_far.status_code == 400 and "at most 2000" in too_far.json()["detail"]
    for bad in ("radius_m=0", "radius_m=-3", "radius_m=nan", "limit=0", "limit=51", "limit=x"):
        res = await client.get(f"{url}?{bad}", headers=city.headers)
        assert res.status_code == 422, bad
        assert res.json()["error"] == "ValidationError"
