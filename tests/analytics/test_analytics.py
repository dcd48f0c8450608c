"""The analytics: aggregates by district, dong, hour of the week, source and outcome; the
k-anonymous heat map; the crime comparison layer; CSV export; who sees what."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from app.analytics import service
from app.cli import cli
from tests.analytics.fill import Seeded, insert_incidents

SEOUL = ZoneInfo("Asia/Seoul")
A = (127.00, 37.48, 127.06, 37.52)  # "강남구": 역삼동 at YEOKSAM
B = (127.06, 37.48, 127.12, 37.52)  # "송파구": 삼전동 at SAMJEON
YEOKSAM = (37.498, 127.028)
SAMJEON = (37.50, 127.09)
# A Monday, 00:30 in Seoul: hour of the week 0.
MONDAY = datetime(2026, 11, 2, 0, 30, tzinfo=SEOUL)
PERIOD = {"since": "2026-11-01T00:00:00+09:00", "until": "2026-11-30T00:00:00+09:00"}


@pytest.fixture
async def world(make_district, make_staff, pool):
    a = await make_district("11680", "강남구", *A)
    await make_district("11710", "송파구", *B)
    async with pool.acquire() as conn:
        await service.import_dongs(conn)
    return {
        "disp_a": await make_staff("dispatcher", district_ids=(a,)),
        "city": await make_staff("dispatcher", city_wide=True),
        "operator": await make_staff("operator"),
        "volunteer": await make_staff("volunteer"),
    }


async def _seed(pool) -> None:
    rows = (
        # 강남구: 6 at 역삼동 (one cell), 2 of them false alarms, acknowledged after 10 and 30 s.
        [Seeded(*YEOKSAM, received_at=MONDAY, ack_after_s=10.0, status="false_alarm")] * 2
        + [Seeded(*YEOKSAM, received_at=MONDAY, ack_after_s=30.0, status="resolved")] * 4
        # 송파구: 3 presses of a button at 삼전동 on a Sunday, 23:30 in Seoul.
        + [
            Seeded(
                *SAMJEON,
                received_at=MONDAY + timedelta(days=6, hours=23),
                source="button",
            )
        ]
        * 3
        # One without a position, and one outside the period.
        + [Seeded(None, None, received_at=MONDAY)]
        + [Seeded(*YEOKSAM, received_at=MONDAY - timedelta(days=60))]
    )
    await insert_incidents(pool, rows)
    await service.refresh(pool)


async def test_a_district_dispatcher_sees_her_districts_the_city_sees_all(client, world, pool):
    await _seed(pool)
    mine = await client.get(
        "/v1/analytics/districts", params=PERIOD, headers=world["disp_a"].headers
    )
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["scope"]["city_wide"] is False
    assert body["scope"]["refreshed_at"] is not None
    assert [(d["code"], d["incidents"]) for d in body["districts"]] == [("11680", 6)]
    gangnam = body["districts"][0]
    assert (gangnam["false_alarms"], gangnam["resolved"], gangnam["open"]) == (2, 4, 0)
    assert gangnam["ack_p50_s"] == 30.0
    for who in ("city", "operator"):
        city = await client.get(
            "/v1/analytics/districts", params=PERIOD, headers=world[who].headers
        )
        rows = {d["code"]: d["incidents"] for d in city.json()["districts"]}
        assert rows == {"11680": 6, "11710": 3, None: 1}, who
    refused = await client.get("/v1/analytics/districts", headers=world["volunteer"].headers)
    assert refused.status_code == 403
    assert (await client.get("/v1/analytics/districts")).status_code == 401


async def test_dongs_hours_and_outcomes(client, world, pool):
    await _seed(pool)
    h = world["city"].headers
    dongs = (await client.get("/v1/analytics/dongs", params=PERIOD, headers=h)).json()["dongs"]
    assert [(d["name"], d["district_code"], d["incidents"]) for d in dongs] == [
        ("역삼동", "11680", 6),
        ("삼전동", "11710", 3),
    ]
    hours = (await client.get("/v1/analytics/hours", params=PERIOD, headers=h)).json()["hours"]
    assert len(hours) == 168
    assert hours[0] == 7  # Monday 00:00-01:00 in Seoul (the unlocated one too)
    assert hours[167] == 3  # Sunday 23:00-24:00
    assert sum(hours) == 10
    outcomes = (await client.get("/v1/analytics/outcomes", params=PERIOD, headers=h)).json()
    got = {(o["source"], o["outcome"]): o for o in outcomes["outcomes"]}
    assert {k: v["incidents"] for k, v in got.items()} == {
        ("app", "false_alarm"): 2,
        ("app", "resolved"): 4,
        ("app", "open"): 1,
        ("button", "open"): 3,
    }
    assert got[("app", "false_alarm")]["ack_p50_s"] == 10.0
    assert got[("button", "open")]["ack_p50_s"] is None


async def test_the_heat_map_never_shows_a_cell_with_fewer_than_k(client, world, pool):
    await _seed(pool)
    h = world["city"].headers
    r = await client.get("/v1/analytics/heatmap", params={**PERIOD, "cell_m": 500}, headers=h)
    assert r.status_code == 200, r.text
    heat = r.json()
    assert heat["k"] == 5
    assert [c["incidents"] for c in heat["cells"]] == [6]
    assert (heat["hidden_cells"], heat["hidden_incidents"]) == (1, 3)
    ring = heat["cells"][0]["geometry"]["coordinates"][0]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    assert min(lons) <= YEOKSAM[1] <= max(lons) and min(lats) <= YEOKSAM[0] <= max(lats)
    # A smaller k than the configured one is not granted; a larger one hides more.
    low = await client.get("/v1/analytics/heatmap", params={**PERIOD, "k": 2}, headers=h)
    assert low.json()["k"] == 5 and len(low.json()["cells"]) == 1
    high = await client.get("/v1/analytics/heatmap", params={**PERIOD, "k": 7}, headers=h)
    assert high.json()["cells"] == [] and high.json()["hidden_incidents"] == 9
    bad = await client.get("/v1/analytics/heatmap", params={"cell_m": 50}, headers=h)
    assert bad.status_code == 422


async def test_the_view_shows_new_incidents_after_a_refresh(client, world, pool):
    await service.refresh(pool)
    await insert_incidents(pool, [Seeded(*YEOKSAM, received_at=datetime.now(UTC))])
    h = world["city"].headers
    before = (await client.get("/v1/analytics/districts", headers=h)).json()["districts"]
    assert before == []
    seconds = await service.refresh(pool)
    assert seconds is not None
    after = (await client.get("/v1/analytics/districts", headers=h)).json()["districts"]
    assert [(d["code"], d["incidents"]) for d in after] == [("11680", 1)]


async def test_a_bad_period_is_a_400(client, world):
    h = world["city"].headers
    r = await client.get(
        "/v1/analytics/districts",
        params={"since": "2026-11-02T00:00:00+09:00", "until": "2026-11-01T00:00:00+09:00"},
        headers=h,
    )
    assert r.status_code == 400
    assert r.json() == {"error": "BadRequest", "detail": "until must be after since"}
    naive = await client.get("/v1/analytics/hours", params={"since": "2026-11-01T00:00"}, headers=h)
    assert naive.status_code == 400


async def test_csv_export_of_each_aggregate(client, world, pool):
    await _seed(pool)
    h = world["disp_a"].headers
    r = await client.get(
        "/v1/analytics/export.csv", params={**PERIOD, "aggregate": "districts"}, headers=h
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["code"], x["incidents"], x["false_alarms"]) for x in rows] == [("11680", "6", "2")]
    hours = await client.get(
        "/v1/analytics/export.csv", params={**PERIOD, "aggregate": "hours"}, headers=h
    )
    table = list(csv.DictReader(io.StringIO(hours.text)))
    assert len(table) == 168
    assert table[0] == {"day": "Mon", "hour": "0", "incidents": "6"}
    heat = await client.get(
        "/v1/analytics/export.csv",
        params={**PERIOD, "aggregate": "heatmap", "cell_m": 500},
        headers=world["city"].headers,
    )
    cells = list(csv.DictReader(io.StringIO(heat.text)))
    assert [c["incidents"] for c in cells] == ["6"]  # the 3-incident cell stays hidden
    assert abs(float(cells[0]["lat"]) - YEOKSAM[0]) < 0.01
    unknown = await client.get(
        "/v1/analytics/export.csv", params={"aggregate": "members"}, headers=h
    )
    assert unknown.status_code == 422


async def test_the_crime_layer_from_the_seoul_file(client, world, seoul_data, pool):
    # (The command runs its own event loop: in a thread, beside the test's.)
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        [
            "analytics",
            "import-crimes",
            str(seoul_data / "seoul_five_major_crimes_by_gu_2014_2018.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "125 district-years" in result.stdout
    r = await client.get("/v1/analytics/crimes", headers=world["city"].headers)
    body = r.json()
    assert body["year"] == 2018 and body["years"] == [2014, 2015, 2016, 2017, 2018]
    assert len(body["districts"]) == 25
    # The file's 2018 Seoul total (its 합계 row) is the sum of the districts' totals.
    assert sum(d["total"] for d in body["districts"]) == 101948
    # A district's dispatcher gets her districts' rows only.
    mine = (await client.get("/v1/analytics/crimes", headers=world["disp_a"].headers)).json()
    assert [d["code"] for d in mine["districts"]] == ["11680"]
    assert mine["districts"][0]["name"] == "강남구"


def test_a_crimes_file_with_a_bad_row_imports_nothing(migrated, tmp_path, pool):
    header = "기간,자치구," + ",".join(f"{k}_{x}" for k in service.CRIMES for x in ("발생", "검거"))
    good = "2018,강남구," + ",".join(["1"] * 12)
    bad = "2018,강남군," + ",".join(["1"] * 12)
    dash = "2018,중구," + ",".join(["-"] * 12)
    path = tmp_path / "crimes.csv"
    path.write_text("\n".join([header, good, bad, dash]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["analytics", "import-crimes", str(path)])
    assert result.exit_code == 2
    assert "row 3: unknown district '강남군'" in result.output
    rows, problems = service.read_crimes("\n".join([header, good, dash]))
    assert problems == []
    assert (2018, "11140", "total", 0, 0) in rows  # "-" is the statistics' zero
