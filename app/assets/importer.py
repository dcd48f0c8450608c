"""Import CCTV sites and emergency bells from the public formats (issue 22 §1).

The files are Korea's standard data sets: 전국CCTV표준데이터 (and the merged per-district extract
of it that lists only the office, the number of cameras, the position and the addresses) and
전국안전비상벨위치표준데이터. One reader per kind takes whichever of a field's known columns the
header has, so the full standard layout and the extracts both import without a mapping.

As for safe places (app/geo/importers.py): reading is pure Python and every row is imported or
reported with its row number; writing is one set-based upsert in one transaction, so a file is
never half-imported; re-importing updates in place, matched on ``(source, external_ref)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg

from app.geo.importers import (
    SEOUL_BBOX,
    BBox,
    ImportFailed,
    ImportReport,
    RowProblem,
    _clean,
    _coordinate,
    _external_ref,
    decode,
    read_csv,
)
from app.models.asset import AssetKind

#: A field and the columns that may hold it, in order of preference (the standard data's names;
#: the CCTV extract names the addresses 지번주소 and 도로명주소).
Columns = Mapping[str, tuple[str, ...]]

CCTV_COLUMNS: Columns = {
    "lat": ("위도",),
    "lon": ("경도",),
    "office": ("관리기관명",),
    "phone": ("관리기관전화번호",),
    "road_address": ("소재지도로명주소", "도로명주소"),
    "lot_address": ("소재지지번주소", "지번주소"),
    "cameras": ("카메라대수",),
    "direction": ("촬영방면정보",),
    "purpose": ("설치목적구분",),
}
BELL_COLUMNS: Columns = {
    "lat": ("위도",),
    "lon": ("경도",),
    "office": ("관리기관명",),
    "phone": ("관리기관전화번호",),
    "road_address": ("소재지도로명주소",),
    "lot_address": ("소재지지번주소",),
    "ref": ("안전비상벨관리번호",),
    "name": ("설치위치",),
    "purpose": ("설치목적",),
}
COLUMNS: Mapping[str, Columns] = {AssetKind.cctv: CCTV_COLUMNS, AssetKind.bell: BELL_COLUMNS}
#: A header with one of these columns is that kind's file (``--kind`` may then be left out).
SIGNATURE: Mapping[str, str] = {AssetKind.cctv: "카메라대수", AssetKind.bell: "안전비상벨관리번호"}

_CAMERAS = re.compile(r"(\d{1,4})\s*(?:대)?", re.ASCII)


@dataclass(frozen=True)
class AssetRecord:
    row: int
    ref: str
    kind: str
    name: str | None
    address: str | None
    office: str | None
    phone: str | None
    cameras: int | None
    direction: str | None
    purpose: str | None
    lat: float
    lon: float


@dataclass
class AssetImportReport(ImportReport):
    kind: str = ""
    #: CCTV rows that repeat an earlier row's site (office, position, address, purpose,
    #: direction): imported as that site, their cameras added to it.
    merged: list[RowProblem] = field(default_factory=list)
    #: ``strict`` and some row was bad: nothing was written.
    refused: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            **super().as_json(),
            "kind": self.kind,
            "merged": [p.as_json() for p in self.merged],
            "refused": self.refused,
        }


def detect_kind(header: Sequence[str]) -> str | None:
    found = [k for k, column in SIGNATURE.items() if column in header]
    return found[0] if len(found) == 1 else None


def _resolve(header: Sequence[str], columns: Columns) -> dict[str, str]:
    """Each field's column in this file (fields whose columns it lacks are left out)."""
    present = set(header)
    return {f: next(c for c in names if c in present) for f, names in columns.items() if
            any(c in present for c in names)}  # fmt: skip


