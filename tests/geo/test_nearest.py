"""Nearest safe places against an independent brute force (pyproj's Karney geodesics)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from pyproj import Geod

from app.geo import importers
from app.geo.nearest import (
    SPHERE_ERROR,
    _nearest_sql,
    district_at,
    first_candidates,
    nearest_places,
)
from tests.conftest import SEOUL, needs_seoul_data
from tests.plans import generic_plan, rows_read

GEOD = Geod(ellps="WGS84")
#: The sphere PostGIS measures ``geography <->`` on (mean Earth radius).
SPHERE_R = 6371008.7714
#: Seoul's extent (SOURCES.md): every random point falls in this box.
LAT0, LAT1, LON0, LON1 = 37.41, 37.72, 126.76, 127.19


async def _import(pool, file: str, preset: str) -> None:
    async with pool.acquire() as conn:
        report = await importers.import_places(
            conn,
            data=(SEOUL / file).read_bytes(),
            spec=importers.place_spec(preset=preset),
            source=preset,
        )
    assert not report.skipped


async def _all_places(pool, kinds: tuple[str, ...] | None = None):
    rows = await pool.fetch(
        "SELECT id, kind, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon"
        " FROM safe_place WHERE active AND ($1::text[] IS NULL OR kind = ANY($1))",
        list(kinds) if kinds else None,
    )
    ids = [r["id"] for r in rows]
    lats = [r["lat"] for r in rows]
    lons = [r["lon"] for r in rows]
    return ids, lats, lons


def _brute_force(ids, lats, lons, lat, lon, k):
    """(id, geodesic metres) of the k nearest, ties by id, as the service promises."""
    _, _, dist = GEOD.inv([lon] * len(ids), [lat] * len(ids), lons, lats)
    order = sorted(range(len(ids)), key=lambda i: (dist[i], ids[i]))
    return [(ids[i], float(dist[i])) for i in order[:k]]


def _random_points(n: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(rng.uniform(LAT0, LAT1), rng.uniform(LON0, LON1)) for _ in range(n)]


@needs_seoul_data
async def test_nearest_equals_brute_force_geodesic_at_400_points_across_seoul(pool):
    await _import(pool, "seoul_women_safety_houses_2021.csv", "seoul-safety-houses")
    ids, lats, lons = await _all_places(pool)
    assert len(ids) == 505

    naive_differs = naive_set_differs = one_round_trip = 0
    points = _random_points(400, seed=20251125)
    for lat, lon in points:
        got = await nearest_places(pool, lat=lat, lon=lon, limit=5)
        want = _brute_force(ids, lats, lons, lat, lon, 5)
        assert [p.id for p in got] == [i for i, _ in want], (lat, lon)
        for p, (_, metres) in zip(got, want, strict=True):
            assert abs(p.distance_m - metres) < 0.01, (lat, lon, p.distance_m, metres)
        shown = [p.as_json()["distance_m"] for p in got]
        assert shown == sorted(shown)

        # What a KNN on geometry in degrees would have answered.
        naive = sorted(range(len(ids)), key=lambda i: (lats[i] - lat) ** 2 + (lons[i] - lon) ** 2)
        naive_ids = [ids[i] for i in naive[:5]]
        naive_differs += naive_ids != [p.id for p in got]
        naive_set_differs += set(naive_ids) != {p.id for p in got}

        # Would the first query (8 candidates by sphere distance) have proved the answer?
        sphere = _sphere_m(lats, lons, lat, lon)
        last_candidate = sorted(sphere)[first_candidates(5) - 1]
        one_round_trip += got[-1].distance_m <= last_candidate * (1 - SPHERE_ERROR)

    n = len(points)
    print(
        f"\nnaive degree KNN: different top-5 list at {naive_differs}/{n} points,"
        f" different top-5 set at {naive_set_differs}/{n};"
        f" answered in one round trip at {one_round_trip}/{n}"
    )
    # The reason this module exists: degrees are not metres at 37.5°N.
    assert naive_differs / n > 0.2
    # The hot path is one statement in the common case.
    assert one_round_trip / n > 0.9


def _sphere_m(lats, lons, lat, lon):
    out = []
    p1 = math.radians(lat)
    for plat, plon in zip(lats, lons, strict=True):
        p2 = math.radians(plat)
        a = (
            math.sin((p2 - p1) / 2) ** 2
            + math.cos(p1) * math.cos(p2) * math.sin(math.radians(plon - lon) / 2) ** 2
        )
        out.append(2 * SPHERE_R * math.asin(math.sqrt(a)))
    return out


@needs_seoul_data
async def test_kind_filter_equals_brute_force_over_police_and_stores(pool):
    await _import(pool, "seoul_women_safety_houses_2021.csv", "seoul-safety-houses")
    await _import(pool, "seoul_police_incl_security_centers.csv", "seoul-police-centres")
    kinds = ("police_station", "police_box")
    ids, lats, lons = await _all_places(pool, kinds)
    for lat, lon in _random_points(100, seed=7):
        got = await nearest_places(pool, lat=lat, lon=lon, limit=3, kinds=kinds)
        want = _brute_force(ids, lats, lons, lat, lon, 3)
        assert [p.id for p in got] == [i for i, _ in want]
        assert {p.kind for p in got} <= set(kinds)


@needs_seoul_data
async def test_the_plan_a_pooled_connection_keeps_walks_the_index_and_stays_exact(pool):
    """After a few calls PostgreSQL runs a prepared statement with its generic plan and keeps
    it. For the SOS's query (5 open places) that plan must walk the KNN index, not sort the
    table, and give the same exact answers."""
    await _import(pool, "seoul_women_safety_houses_2021.csv", "seoul-safety-houses")
    ids, lats, lons = await _all_places(pool)
    sql = _nearest_sql(15, False, True)  # what nearest_places(limit=5, open_now=True) runs
    plan = await generic_plan(pool, sql, 37.55, 126.99, "Asia/Seoul", None)
    assert rows_read(plan, "safe_place") <= 30 < len(ids)
    async with pool.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            for lat, lon in _random_points(50, seed=7):
                got = await nearest_places(conn, lat=lat, lon=lon, limit=5, open_now=True)
                want = _brute_force(ids, lats, lons, lat, lon, 5)
                assert [p.id for p in got] == [i for i, _ in want], (lat, lon)
        finally:
            await conn.execute("RESET plan_cache_mode")


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(35.1796, 129.0756), (33.4996, 126.5312), (-33.8688, 151.2093), (89.9, 0.0), (37.5, -53.0)],
    ids=["busan", "jeju", "sydney", "north-pole", "antipode-ish"],
)
@needs_seoul_data
async def test_far_points_are_still_exact_when_the_candidate_set_must_grow(pool, lat, lon):
    await _import(pool, "seoul_women_safety_houses_2021.csv", "seoul-safety-houses")
    ids, lats, lons = await _all_places(pool)
    got = await nearest_places(pool, lat=lat, lon=lon, limit=5)
    want = _brute_force(ids, lats, lons, lat, lon, 5)
    assert [p.id for p in got] == [i for i, _ in want]
    for p, (_, metres) in zip(got, want, strict=True):
        assert abs(p.distance_m - metres) < 0.01


async def test_spheroid_and_sphere_order_differ_yet_the_answer_follows_the_spheroid(
    pool, make_place
):
    # North-south degrees are shorter on the spheroid than on the sphere at 37.5°N and
    # east-west ones longer: 1000 m north on the sphere is 998 m on the spheroid, 999 m east
    # on the sphere 1001 m. The sphere puts east first, the spheroid (the truth) north.
    here = (37.5, 127.0)
    north = await make_place("north", 37.5 + 1000 / SPHERE_R * 180 / math.pi, 127.0)
    east = await make_place(
        "east", 37.5, 127.0 + 999 / (SPHERE_R * math.cos(math.radians(37.5))) * 180 / math.pi
    )
    sphere_order = await pool.fetch(
        "SELECT id FROM safe_place ORDER BY geog <-> ST_MakePoint($2, $1)::geography",
        *here,
    )
    assert [r["id"] for r in sphere_order] == [east, north]
    got = await nearest_places(pool, lat=here[0], lon=here[1], limit=2)
    truth = [GEOD.inv(127.0, 37.5, p.lon, p.lat)[2] for p in got]
    assert [p.id for p in got] == [north, east]
    assert truth[0] < 999 < 1001 < truth[1]
    assert [abs(p.distance_m - d) < 0.01 for p, d in zip(got, truth, strict=True)] == [True] * 2


async def test_equal_distances_are_ordered_by_id(pool, make_place):
    a = await make_place("twin a", 37.55, 126.99)
    b = await make_place("twin b", 37.55, 126.99)
    got = await nearest_places(pool, lat=37.5501, lon=126.9901, limit=2)
    assert [p.id for p in got] == sorted([a, b])
    assert got[0].distance_m == got[1].distance_m


async def test_inactive_places_are_never_offered(pool, make_place):
    gone = await make_place("closed store", 37.55, 126.99)
    kept = await make_place("open store", 37.56, 126.99)
    await pool.execute("UPDATE safe_place SET active = false WHERE id = $1", gone)
    got = await nearest_places(pool, lat=37.55, lon=126.99, limit=5)
    assert [p.id for p in got] == [kept]


async def test_limit_beyond_the_table_returns_everything_and_zero_returns_nothing(pool, make_place):
    ids = {await make_place(f"p{i}", 37.5 + i / 100, 127.0) for i in range(3)}
    assert {p.id for p in await nearest_places(pool, lat=37.5, lon=127.0, limit=50)} == ids
    assert await nearest_places(pool, lat=37.5, lon=127.0, limit=0) == []


async def test_empty_table_returns_no_places(pool):
    assert await nearest_places(pool, lat=37.5, lon=127.0, limit=5) == []


# --- open now --------------------------------------------------------------------------------


async def _with_hours(pool, make_place, name, lat, opens, closes):
    place_id = await make_place(name, lat, 127.0, open_24h=False)
    await pool.execute(
        "UPDATE safe_place SET opens_at = $2, closes_at = $3 WHERE id = $1", place_id, opens, closes
    )
    return place_id


def _kst(hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 11, 25, hour, minute, tzinfo=ZoneInfo("Asia/Seoul"))


@pytest.mark.parametrize(
    ("hour", "minute", "open_names"),
    [
        (12, 0, {"always", "day", "all-day"}),
        (23, 0, {"always", "night", "all-day"}),
        (3, 30, {"always", "night", "all-day"}),
        (22, 0, {"always", "night", "all-day"}),  # opening minute counts as open
        (6, 0, {"always", "all-day"}),  # closing minute counts as closed
        (9, 0, {"always", "day", "all-day"}),
        (18, 0, {"always", "all-day"}),
    ],
)
async def test_open_now_handles_day_overnight_and_all_day_hours(
    pool, make_place, hour, minute, open_names
):
    await make_place("always", 37.500, 127.0, open_24h=True)
    await _with_hours(pool, make_place, "day", 37.501, time(9), time(18))
    await _with_hours(pool, make_place, "night", 37.502, time(22), time(6))
    await _with_hours(pool, make_place, "all-day", 37.503, time(0), time(0))
    await make_place("unknown hours", 37.504, 127.0, open_24h=False)
    now = _kst(hour, minute)

    every = await nearest_places(pool, lat=37.5, lon=127.0, limit=10, now=now, tz="Asia/Seoul")
    assert {p.name for p in every if p.open_now} == open_names
    assert len(every) == 5

    only_open = await nearest_places(
        pool, lat=37.5, lon=127.0, limit=10, open_now=True, now=now, tz="Asia/Seoul"
    )
    assert {p.name for p in only_open} == open_names
    assert [p.distance_m for p in only_open] == sorted(p.distance_m for p in only_open)


async def test_open_now_is_judged_in_the_given_time_zone(pool, make_place):
    await _with_hours(pool, make_place, "night", 37.5, time(22), time(6))
    at = datetime(2025, 11, 25, 14, 0, tzinfo=UTC)  # 23:00 in Seoul, 14:00 in London
    seoul = await nearest_places(pool, lat=37.5, lon=127.0, now=at, tz="Asia/Seoul")
    london = await nearest_places(pool, lat=37.5, lon=127.0, now=at, tz="Europe/London")
    assert seoul[0].open_now is True
    assert london[0].open_now is False


async def test_open_now_filter_still_returns_the_true_nearest_open_places(pool, make_place):
    # Many closed places nearer than the open ones: the candidate set is filtered first.
    for i in range(40):
        await _with_hours(pool, make_place, f"closed {i}", 37.5 + i * 1e-4, time(9), time(10))
    far_open = [await make_place(f"open {i}", 37.52 + i * 1e-3, 127.0) for i in range(3)]
    got = await nearest_places(
        pool, lat=37.5, lon=127.0, limit=3, open_now=True, now=_kst(23), tz="Asia/Seoul"
    )
    assert [p.id for p in got] == far_open


# --- district at a point ---------------------------------------------------------------------


@needs_seoul_data
async def test_district_at_finds_the_gu_of_known_points(pool):
    async with pool.acquire() as conn:
        await importers.import_districts(
            conn,
            data=(SEOUL / "seoul_gu_boundaries_juso2015.geojson").read_bytes(),
            spec=importers.district_spec(preset="seoul-gu-juso"),
        )
    # 서울강남경찰서 (강남구 대치동 998) and Seoul City Hall.
    gangnam = await district_at(pool, lat=37.5091124, lon=127.0671097)
    assert gangnam is not None and (gangnam.code, gangnam.name) == ("11680", "강남구")
    city_hall = await district_at(pool, lat=37.5663, lon=126.9779)
    assert city_hall is not None and city_hall.as_json() == {"code": "11140", "name": "중구"}
    assert await district_at(pool, lat=35.1796, lon=129.0756) is None  # Busan


@needs_seoul_data
async def test_district_at_agrees_with_police_addresses(pool):
    """Most police offices' lot addresses name the gu their point lies in (boundary offices
    and geocoding slips excepted: 22 of 274 are next to a border)."""
    async with pool.acquire() as conn:
        await importers.import_districts(
            conn,
            data=(SEOUL / "seoul_gu_boundaries_juso2015.geojson").read_bytes(),
            spec=importers.district_spec(preset="seoul-gu-juso"),
        )
    await _import(pool, "seoul_police_stations_jigudae_pachulso_2020.csv", "seoul-police-2020")
    rows = await pool.fetch(
        "SELECT address, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon FROM safe_place"
    )
    agree = 0
    gangnam = []
    for r in rows:
        d = await district_at(pool, lat=r["lat"], lon=r["lon"])
        assert d is not None  # every office is inside Seoul
        agree += d.name in (r["address"] or "")
        if (r["address"] or "").startswith("강남구") and d.name == "강남구":
            gangnam.append(d.code)
    assert agree / len(rows) > 0.9
    assert gangnam and set(gangnam) == {"11680"}


def test_sphere_error_bound_covers_the_worst_case_on_wgs84():
    a, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    meridional_at_equator = a * (1 - e2)
    polar = a / math.sqrt(1 - e2)
    assert 1 - meridional_at_equator / SPHERE_R < SPHERE_ERROR
    assert polar / SPHERE_R - 1 < SPHERE_ERROR
    # And empirically: a long north-south arc at the equator, the worst direction.
    _, _, spheroid = GEOD.inv(0.0, -0.5, 0.0, 0.5)
    sphere = SPHERE_R * math.radians(1.0)
    assert spheroid / sphere > 1 - SPHERE_ERROR
