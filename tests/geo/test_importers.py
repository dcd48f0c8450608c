"""Importers: each preset on the real Seoul files, re-imports, bad rows, all-or-nothing writes."""

from __future__ import annotations

import json
from datetime import time

import asyncpg
import pytest

from app.geo import importers
from app.geo.importers import ImportFailed, PlaceRecord
from tests.conftest import SEOUL, needs_seoul_data

pytestmark = needs_seoul_data

SAFETY = "seoul_women_safety_houses_2021.csv"
POLICE_2020 = "seoul_police_stations_jigudae_pachulso_2020.csv"
POLICE_CENTRES = "seoul_police_incl_security_centers.csv"


async def _places(pool, data: bytes, preset: str | None = None, *, source="test", **kw):
    mapping = kw.pop("mapping", None)
    spec_kw = {k: kw.pop(k) for k in ("kind", "bbox", "use_bbox", "open_24h") if k in kw}
    spec = importers.place_spec(preset=preset, mapping=mapping, **spec_kw)
    async with pool.acquire() as conn:
        return await importers.import_places(conn, data=data, spec=spec, source=source, **kw)


async def _districts(pool, data: bytes, preset: str | None = None, **kw):
    async with pool.acquire() as conn:
        return await importers.import_districts(
            conn,
            data=data,
            spec=importers.district_spec(preset=preset, mapping=kw.pop("mapping", None)),
            **kw,
        )


# --- presets on the real files ---------------------------------------------------------------


async def test_safety_house_preset_imports_all_505_stores_as_24h_safety_houses(pool):
    report = await _places(pool, (SEOUL / SAFETY).read_bytes(), "seoul-safety-houses")
    assert (report.rows, report.inserted, report.skipped) == (505, 505, [])
    row = await pool.fetchrow(
        "SELECT count(*) AS n, bool_and(open_24h) AS all_24h, bool_and(is_safety_house) AS all_sh,"
        " count(DISTINCT kind) AS kinds, min(kind) AS kind, count(phone) AS phones"
        " FROM safe_place"
    )
    assert dict(row) == {
        "n": 505,
        "all_24h": True,
        "all_sh": True,
        "kinds": 1,
        "kind": "convenience_store",
        "phones": 505,
    }
    # Two stores share one building's coordinates: both are kept, as distinct places.
    shared = await pool.fetch(
        "SELECT name FROM safe_place WHERE ST_DWithin(geog,"
        " ST_MakePoint(126.898574, 37.4829104)::geography, 0.01) ORDER BY name"
    )
    assert [r["name"] for r in shared] == ["CU 구로파트너점", "미니스톱 구로지플러스점"]


async def test_reimport_updates_in_place_and_a_changed_row_is_updated_not_duplicated(pool):
    data = (SEOUL / SAFETY).read_bytes()
    await _places(pool, data, "seoul-safety-houses")
    ids_before = {r["id"] for r in await pool.fetch("SELECT id FROM safe_place")}

    again = await _places(pool, data, "seoul-safety-houses")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 505)

    # Same store, corrected phone and position: one update, same id, no duplicate.
    text = data.decode("utf-8-sig")
    changed = text.replace(
        "02-830-6586,37.4840205,126.9163085", "02-830-0000,37.4841205,126.9164085"
    )
    assert changed != text
    report = await _places(pool, changed.encode(), "seoul-safety-houses")
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 504)
    assert {r["id"] for r in await pool.fetch("SELECT id FROM safe_place")} == ids_before
    row = await pool.fetchrow(
        "SELECT phone, ST_Y(geog::geometry) AS lat FROM safe_place"
        " WHERE name = '세븐일레븐 신사시장점'"
    )
    assert row["phone"] == "02-830-0000" and row["lat"] == pytest.approx(37.4841205)


async def test_a_bom_does_not_change_the_header_or_the_external_refs(pool):
    data = (SEOUL / SAFETY).read_bytes()
    await _places(pool, data, "seoul-safety-houses")
    with_bom = await _places(pool, b"\xef\xbb\xbf" + data, "seoul-safety-houses")
    assert (with_bom.inserted, with_bom.unchanged) == (0, 505)