def read_assets(
    text: str, kind: str, *, bbox: BBox | None = SEOUL_BBOX
) -> tuple[list[AssetRecord], list[RowProblem], list[RowProblem]]:
    """Parse a CSV text of ``kind``: (good records, reported problems, merged CCTV rows)."""
    if kind not in COLUMNS:
        raise ImportFailed(f"unknown kind {kind!r}; kinds: {', '.join(COLUMNS)}")
    header, rows = read_csv(text)
    columns = _resolve(header, COLUMNS[kind])
    needed = ("lat", "lon", "ref") if kind == AssetKind.bell else ("lat", "lon")
    missing = [f"{f} ({' or '.join(COLUMNS[kind][f])})" for f in needed if f not in columns]
    if missing:
        raise ImportFailed(
            f"not a {kind} file: no column for {', '.join(missing)}"
            f" (the header has: {', '.join(header)})"
        )
    records: dict[str, AssetRecord] = {}
    problems: list[RowProblem] = []
    merged: list[RowProblem] = []
    for row_no, raw in rows:
        if isinstance(raw, str):
            problems.append(RowProblem(row_no, raw))
            continue
        result = _record(row_no, raw, columns, kind, bbox)
        if isinstance(result, str):
            problems.append(RowProblem(row_no, result))
            continue
        first = records.get(result.ref)
        if first is None:
            records[result.ref] = result
        elif kind == AssetKind.cctv:
            # The extract lists some sites several times (3,083 of 26,270 rows repeat an
            # earlier row but for the count): one site, its cameras counted together.
            cameras = (first.cameras or 0) + (result.cameras or 0) or None
            records[result.ref] = replace(first, cameras=cameras)
            merged.append(RowProblem(row_no, f"same site as row {first.row}: cameras added"))
        else:
            problems.append(RowProblem(row_no, f"same bell as row {first.row}: {result.ref}"))
    return list(records.values()), problems, merged


def _record(
    row_no: int, raw: Mapping[str, str], columns: Mapping[str, str], kind: str, bbox: BBox | None
) -> AssetRecord | str:
    def get(f: str) -> str:
        column = columns.get(f)
        return _clean(raw.get(column, "")) if column else ""

    lat = _coordinate(get("lat"), "latitude", -90.0, 90.0)
    if isinstance(lat, str):
        return lat
    lon = _coordinate(get("lon"), "longitude", -180.0, 180.0)
    if isinstance(lon, str):
        return lon
    if lat == 0.0 and lon == 0.0:
        return "coordinates are 0,0 (a missing position, not a place)"
    if bbox is not None:
        min_lon, min_lat, max_lon, max_lat = bbox
        if not (min_lat <= lat <= max_lat and min_lon <= lon <= max_lon):
            return f"position {lat},{lon} is outside the bounding box {bbox}"
    cameras: int | None = None
    if get("cameras"):
        m = _CAMERAS.fullmatch(get("cameras"))
        if m is None or int(m.group(1)) == 0:
            return f"number of cameras {get('cameras')[:40]!r} is not a whole number above 0"
        cameras = int(m.group(1))
    address = get("road_address") or get("lot_address") or None
    office, name = get("office") or None, get("name") or None
    if kind == AssetKind.bell:
        if not get("ref"):
            return "the bell's number (안전비상벨관리번호) is missing"
        # Numbers are per managing office ("1", "2" recur across districts), and one office
        # reuses a number for bells at different places.
        ref = _external_ref([office or "", get("ref"), name or ""])
    else:
        # The public CCTV files have no id: a site is its office, position, addresses, purpose
        # and direction (a corrected position is a new site; --deactivate-missing retires the
        # old one).
        ref = _external_ref(
            [office or "", f"{lat:.6f}", f"{lon:.6f}", get("road_address"), get("lot_address"),
             get("purpose"),
             get("direction")]
        )  # fmt: skip
    return AssetRecord(
        row=row_no,
        ref=ref,
        kind=kind,
        name=name,
        address=address,
        office=office,
        phone=get("phone") or None,
        cameras=cameras,
        direction=get("direction") or None,
        purpose=get("purpose") or None,
        lat=lat,
        lon=lon,
    )


