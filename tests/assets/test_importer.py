"""Importing CCTV sites and emergency bells: the real Seoul files, the full standard layout,
bad rows by row number, all-or-nothing writes, idempotent re-imports, and the CLI."""

from __future__ import annotations

import csv
import json

import asyncpg
import pytest
import typer
from typer.testing import CliRunner

from app.assets import importer
from app.assets.cli import assets_app
from app.assets.importer import AssetRecord
from app.geo.importers import ImportFailed
from tests.conftest import SEOUL, needs_seoul_data

pytestmark = [needs_seoul_data, pytest.mark.usefixtures("migrated")]

CCTV = SEOUL / "seoul_public_cctv_district_standard_2019_2020.csv"
BELLS = SEOUL / "seoul_safety_emergency_bells.csv"

ansim = typer.Typer()
ansim.add_typer(assets_app, name="assets")
runner = CliRunner()

#: 전국CCTV표준데이터 as the portal publishes it (the extract in ../shared dropped most columns).
STANDARD_CCTV_HEADER = (
    "관리기관명,소재지도로명주소,소재지지번주소,설치목적구분,카메라대수,카메라화소수,촬영방면정보,"
    "보관일수,설치년월,관리기관전화번호,위도,경도,데이터기준일자"
)


async def _import(pool, data: bytes, kind: str | None, *, source="test", **kw):
    async with pool.acquire() as conn:
        return await importer.import_assets(conn, data=data, kind=kind, source=source, **kw)


async def test_the_cctv_file_imports_every_site_in_seoul_and_every_camera(pool):
    rows = list(csv.DictReader(CCTV.open(encoding="utf-8-sig")))
    report = await _import(pool, CCTV.read_bytes(), "cctv", source="cctv-2019")
    assert report.rows == len(rows) == 26270
    # Every row is accounted for: imported, merged into an earlier row's site, or reported.
    stored = await pool.fetchval("SELECT count(*) FROM public_asset WHERE kind = 'cctv'")
    assert stored == report.inserted == report.rows - len(report.merged) - len(report.skipped)
    # The rows reported are the sites outside the city (the margin box keeps a few near it).
    assert report.skipped and all("outside the bounding box" in p.reason for p in report.skipped)
    for p in report.skipped:
        lat, lon = float(rows[p.row - 2]["위도"]), float(rows[p.row - 2]["경도"])
        assert not (37.41 <= lat <= 37.72 and 126.76 <= lon <= 127.19), p
    # Merged rows repeat an earlier site (office, position to 1e-6 degree, addresses up to
    # whitespace; ~3,080 rows, a few of them outside the city); no camera is lost in the merge.
    kept = {p.row for p in report.skipped}
    sites = [
        (r["관리기관명"], f"{float(r['위도']):.6f}", f"{float(r['경도']):.6f}",
         " ".join(r["지번주소"].split()), " ".join(r["도로명주소"].split()))
        for i, r in enumerate(rows, start=2)
        if i not in kept
    ]  # fmt: skip
    assert len(report.merged) == len(sites) - len(set(sites)) > 3000
    expected = sum(int(r["카메라대수"]) for i, r in enumerate(rows, start=2) if i not in kept)
    assert await pool.fetchval("SELECT sum(cameras) FROM public_asset") == expected
    # The office and the address are kept; the extract has no phone or direction.
    row = await pool.fetchrow(
        "SELECT office, address, cameras, phone, direction FROM public_asset"
        " WHERE address = '서울특별시 관악구 쑥고개로2라길 25'"
    )
    assert dict(row) == {
        "office": "관악구청",
        "address": "서울특별시 관악구 쑥고개로2라길 25",
        "cameras": 1,
        "phone": None,
        "direction": None,
    }

    ids = await pool.fetchval("SELECT array_agg(id ORDER BY id) FROM public_asset")
    again = await _import(pool, CCTV.read_bytes(), "cctv", source="cctv-2019")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, stored)
    assert await pool.fetchval("SELECT array_agg(id ORDER BY id) FROM public_asset") == ids


async def test_the_bell_file_imports_with_the_office_phone_and_reports_bad_rows(pool):
    report = await _import(pool, BELLS.read_bytes(), "bell", source="bells")
    assert report.rows == 13088
    reasons = {p.row: p.reason for p in report.skipped}
    # The bell in 서대문구 at 32.53, 123.77 (in the sea off China) is reported by its row.
    assert "outside the bounding box" in reasons[8617]
    assert report.inserted == 13088 - len(report.skipped)
    assert not report.merged
    assert all(("outside" in r) or ("same bell" in r) for r in reasons.values())
    row = await pool.fetchrow(
        "SELECT name, office, phone, address, ST_Y(geog::geometry) AS lat FROM public_asset"
        " WHERE kind = 'bell' AND name = '장안근린공원 화장실'"
    )
    assert dict(row) == {
        "name": "장안근린공원 화장실",
        "office": "서울특별시 동대문구 공원녹지과",
        "phone": "02-2127-4779",
        "address": "서울특별시 동대문구 장한로 191",
        "lat": pytest.approx(37.577102),
    }
    again = await _import(pool, BELLS.read_bytes(), "bell", source="bells")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, report.inserted)


def _standard_cctv(*rows: str) -> bytes:
    return ("\n".join([STANDARD_CCTV_HEADER, *rows]) + "\n").encode("cp949")