async def test_cp949_files_are_read_too(pool):
    text = (SEOUL / POLICE_2020).read_text(encoding="utf-8")
    report = await _places(pool, text.encode("cp949"), "seoul-police-2020")
    assert report.inserted == 274
    assert await pool.fetchval("SELECT count(*) FROM safe_place WHERE name LIKE '%파출소'") == 144


async def test_police_2020_preset_reads_x_as_longitude_and_maps_office_types(pool):
    report = await _places(pool, (SEOUL / POLICE_2020).read_bytes(), "seoul-police-2020")
    assert (report.inserted, report.skipped) == (274, [])
    kinds = dict(
        await pool.fetch("SELECT kind, count(*) FROM safe_place GROUP BY kind")  # type: ignore[arg-type]
    )
    assert kinds == {"police_station": 31, "police_box": 96 + 144 + 2, "other": 1}
    row = await pool.fetchrow(
        "SELECT kind, open_24h, ST_X(geog::geometry) AS lon, ST_Y(geog::geometry) AS lat"
        " FROM safe_place WHERE name = '논현1파출소'"
    )
    # X좌표 = 127.0293161 is the longitude, Y좌표 = 37.51379122 the latitude.
    assert (row["lon"], row["lat"]) == pytest.approx((127.0293161, 37.51379122))
    assert (row["kind"], row["open_24h"]) == ("police_box", True)
    # Two 신사파출소 (강남 and 관악/은평) are two places: the ref includes the parent station.
    assert await pool.fetchval("SELECT count(*) FROM safe_place WHERE name = '신사파출소'") == 2


async def test_police_centres_preset_keeps_security_centres_as_other_not_open_24h(pool):
    report = await _places(pool, (SEOUL / POLICE_CENTRES).read_bytes(), "seoul-police-centres")
    assert (report.inserted, report.skipped) == (453, [])
    rows = await pool.fetch(
        "SELECT kind, open_24h, count(*) AS n FROM safe_place GROUP BY 1, 2 ORDER BY 1"
    )
    assert [tuple(r) for r in rows] == [
        ("other", False, 179 + 1),
        ("police_box", True, 88 + 152 + 2),
        ("police_station", True, 31),
    ]
    names = {r["name"] for r in await pool.fetch("SELECT name FROM safe_place")}
    assert {"서울강남경찰서", "을지지구대", "신당파출소", "광희치안센터"} <= names
    again = await _places(pool, (SEOUL / POLICE_CENTRES).read_bytes(), "seoul-police-centres")
    assert (again.inserted, again.unchanged) == (0, 453)


def test_presets_are_detected_from_the_header():
    for file, preset in [
        (SAFETY, "seoul-safety-houses"),
        (POLICE_2020, "seoul-police-2020"),
        (POLICE_CENTRES, "seoul-police-centres"),
    ]:
        header = (SEOUL / file).read_text(encoding="utf-8-sig").splitlines()[0].split(",")
        assert importers.detect_place_preset(header) == preset
    assert importers.detect_place_preset(["a", "b"]) is None


# --- generic mapping, bad rows ---------------------------------------------------------------

HEADER = "상호,위도,경도,주소,전화,영업시간\n"


def _csv(*rows: str) -> bytes:
    return (HEADER + "\n".join(rows) + "\n").encode()


MAP = {"name": "상호", "lat": "위도", "lon": "경도", "address": "주소", "phone": "전화"}


