"""The Seoul boundaries shipped in app/geo/data/seoul/: only the Apache-2.0 files, with their
licence and attribution beside them, importable as an operator would import them; and nothing
of the shared data whose licence is unclear is in the project."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from app.geo.importers import SEOUL_SIG_CD, detect_district_preset, import_districts
from app.geo.shipped import DISTRICTS_PRESET, SEOUL_DATA, SEOUL_DISTRICTS, SEOUL_DONGS
from app.geo.shipped import seoul_districts as shipped_districts
from tests.conftest import ROOT, SEOUL, needs_seoul_data

UPSTREAM = "southkorea/seoul-maps"


def test_the_data_directory_holds_the_two_files_with_their_licence_and_attribution() -> None:
    assert sorted(p.name for p in SEOUL_DATA.iterdir()) == [
        "LICENSE",
        "NOTICE",
        "README.md",
        "districts.geojson",
        "dongs.geojson",
    ]
    licence = (SEOUL_DATA / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "4. Redistribution." in licence and "END OF TERMS AND CONDITIONS" in licence
    notice = (SEOUL_DATA / "NOTICE").read_text()
    assert UPSTREAM in notice and "Apache License, Version 2.0" in notice
    assert "Lucy Park" in notice and "Modified" in notice  # Apache-2.0 4(b): changes stated
    readme = (SEOUL_DATA / "README.md").read_text()
    assert "scripts/seoul_boundaries.py" in readme and "ST_SimplifyPreserveTopology" in readme
    for path in (SEOUL_DISTRICTS, SEOUL_DONGS):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["source"].startswith(UPSTREAM) and doc["license"].startswith("Apache-2.0")
        assert path.stat().st_size < 300_000  # simplified, not the 1.6 MB original
    # The project's README says what it ships and under which licence.
    top = (ROOT / "README.md").read_text()
    assert "app/geo/data/seoul/" in top and UPSTREAM in top and "Apache-2.0" in top


def test_the_package_ships_the_data_directory() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"geo/data/seoul/*"' in pyproject  # a wheel or the image without it has no demo city


def test_the_districts_are_the_25_with_their_standard_codes_and_names() -> None:
    records = shipped_districts()
    assert {r.name: r.code for r in records} == dict(SEOUL_SIG_CD)
    assert all(r.name_en and r.name_en.endswith("-gu") for r in records)
    doc = json.loads(SEOUL_DISTRICTS.read_text(encoding="utf-8"))
    assert detect_district_preset(doc["features"][0]["properties"]) == DISTRICTS_PRESET


def test_every_dong_names_a_shipped_district() -> None:
    dongs = json.loads(SEOUL_DONGS.read_text(encoding="utf-8"))["features"]
    codes = {r.code for r in shipped_districts()}
    assert len(dongs) == 467
    assert {f["properties"]["SIG_CD"] for f in dongs} == codes
    assert all(f["properties"]["EMD_CD"].startswith(f["properties"]["SIG_CD"]) for f in dongs)
    assert all(f["properties"]["EMD_KOR_NM"] for f in dongs)


async def test_the_districts_import_as_an_operator_imports_them_valid_and_unrepaired(
    pool,
) -> None:
    from app.geo.importers import district_spec

    async with pool.acquire() as conn:
        report = await import_districts(
            conn, data=SEOUL_DISTRICTS.read_bytes(), spec=district_spec(preset=DISTRICTS_PRESET)
        )
        assert (report.inserted, report.skipped, report.repaired) == (25, [], [])
        # One shared border between neighbours: no overlaps, no holes in the city.
        overlap, holes = await conn.fetchrow(
            "SELECT sum(ST_Area(boundary::geography)) - ST_Area(ST_Union(boundary)::geography),"
            " (SELECT sum(ST_NumInteriorRings(d.geom))"
            "  FROM ST_Dump((SELECT ST_Union(boundary) FROM district)) d)"
            " FROM district"
        )
    assert abs(overlap) < 1.0 and holes == 0


@needs_seoul_data
def test_the_districts_match_the_upstream_file_they_were_made_from() -> None:
    source = json.loads((SEOUL / "seoul_gu_boundaries_juso2015.geojson").read_text())
    upstream = {
        f["properties"]["SIG_CD"]: (f["properties"]["SIG_KOR_NM"], f["properties"]["SIG_ENG_NM"])
        for f in source["features"]
    }
    assert {r.code: (r.name, r.name_en) for r in shipped_districts()} == upstream


@needs_seoul_data
def test_no_shared_file_of_unclear_licence_is_in_the_project() -> None:
    """The other Seoul files are read from ../shared by tests and the benchmark, never copied:
    no tracked file has the content of one, or carries its distinctive column names."""
    shared = {
        hashlib.sha256(p.read_bytes()).hexdigest(): p.name for p in SEOUL.iterdir() if p.is_file()
    }
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    markers = [  # one from each header of the other files
        "안전비상벨관리번호",
        "관리기관명,카메라대수",
        "number_address,tel_number",
        "지구대파출소,X좌표",
        "관서명,동,구분",
        "강간강제추행_발생",
    ]
    for name in filter(None, tracked):
        path = ROOT / name.decode()
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() not in shared, path
        if path.suffix in (".csv", ".geojson", ".json"):
            text = data.decode("utf-8", "replace")
            assert not any(m in text for m in markers), path


@pytest.mark.parametrize("path", [SEOUL_DISTRICTS, SEOUL_DONGS])
def test_the_shipped_files_are_compact_json_one_feature_a_line(path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(json.loads(path.read_text(encoding="utf-8"))["features"]) + 2