_UPSERT = """
INSERT INTO public_asset AS a (id, kind, source, external_ref, name, address, office, phone,
                               cameras, direction, purpose, active, geog)
SELECT gen_random_uuid(), r.kind, $1, r.ref, r.name, r.address, r.office, r.phone, r.cameras,
       r.direction, r.purpose, true, ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326)::geography
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[],
            $9::text[], $10::text[], $11::float8[], $12::float8[])
     AS r(ref, kind, name, address, office, phone, cameras, direction, purpose, lat, lon)
ON CONFLICT (source, external_ref) DO UPDATE SET
  kind = EXCLUDED.kind, name = EXCLUDED.name, address = EXCLUDED.address,
  office = EXCLUDED.office, phone = EXCLUDED.phone, cameras = EXCLUDED.cameras,
  direction = EXCLUDED.direction, purpose = EXCLUDED.purpose, active = true,
  geog = EXCLUDED.geog, updated_at = now()
WHERE (a.kind, a.name, a.address, a.office, a.phone, a.cameras, a.direction, a.purpose,
       a.active, ST_AsBinary(a.geog))
      IS DISTINCT FROM
      (EXCLUDED.kind, EXCLUDED.name, EXCLUDED.address, EXCLUDED.office, EXCLUDED.phone,
       EXCLUDED.cameras, EXCLUDED.direction, EXCLUDED.purpose, true, ST_AsBinary(EXCLUDED.geog))
RETURNING (xmax = 0) AS inserted
"""

_DEACTIVATE_MISSING = """
UPDATE public_asset SET active = false, updated_at = now()
WHERE source = $1 AND kind = $2 AND active AND NOT (external_ref = ANY($3::text[]))
"""


class _DryRun(Exception):
    pass


async def write_assets(
    conn: asyncpg.Connection,
    records: Sequence[AssetRecord],
    *,
    source: str,
    kind: str,
    deactivate_missing: bool = False,
    dry_run: bool = False,
) -> tuple[int, int, int, int]:
    """Upsert ``records`` in one transaction: (inserted, updated, unchanged, deactivated)."""
    if deactivate_missing and not records:
        raise ImportFailed("no usable rows: refusing to deactivate every asset of this source")
    result = (0, 0, 0, 0)
    try:
        async with conn.transaction():
            rows = await conn.fetch(
                _UPSERT,
                source,
                [r.ref for r in records],
                [r.kind for r in records],
                [r.name for r in records],
                [r.address for r in records],
                [r.office for r in records],
                [r.phone for r in records],
                [r.cameras for r in records],
                [r.direction for r in records],
                [r.purpose for r in records],
                [r.lat for r in records],
                [r.lon for r in records],
            )
            inserted = sum(1 for r in rows if r["inserted"])
            deactivated = 0
            if deactivate_missing:
                status = await conn.execute(
                    _DEACTIVATE_MISSING, source, kind, [r.ref for r in records]
                )
                deactivated = int(status.rsplit(" ", 1)[1])
            result = (inserted, len(rows) - inserted, len(records) - len(rows), deactivated)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return result


async def import_assets(
    conn: asyncpg.Connection,
    *,
    data: bytes,
    kind: str | None,
    source: str,
    encoding: str | None = None,
    bbox: BBox | None = SEOUL_BBOX,
    deactivate_missing: bool = False,
    strict: bool = False,
    dry_run: bool = False,
) -> AssetImportReport:
    """Read a CSV file's bytes and upsert its good rows into ``public_asset`` (all or nothing;
    with ``strict``, nothing at all when a row is bad). ``kind`` None: told by the header."""
    text = decode(data, encoding)
    if kind is None:
        header, _ = read_csv(text)
        kind = detect_kind(header)
        if kind is None:
            raise ImportFailed(
                "cannot tell the kind from the header: give --kind " + " or --kind ".join(COLUMNS)
            )
    records, problems, merged = read_assets(text, kind, bbox=bbox)
    report = AssetImportReport(
        source=source,
        kind=kind,
        rows=len(records) + len(problems) + len(merged),
        skipped=problems,
        merged=merged,
        dry_run=dry_run,
    )
    if strict and problems:
        report.refused = True
        return report
    report.inserted, report.updated, report.unchanged, report.deactivated = await write_assets(
        conn,
        records,
        source=source,
        kind=kind,
        deactivate_missing=deactivate_missing,
        dry_run=dry_run,
    )
    return report