async def test_bad_coordinates_are_reported_by_row_and_the_good_rows_imported(pool):
    data = _csv(
        "좋은가게,37.5,127.0,서울 중구 1,02-1,",  # row 2: good
        "빈좌표,,127.0,서울 중구 2,,",  # row 3
        "글자,abc,127.0,서울 중구 3,,",  # row 4
        "NaN,nan,127.0,서울 중구 4,,",  # row 5
        "무한,37.5,inf,서울 중구 5,,",  # row 6
        "범위밖,91,127.0,서울 중구 6,,",  # row 7
        "경도밖,37.5,181,서울 중구 7,,",  # row 8
        "영점,0,0,서울 중구 8,,",  # row 9
        "밑줄,3_7,127.0,서울 중구 9,,",  # row 10: Python's float() would take it
        "부산,35.18,129.07,부산 1,,",  # row 11: outside the box
        ",37.5,127.0,이름없음,,",  # row 12
        "좋은가게2,37.51,127.01,서울 중구 10,,",  # row 13: good
    )
    report = await _places(
        pool,
        data,
        mapping=MAP,
        kind="convenience_store",
        bbox=importers.SEOUL_BBOX,
    )
    assert (report.rows, report.inserted) == (12, 2)
    reasons = {p.row: p.reason for p in report.skipped}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert "latitude is missing" in reasons[3]
    assert "not a number" in reasons[4]
    assert "not finite" in reasons[5] or "not a number" in reasons[5]
    assert "longitude" in reasons[6]
    assert "out of range" in reasons[7]
    assert "out of range" in reasons[8]
    assert "0,0" in reasons[9]
    assert "not a number" in reasons[10]
    assert "bounding box" in reasons[11]
    assert "name is missing" in reasons[12]
    assert await pool.fetchval("SELECT count(*) FROM safe_place") == 2


async def test_without_a_bbox_far_away_rows_are_kept(pool):
    report = await _places(
        pool, _csv("부산,35.18,129.07,부산 1,,"), mapping=MAP, kind="other", use_bbox=False
    )
    assert report.inserted == 1


async def test_duplicate_external_refs_in_one_file_are_reported_not_merged(pool):
    data = _csv("가게,37.5,127.0,서울 1,,", "가게,37.6,127.1,서울 1,,")
    report = await _places(pool, data, mapping=MAP, kind="convenience_store")
    assert report.inserted == 1
    assert [(p.row, "same external ref as row 2" in p.reason) for p in report.skipped] == [
        (3, True)
    ]


async def test_without_an_address_the_ref_falls_back_to_name_and_position(pool):
    mapping = {"name": "상호", "lat": "위도", "lon": "경도"}
    data = _csv("GS25,37.5,127.0,,,", "GS25,37.6,127.1,,,")
    report = await _places(pool, data, mapping=mapping, kind="convenience_store")
    assert (report.inserted, report.skipped) == (2, [])
    again = await _places(pool, data, mapping=mapping, kind="convenience_store")
    assert again.unchanged == 2


async def test_opening_hours_column_is_parsed_and_bad_hours_reported(pool):
    data = _csv(
        "야간,37.50,127.0,a,,22:00-06:00",
        "주간,37.51,127.0,b,,09:00~18:00",
        "종일,37.52,127.0,c,,24시간",
        "자정,37.53,127.0,d,,00:00-24:00",
        "모름,37.54,127.0,e,,",
        "엉터리,37.55,127.0,f,,25:00-26:00",
    )
    report = await _places(
        pool, data, mapping={**MAP, "hours": "영업시간"}, kind="other", open_24h=False
    )
    assert report.inserted == 5
    assert [(p.row, "opening hours" in p.reason) for p in report.skipped] == [(7, True)]
    rows = {
        r["name"]: (r["open_24h"], r["opens_at"], r["closes_at"])
        for r in await pool.fetch("SELECT name, open_24h, opens_at, closes_at FROM safe_place")
    }
    assert rows == {
        "야간": (False, time(22), time(6)),
        "주간": (False, time(9), time(18)),
        "종일": (True, None, None),
        "자정": (True, None, None),
        "모름": (False, None, None),
    }


async def test_kind_column_values_are_mapped_and_unknown_kinds_reported(pool):
    data = (
        "name,lat,lon,type\nA,37.5,127,police_box\nB,37.5,127.01,지구대\nC,37.5,127.02,x\n".encode()
    )
    report = await _places(
        pool, data, mapping={"name": "name", "lat": "lat", "lon": "lon", "kind": "type"}
    )
    assert report.inserted == 2
    assert [(p.row, "unknown kind" in p.reason) for p in report.skipped] == [(4, True)]
    kinds = {r["name"]: r["kind"] for r in await pool.fetch("SELECT name, kind FROM safe_place")}
    assert kinds == {"A": "police_box", "B": "police_box"}


