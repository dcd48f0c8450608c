"""Special control zones: operators define and import them (all or nothing), consoles read the
zone of each incident with its priority raise during the zone's hours (Asia/Seoul)."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from typer.testing import CliRunner

from app.cli import cli
from tests.analytics.fill import Seeded, insert_incidents

SEOUL = ZoneInfo("Asia/Seoul")
# District A: a rectangle around 강남역; the zone a small square inside it.
A = (127.00, 37.48, 127.06, 37.52)
B = (127.06, 37.48, 127.12, 37.52)
SQUARE = [[127.024, 37.494], [127.032, 37.494], [127.032, 37.502], [127.024, 37.502]]
INSIDE = (37.498, 127.028)
OUTSIDE = (37.51, 127.05)


def polygon(ring: list[list[float]]) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def feature(name: str | None = "강남역 일대", **props: object) -> dict[str, object]:
    p: dict[str, object] = {"reason": "night-time hot spot", **props}
    if name is not None:
        p["name"] = name
    return {"type": "Feature", "properties": p, "geometry": polygon(SQUARE)}


def seoul(hour: int, minute: int = 0) -> datetime:
    """Today (in Seoul) at hour:minute, Seoul time."""
    today = datetime.now(SEOUL).date()
    return datetime(today.year, today.month, today.day, hour, minute, tzinfo=SEOUL)


@pytest.fixture
async def world(make_district, make_staff):
    a = await make_district("11680", "강남구", *A)
    b = await make_district("11650", "서초구", *B)
    return {
        "a": a,
        "operator": await make_staff("operator"),
        "disp_a": await make_staff("dispatcher", district_ids=(a,)),
        "disp_b": await make_staff("dispatcher", district_ids=(b,)),
        "city": await make_staff("dispatcher", city_wide=True),
    }


async def test_an_operator_creates_a_zone_and_every_staff_map_reads_it(client, world):
    r = await client.post(
        "/v1/admin/zones",
        headers=world["operator"].headers,
        json={
            "name": "강남역 일대",
            "reason": "night-time hot spot",
            "geometry": polygon(SQUARE),
            "active_from": "22:00",
            "active_to": "06:00",
            "priority_raise": 2,
        },
    )
    assert r.status_code == 201, r.text
    zone = r.json()
    assert zone["active_hours"] == "22:00-06:00"
    assert zone["priority_raise"] == 2
    assert zone["geometry"]["type"] == "MultiPolygon"
    listed = await client.get("/v1/map/zones", headers=world["disp_b"].headers)
    assert listed.status_code == 200
    assert [z["name"] for z in listed.json()["zones"]] == ["강남역 일대"]
    assert isinstance(listed.json()["zones"][0]["active_now"], bool)
    # A dispatcher may look but not define.
    denied = await client.post(
        "/v1/admin/zones",
        headers=world["disp_a"].headers,
        json={"name": "x", "reason": "y", "geometry": polygon(SQUARE)},
    )
    assert denied.status_code == 403
    gone = await client.delete(f"/v1/admin/zones/{zone['id']}", headers=world["operator"].headers)
    assert gone.status_code == 204
    again = await client.delete(f"/v1/admin/zones/{zone['id']}", headers=world["operator"].headers)
    assert again.status_code == 404
    assert again.json()["error"] == "NotFound"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"active_from": "22:00"}, 422, "both"),
        ({"active_from": "22:00", "active_to": "22:00"}, 422, "all day"),
        ({"priority_raise": 4}, 422, "priority_raise"),
        (
            {"geometry": polygon([[127.0, 37.4], [127.1, 37.5], [127.1, 37.4], [127.0, 37.5]])},
            400,
            "Self-intersection",
        ),
        ({"geometry": {"type": "Point", "coordinates": [127.0, 37.5]}}, 422, "geometry"),
    ],
)
async def test_a_bad_zone_is_a_clear_4xx_and_nothing_is_stored(
    client, world, pool, body, status, says
):
    payload = {"name": "z", "reason": "r", "geometry": polygon(SQUARE), **body}
    r = await client.post("/v1/admin/zones", headers=world["operator"].headers, json=payload)
    assert r.status_code == status, r.text
    assert says in r.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM special_zone") == 0


async def test_an_import_with_bad_features_names_each_and_imports_none(client, world, pool):
    bowtie = feature("bowtie")
    bowtie["geometry"] = polygon([[127.0, 37.4], [127.1, 37.5], [127.1, 37.4], [127.0, 37.5]])
    doc = {
        "type": "FeatureCollection",
        "features": [
            feature(),
            feature(None),
            feature("late", active_hours="25:00-06:00"),
            bowtie,
        ],
    }
    r = await client.post("/v1/admin/zones/import", headers=world["operator"].headers, json=doc)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "feature 2: property 'name' is missing" in detail
    assert "feature 3: active_hours" in detail
    assert "feature 1" not in detail
    assert await pool.fetchval("SELECT count(*) FROM special_zone") == 0
    # The geometry check (PostGIS) runs once the properties are right: still all or nothing.
    doc["features"] = [feature(), bowtie]
    r = await client.post("/v1/admin/zones/import", headers=world["operator"].headers, json=doc)
    assert r.status_code == 400
    assert "feature 2: invalid polygon: Self-intersection" in r.json()["detail"]
    assert await pool.fetchval("SELECT count(*) FROM special_zone") == 0
    doc["features"] = [feature(), feature("역삼", active_hours="24시간", priority_raise=0)]
    r = await client.post("/v1/admin/zones/import", headers=world["operator"].headers, json=doc)
    assert r.status_code == 201, r.text
    assert r.json()["imported"] == 2
    rows = await pool.fetch("SELECT name, active_from, priority_raise FROM special_zone ORDER BY 1")
    assert [(x["name"], x["active_from"], x["priority_raise"]) for x in rows] == [
        ("강남역 일대", None, 1),
        ("역삼", None, 0),
    ]


def test_the_cli_imports_a_file_all_or_nothing(migrated, tmp_path: Path, pool):
    runner = CliRunner()
    bad = tmp_path / "bad.geojson"
    bad.write_bytes(
        orjson.dumps({"type": "FeatureCollection", "features": [feature(), feature(None)]})
    )
    result = runner.invoke(cli, ["zones", "import", str(bad), "--json"])
    assert result.exit_code == 2, result.output
    assert orjson.loads(result.stdout)["problems"] == [
        {"row": 2, "reason": "property 'name' is missing"}
    ]
    good = tmp_path / "good.geojson"
    good.write_bytes(
        orjson.dumps(
            {"type": "FeatureCollection", "features": [feature(active_hours="22:00-06:00")]}
        )
    )
    result = runner.invoke(cli, ["zones", "import", str(good)])
    assert result.exit_code == 0, result.output
    assert "imported 1 zones" in result.stdout
    listed = runner.invoke(cli, ["zones", "list"])
    assert orjson.loads(listed.stdout.splitlines()[0])["active_hours"] == "22:00-06:00"


async def _lookup(client, staff, ids: list[uuid.UUID]) -> dict[str, dict[str, object]]:
    r = await client.get(
        "/v1/console/zones/incidents",
        params={"ids": ",".join(str(i) for i in ids)},
        headers=staff.headers,
    )
    assert r.status_code == 200, r.text
    return {z["incident_id"]: z for z in r.json()["zones"]}


async def test_an_incident_in_a_zone_carries_it_raised_only_in_its_overnight_hours(
    client, world, pool
):
    doc = {
        "type": "FeatureCollection",
        "features": [feature(active_hours="22:00-06:00", priority_raise=2)],
    }
    r = await client.post("/v1/admin/zones/import", headers=world["operator"].headers, json=doc)
    assert r.status_code == 201
    night, dawn, six, noon, outside = await insert_incidents(
        pool,
        [
            Seeded(*INSIDE, received_at=seoul(23, 30)),
            Seeded(*INSIDE, received_at=seoul(5, 59)),
            Seeded(*INSIDE, received_at=seoul(6, 0)),
            Seeded(*INSIDE, received_at=seoul(12, 0)),
            Seeded(*OUTSIDE, received_at=seoul(23, 30)),
        ],
    )
    found = await _lookup(client, world["disp_a"], [night, dawn, six, noon, outside])
    assert found[str(night)]["name"] == "강남역 일대"
    assert (found[str(night)]["active_at_report"], found[str(night)]["priority_raise"]) == (True, 2)
    assert (found[str(dawn)]["active_at_report"], found[str(dawn)]["priority_raise"]) == (True, 2)
    assert (found[str(six)]["active_at_report"], found[str(six)]["priority_raise"]) == (False, 0)
    assert (found[str(noon)]["active_at_report"], found[str(noon)]["priority_raise"]) == (False, 0)
    assert str(outside) not in found
    # Another district's dispatcher learns nothing about these incidents; city-wide sees them.
    assert await _lookup(client, world["disp_b"], [night]) == {}
    assert set(await _lookup(client, world["city"], [night, noon])) == {str(night), str(noon)}
    # Being in a zone says where she is: the read is in the location access log.
    logged = await pool.fetch(
        "SELECT incident_id FROM location_access WHERE reason = 'zone' AND $1 = ANY(staff_ids)",
        world["disp_a"].id,
    )
    assert {r["incident_id"] for r in logged} == {night, dawn, six, noon}


async def test_of_two_zones_the_active_one_with_the_larger_raise_wins(client, world, pool):
    doc = {
        "type": "FeatureCollection",
        "features": [
            feature("day zone", active_hours="08:00-20:00", priority_raise=3),
            feature("night zone", active_hours="20:00-08:00", priority_raise=1),
            feature("always", priority_raise=0),
        ],
    }
    assert (
        await client.post("/v1/admin/zones/import", headers=world["operator"].headers, json=doc)
    ).status_code == 201
    day, night = await insert_incidents(
        pool,
        [Seeded(*INSIDE, received_at=seoul(10)), Seeded(*INSIDE, received_at=seoul(21))],
    )
    found = await _lookup(client, world["disp_a"], [day, night])
    assert (found[str(day)]["name"], found[str(day)]["priority_raise"]) == ("day zone", 3)
    assert (found[str(night)]["name"], found[str(night)]["priority_raise"]) == ("night zone", 1)


async def test_a_lookup_of_garbage_ids_is_a_400(client, world):
    r = await client.get(
        "/v1/console/zones/incidents", params={"ids": "nope"}, headers=world["disp_a"].headers
    )
    assert r.status_code == 400
    assert r.json()["error"] == "BadRequest"
    # More than 200 ids is longer than the parameter may be.
    many = ",".join(str(uuid.uuid4()) for _ in range(201))
    r = await client.get(
        "/v1/console/zones/incidents", params={"ids": many}, headers=world["disp_a"].headers
    )
    assert r.status_code == 422
    assert r.json()["error"] == "ValidationError"
