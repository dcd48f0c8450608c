"""Importers never crash on arbitrary cell values: every row is imported or reported."""

from __future__ import annotations

import csv
import io
import json
import math
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.geo import importers
from app.geo.importers import ImportFailed

COLUMNS = ["name", "lat", "lon", "address", "phone", "hours", "kind", "is_safety_house"]
SPEC = importers.place_spec(mapping={c: c for c in COLUMNS}, bbox=importers.SEOUL_BBOX)

weird_numbers = st.sampled_from(
    ["", " ", "nan", "NaN", "inf", "-inf", "1e999", "37.5", " 37.55 ", "127.0", "0", "-0",
     "９", "3_7", "37,5", "+37.5", ".5", "5.", "1e-400", "0x25", "٣٧"]
)  # fmt: skip
coordinates = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(37.4, 37.7).map(str),
    st.floats(126.8, 127.2).map(str),
    weird_numbers,
    st.text(max_size=12),
)
cells = st.one_of(st.text(max_size=30), st.sampled_from(["", "\x00", "police_box", "지구대"]))
rows = st.lists(
    st.fixed_dictionaries(
        {
            "name": cells,
            "lat": coordinates,
            "lon": coordinates,
            "address": cells,
            "phone": cells,
            "hours": st.one_of(
                st.text(max_size=15),
                st.sampled_from(["22:00-06:00", "24시간", "9-18", "25:00-01:00", ""]),
            ),
            "kind": st.one_of(
                st.sampled_from([*sorted(importers.KINDS), "경찰서", "편의점", "청", ""]),
                st.text(max_size=8),
            ),
            "is_safety_house": st.one_of(st.sampled_from(["Y", "N", "", "maybe"]), cells),
        }
    ),
    max_size=12,
)

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _to_csv(records: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for r in records:
        writer.writerow([r[c] for c in COLUMNS])
    return out.getvalue().encode("utf-8", "surrogatepass")


@FUZZ
@given(records=rows)
async def test_every_row_is_imported_or_reported_whatever_its_cells(pool, records):
    source = f"fuzz-{uuid.uuid4()}"
    data = _to_csv(records)
    try:
        text = importers.decode(data)
    except ImportFailed:
        return  # lone surrogates: not a text file, refused as a whole
    async with pool.acquire() as conn:
        report = await importers.import_places(conn, data=data, spec=SPEC, source=source)

    read_back = list(csv.reader(io.StringIO(text, newline="")))[1:]
    non_blank = [r for r in read_back if any(c.strip() for c in r)]
    assert report.rows == len(non_blank)
    assert report.inserted + len(report.skipped) == report.rows
    assert all(p.reason and 2 <= p.row <= len(read_back) + 1 for p in report.skipped)
    stored = await pool.fetch(
        "SELECT name, ST_Y(geog::geometry) AS lat, ST_X(geog::geometry) AS lon"
        " FROM safe_place WHERE source = $1",
        source,
    )
    assert len(stored) == report.inserted
    min_lon, min_lat, max_lon, max_lat = importers.SEOUL_BBOX
    for s in stored:
        assert s["name"] and "\x00" not in s["name"]
        assert math.isfinite(s["lat"]) and min_lat <= s["lat"] <= max_lat
        assert math.isfinite(s["lon"]) and min_lon <= s["lon"] <= max_lon


@FUZZ
@given(data=st.binary(max_size=400))
async def test_arbitrary_bytes_are_refused_or_reported_never_a_crash(pool, data):
    async with pool.acquire() as conn:
        try:
            report = await importers.import_places(
                conn, data=b"name,lat,lon,kind\n" + data, spec=SPEC, source="fuzz-bytes"
            )
        except ImportFailed:
            return
    handled = report.inserted + report.updated + report.unchanged + len(report.skipped)
    assert handled == report.rows


@FUZZ
@given(
    features=st.lists(
        st.fixed_dictionaries(
            {
                "type": st.just("Feature"),
                "properties": st.dictionaries(
                    st.sampled_from(["code", "name", "name_en", "x"]),
                    st.one_of(st.text(max_size=10), st.integers(), st.none(), st.floats()),
                ),
                "geometry": st.one_of(
                    st.none(),
                    st.fixed_dictionaries(
                        {
                            "type": st.sampled_from(["Polygon", "MultiPolygon", "Point"]),
                            "coordinates": st.recursive(
                                st.floats(126.9, 127.1) | st.floats(37.4, 37.6) | st.text(),
                                lambda inner: st.lists(inner, max_size=6),
                                max_leaves=30,
                            ),
                        }
                    ),
                ),
            }
        ),
        max_size=6,
    )
)
async def test_arbitrary_geojson_features_are_imported_or_reported(pool, features):
    data = json.dumps({"type": "FeatureCollection", "features": features}).encode()
    async with pool.acquire() as conn:
        report = await importers.import_districts(
            conn, data=data, spec=importers.district_spec(mapping={"code": "code"})
        )
    assert report.inserted + report.updated + report.unchanged + len(report.skipped) == len(
        features
    )