async def test_file_level_problems_fail_the_whole_import_clearly(pool):
    with pytest.raises(ImportFailed, match="columns not in the file: nope"):
        await _places(pool, _csv("a,1,2,,,"), mapping={**MAP, "phone": "nope"}, kind="other")
    with pytest.raises(ImportFailed, match="no kind"):
        await _places(pool, _csv("a,1,2,,,"), mapping=MAP)
    with pytest.raises(ImportFailed, match="unknown preset"):
        importers.place_spec(preset="nope")
    with pytest.raises(ImportFailed, match="unknown field"):
        importers.place_spec(mapping={"colour": "x"})
    with pytest.raises(ImportFailed, match="empty"):
        await _places(pool, b"", mapping=MAP, kind="other")
    with pytest.raises(ImportFailed, match="decode"):
        await _places(pool, b"\xff\xfe\x00\x00\x81", mapping=MAP, kind="other", encoding="utf-8")
    assert await pool.fetchval("SELECT count(*) FROM safe_place") == 0


async def test_dry_run_counts_but_writes_nothing(pool):
    report = await _places(pool, (SEOUL / SAFETY).read_bytes(), "seoul-safety-houses", dry_run=True)
    assert (report.inserted, report.dry_run) == (505, True)
    assert await pool.fetchval("SELECT count(*) FROM safe_place") == 0


async def test_deactivate_missing_retires_places_gone_from_the_file(pool):
    await _places(pool, _csv("a,37.5,127,x,,", "b,37.6,127,y,,"), mapping=MAP, kind="other")
    report = await _places(
        pool, _csv("a,37.5,127,x,,"), mapping=MAP, kind="other", deactivate_missing=True
    )
    assert report.deactivated == 1
    active = {
        r["name"]: r["active"] for r in await pool.fetch("SELECT name, active FROM safe_place")
    }
    assert active == {"a": True, "b": False}
    # Coming back in a later file reactivates it.
    back = await _places(pool, _csv("a,37.5,127,x,,", "b,37.6,127,y,,"), mapping=MAP, kind="other")
    assert back.updated == 1
    assert await pool.fetchval("SELECT bool_and(active) FROM safe_place")
    with pytest.raises(ImportFailed, match="refusing"):
        await _places(pool, _csv(",,,,,"), mapping=MAP, kind="other", deactivate_missing=True)


async def test_good_rows_are_all_or_nothing_when_the_write_fails(pool):
    good = PlaceRecord(
        row=2, ref="r1", kind="other", name="ok", address=None, phone=None, open_24h=True,
        opens_at=None, closes_at=None, is_safety_house=False, lat=37.5, lon=127.0,
    )  # fmt: skip
    broken = PlaceRecord(
        row=3, ref="r2", kind="bogus", name="bad", address=None, phone=None, open_24h=True,
        opens_at=None, closes_at=None, is_safety_house=False, lat=37.6, lon=127.0,
    )  # fmt: skip
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await importers.write_places(conn, [good, broken], source="t")
    assert await pool.fetchval("SELECT count(*) FROM safe_place") == 0


async def test_nul_bytes_and_newlines_in_cells_are_cleaned(pool):
    data = b'name,lat,lon\n"a\x00b\nc",37.5,127\n'
    report = await _places(
        pool, data, mapping={"name": "name", "lat": "lat", "lon": "lon"}, kind="other"
    )
    assert report.inserted == 1
    assert await pool.fetchval("SELECT name FROM safe_place") == "ab c"


# --- districts -------------------------------------------------------------------------------


