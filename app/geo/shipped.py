"""Seoul's district and dong boundaries shipped in app/geo/data/seoul/ (Apache-2.0, from
southkorea/seoul-maps; its README says how they were simplified, NOTICE and LICENSE go with them).
The only real data in the project: the demo city is built on the districts, and the maps draw
the dongs faintly so that a map without tiles still shows where a point is."""

from __future__ import annotations

from pathlib import Path

from app.geo.importers import DistrictRecord, ImportFailed, district_spec, read_districts

SEOUL_DATA = Path(__file__).resolve().parent / "data" / "seoul"
SEOUL_DISTRICTS = SEOUL_DATA / "districts.geojson"
SEOUL_DONGS = SEOUL_DATA / "dongs.geojson"
#: The importer preset that reads the districts file (its properties are JUSO's).
DISTRICTS_PRESET = "seoul-gu-juso"


def seoul_districts() -> list[DistrictRecord]:
    """The 25 districts, read as ``ansim districts import`` reads them."""
    spec = district_spec(preset=DISTRICTS_PRESET)
    records, problems = read_districts(SEOUL_DISTRICTS.read_text(encoding="utf-8"), spec)
    if problems:
        raise ImportFailed(f"{SEOUL_DISTRICTS}: {[p.as_json() for p in problems]}")
    return records