async def test_the_full_standard_layout_keeps_direction_purpose_and_phone_even_in_cp949(pool):
    data = _standard_cctv(
        "서울특별시 강남구청,서울특별시 강남구 테헤란로 152,서울특별시 강남구 역삼동 737,"
        "생활방범,4,200,역삼역 4번 출구 방면,30,2019-03,02-3423-6000,37.5006,127.0364,2020-04-01",
        "서울특별시 강남구청,,서울특별시 강남구 역삼동 738,어린이보호,2,200,,30,2019-03,"
        "02-3423-6000,37.5010,127.0370,2020-04-01",
    )
    report = await _import(pool, data, None)  # the kind is told by the header
    assert (report.kind, report.inserted, report.skipped) == ("cctv", 2, [])
    rows = await pool.fetch(
        "SELECT address, cameras, direction, purpose, phone FROM public_asset ORDER BY cameras"
    )
    assert [tuple(r) for r in rows] == [
        ("서울특별시 강남구 역삼동 738", 2, None, "어린이보호", "02-3423-6000"),
        ("서울특별시 강남구 테헤란로 152", 4, "역삼역 4번 출구 방면", "생활방범", "02-3423-6000"),
    ]


async def test_bad_rows_are_reported_by_row_number_and_the_good_ones_imported(pool):
    data = _standard_cctv(
        "강남구청,a,b,방범,1,,,,,,37.50,127.03,",  # row 2: good
        "강남구청,a,b,방범,1,,,,,,abc,127.03,",  # row 3
        "강남구청,a,b,방범,1,,,,,,,127.03,",  # row 4
        "강남구청,a,b,방범,0,,,,,,37.50,127.04,",  # row 5
        "강남구청,a,b,방범,many,,,,,,37.50,127.05,",  # row 6
        "강남구청,a,b,방범,1,,,,,,35.10,129.04,",  # row 7: Busan
        "강남구청,a,b,방범,1,,,,,,0,0,",  # row 8
        "",  # a blank line is not a row
        "강남구청,a,b,방범,3대,,,,,,37.51,127.03,",  # row 10: good ("3대" is 3)
    )
    report = await _import(pool, data, "cctv")
    assert [(p.row, p.reason.split(" ")[0]) for p in report.skipped] == [
        (3, "latitude"),
        (4, "latitude"),
        (5, "number"),
        (6, "number"),
        (7, "position"),
        (8, "coordinates"),
    ]
    assert report.inserted == 2
    assert await pool.fetchval("SELECT sum(cameras) FROM public_asset") == 4


async def test_strict_imports_nothing_when_a_row_is_bad(pool):
    data = _standard_cctv("강남구청,a,b,방범,1,,,,,,37.50,127.03,", "강남구청,a,b,방범,1,,,,,,x,1,")
    report = await _import(pool, data, "cctv", strict=True)
    assert report.refused and [p.row for p in report.skipped] == [3]
    assert await pool.fetchval("SELECT count(*) FROM public_asset") == 0


async def test_the_write_is_all_or_nothing(pool):
    def record(row: int, kind: str) -> AssetRecord:
        return AssetRecord(
            row=row, ref=f"r{row}", kind=kind, name=None, address=None, office=None, phone=None,
            cameras=1, direction=None, purpose=None, lat=37.5, lon=127.0,
        )  # fmt: skip

    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await importer.write_assets(
                conn, [record(2, "cctv"), record(3, "spaceship")], source="t", kind="cctv"
            )
    assert await pool.fetchval("SELECT count(*) FROM public_asset") == 0


async def test_a_changed_row_is_updated_and_missing_ones_deactivated_on_request(pool):
    first = _standard_cctv(
        "강남구청,a,b,방범,1,,,,,,37.50,127.03,", "강남구청,c,d,방범,1,,,,,,37.51,127.03,"
    )
    await _import(pool, first, "cctv")
    changed = _standard_cctv("강남구청,a,b,방범,5,,,,,,37.50,127.03,")
    report = await _import(pool, changed, "cctv", deactivate_missing=True)
    assert (report.inserted, report.updated, report.deactivated) == (0, 1, 1)
    rows = await pool.fetch("SELECT address, cameras, active FROM public_asset ORDER BY address")
    assert [tuple(r) for r in rows] == [("a", 5, True), ("c", 1, False)]
    # The bells of the same source are not touched by a CCTV import.
    with pytest.raises(ImportFailed, match="refusing"):
        await _import(pool, _standard_cctv(), "cctv", deactivate_missing=True)


async def test_file_level_problems_fail_clearly(pool):
    with pytest.raises(ImportFailed, match="not a bell file"):
        await _import(pool, CCTV.read_bytes(), "bell")
    with pytest.raises(ImportFailed, match="cannot tell the kind"):
        await _import(pool, b"a,b\n1,2\n", None)
    with pytest.raises(ImportFailed, match="empty"):
        await _import(pool, b"", "cctv")


def test_the_cli_imports_prints_json_and_refuses_under_strict(tmp_path):
    result = runner.invoke(ansim, ["assets", "import", "--kind", "bell", str(BELLS), "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["kind"], body["source"], body["rows"]) == ("bell", BELLS.stem, 13088)
    assert 8617 in {p["row"] for p in body["skipped"]}
    again = runner.invoke(ansim, ["assets", "import", str(BELLS)])  # kind told by the header
    assert again.exit_code == 0 and f"unchanged {body['inserted']}" in again.stdout

    bad = tmp_path / "cctv.csv"
    bad.write_bytes(_standard_cctv("강남구청,a,b,방범,1,,,,,,37.50,127.03,", "x,a,b,c,1,,,,,,y,1,"))
    strict = runner.invoke(ansim, ["assets", "import", "--kind", "cctv", str(bad), "--strict"])
    assert strict.exit_code == 1
    assert "skipped row 3: latitude 'y' is not a number" in strict.stderr
    assert "nothing imported" in strict.stderr
    unknown = runner.invoke(ansim, ["assets", "import", "--kind", "lamp", str(bad), "--json"])
    assert unknown.exit_code == 2 and json.loads(unknown.stdout)["error"] == "ImportFailed"