async def test_juso_districts_import_as_multipolygons_and_reimport_is_unchanged(pool):
    data = (SEOUL / "seoul_gu_boundaries_juso2015.geojson").read_bytes()
    report = await _districts(pool, data, "seoul-gu-juso")
    assert (report.inserted, report.skipped) == (25, [])
    # 강서구's ring touches itself: repaired, imported, and said so.
    assert [p.row for p in report.repaired] == [11]
    row = await pool.fetchrow(
        "SELECT count(*) AS n, bool_and(ST_IsValid(boundary)) AS valid,"
        " bool_and(GeometryType(boundary) = 'MULTIPOLYGON') AS multi,"
        " min(ST_SRID(boundary)) AS srid"
        " FROM district"
    )
    assert dict(row) == {"n": 25, "valid": True, "multi": True, "srid": 4326}
    assert await pool.fetchval("SELECT name_en FROM district WHERE code = '11680'") == "Gangnam-gu"
    again = await _districts(pool, data, "seoul-gu-juso")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 25)


async def test_kostat_districts_are_stored_under_the_standard_sig_cd_codes(pool):
    juso = (SEOUL / "seoul_gu_boundaries_juso2015.geojson").read_bytes()
    kostat = (SEOUL / "seoul_gu_boundaries_kostat2013_simplified.geojson").read_bytes()
    await _districts(pool, juso, "seoul-gu-juso")
    codes = dict(await pool.fetch("SELECT code, name FROM district"))  # type: ignore[arg-type]
    assert codes == {v: k for k, v in importers.SEOUL_SIG_CD.items()}
    # KOSTAT's 11140 is 마포구; stored as 11440 it replaces 마포구's boundary, not 중구's.
    report = await _districts(pool, kostat, "seoul-gu-kostat")
    assert (report.inserted, report.updated, report.skipped) == (0, 25, [])
    assert dict(await pool.fetch("SELECT code, name FROM district")) == codes  # type: ignore[arg-type]


async def test_bad_features_are_reported_and_the_rest_imported(pool):
    square = [[[127.0, 37.5], [127.01, 37.5], [127.01, 37.51], [127.0, 37.51], [127.0, 37.5]]]
    bowtie = [[[127.0, 37.5], [127.01, 37.51], [127.01, 37.5], [127.0, 37.51], [127.0, 37.5]]]
    flat = [[[127.0, 37.5], [127.01, 37.5], [127.02, 37.5], [127.0, 37.5]]]

    def feature(code, geometry, name="구"):
        return {"type": "Feature", "properties": {"code": code, "name": name},
                "geometry": geometry}  # fmt: skip

    doc = {
        "type": "FeatureCollection",
        "features": [
            feature("1", {"type": "Polygon", "coordinates": square}),
            feature("2", {"type": "Polygon", "coordinates": bowtie}),
            feature("3", {"type": "Polygon", "coordinates": flat}),
            feature("4", {"type": "Point", "coordinates": [127.0, 37.5]}),
            feature("5", {"type": "Polygon", "coordinates": [square[0][:-1]]}),
            feature("6", {"type": "Polygon", "coordinates": [[[127, 37], [1e400, 37]]]}),
            feature("7", None),
            feature(None, {"type": "Polygon", "coordinates": square}),
            feature("1", {"type": "Polygon", "coordinates": square}),
            "not a feature",
            feature("11", {"type": "MultiPolygon", "coordinates": [square]}, name=""),
        ],
    }
    report = await _districts(pool, json.dumps(doc).encode())
    assert report.inserted == 2
    assert [p.row for p in report.repaired] == [2]
    skipped = {p.row: p.reason for p in report.skipped}
    assert sorted(skipped) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert "cannot be repaired" in skipped[3]
    assert "not Polygon" in skipped[4]
    assert "not closed" in skipped[5]
    assert "fewer than 4" in skipped[6]
    assert "same code" in skipped[9]
    kinds = await pool.fetch("SELECT GeometryType(boundary) AS t FROM district")
    assert {r["t"] for r in kinds} == {"MULTIPOLYGON"}


async def test_not_geojson_is_a_file_level_failure(pool):
    with pytest.raises(ImportFailed):
        await _districts(pool, b"{nope")
    with pytest.raises(ImportFailed):
        await _districts(pool, b'{"type": "Topology"}')
