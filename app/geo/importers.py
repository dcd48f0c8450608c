"""Importers for safe places (CSV) and districts (GeoJSON), with presets for Seoul's open data.

Both importers work in two phases. Reading is pure Python: every row (or feature) either becomes
a clean record or a :class:`RowProblem` with its row number and the reason, so nothing is dropped
silently. Writing sends all clean records in one set-based statement (``unnest`` of arrays) inside
one transaction: either every good row is in the database or none is. Re-importing the same file
updates rows in place, matched on ``(source, external_ref)`` for places and ``code`` for districts.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any

import asyncpg

from app.models.geo import PlaceKind

BBox = tuple[float, float, float, float]
"""(min_lon, min_lat, max_lon, max_lat) in degrees."""

#: Seoul with a margin (the city spans lat 37.41-37.72, lon 126.76-127.19).
SEOUL_BBOX: BBox = (126.70, 37.38, 127.25, 37.75)

PLACE_FIELDS = (
    "name",
    "lat",
    "lon",
    "address",
    "phone",
    "kind",
    "ref",
    "opens_at",
    "closes_at",
    "hours",
    "open_24h",
    "is_safety_house",
)
DISTRICT_FIELDS = ("code", "name", "name_en")

KINDS = frozenset(k.value for k in PlaceKind)

#: Korean labels of place types in the public files, matched exactly or as a name suffix.
#: 치안센터 (security centres) are small posts that are mostly unstaffed at night, so they are
#: "other" and not open 24h: a woman at 1 a.m. must not be sent to a locked door. The 서울청
#: headquarters has no public front desk for reports, so it is "other" too.
KIND_LABELS: Mapping[str, str] = {
    "경찰서": PlaceKind.police_station,
    "지구대": PlaceKind.police_box,
    "파출소": PlaceKind.police_box,
    "순찰대": PlaceKind.police_box,
    "치안센터": PlaceKind.other,
    "청": PlaceKind.other,
    "편의점": PlaceKind.convenience_store,
    "안심지킴이집": PlaceKind.safety_house,
    "여성안심지킴이집": PlaceKind.safety_house,
}

#: The standard 시군구 codes (SIG_CD) of Seoul's 25 districts, by name. KOSTAT census codes
#: reuse the same numbers for other districts (KOSTAT 11140 is 마포구, SIG_CD 11140 is 중구),
#: so the KOSTAT preset stores SIG_CD codes: one code scheme in the database.
SEOUL_SIG_CD: Mapping[str, str] = {
    "종로구": "11110",
    "중구": "11140",
    "용산구": "11170",
    "성동구": "11200",
    "광진구": "11215",
    "동대문구": "11230",
    "중랑구": "11260",
    "성북구": "11290",
    "강북구": "11305",
    "도봉구": "11320",
    "노원구": "11350",
    "은평구": "11380",
    "서대문구": "11410",
    "마포구": "11440",
    "양천구": "11470",
    "강서구": "11500",
    "구로구": "11530",
    "금천구": "11545",
    "영등포구": "11560",
    "동작구": "11590",
    "관악구": "11620",
    "서초구": "11650",
    "강남구": "11680",
    "송파구": "11710",
    "강동구": "11740",
}


class ImportFailed(Exception):
    """The file as a whole cannot be imported (unreadable, wrong columns, unknown preset)."""


@dataclass(frozen=True)
class RowProblem:
    #: Spreadsheet row number for CSV (the header is row 1), 1-based feature number for GeoJSON.
    row: int
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"row": self.row, "reason": self.reason}


@dataclass
class ImportReport:
    source: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    skipped: list[RowProblem] = field(default_factory=list)
    #: Rows imported after a repair (districts: invalid polygons fixed with ST_MakeValid).
    repaired: list[RowProblem] = field(default_factory=list)
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deactivated": self.deactivated,
            "skipped": [p.as_json() for p in self.skipped],
            "repaired": [p.as_json() for p in self.repaired],
            "dry_run": self.dry_run,
        }


# --- specs and presets ---------------------------------------------------------------------


@dataclass(frozen=True)
class PlaceSpec:
    """How to read one CSV layout: which column holds which field, and the fixed values."""

    columns: Mapping[str, str]
    #: The kind when no ``kind`` column is mapped.
    kind: str | None = None
    #: Open 24h when no ``open_24h``/``hours`` column is mapped; None means "by kind": police
    #: stations and boxes are open around the clock, other kinds have unknown hours.
    open_24h: bool | None = None
    is_safety_house: bool = False
    #: Fields joined to make the external reference when no ``ref`` column is mapped.
    ref_fields: tuple[str, ...] = ()
    #: Builds the display name from the raw row, when one column is not enough.
    name_fn: Callable[[Mapping[str, str]], str] | None = None
    bbox: BBox | None = None


@dataclass(frozen=True)
class DistrictSpec:
    columns: Mapping[str, str]
    #: Replace the file's code by the standard SIG_CD code looked up by name.
    code_by_name: Mapping[str, str] | None = None


def _police_centre_name(row: Mapping[str, str]) -> str:
    office, kind = row.get("관서명", "").strip(), row.get("구분", "").strip()
    if kind == "경찰서":
        return f"{row.get('경찰서', '').strip() or office}경찰서"
    if kind == "청":
        return "서울지방경찰청"
    return f"{office}{kind}"


PLACE_PRESETS: Mapping[str, PlaceSpec] = {
    # 여성안심지킴이집: 24-hour convenience stores designated as Safety Houses.
    "seoul-safety-houses": PlaceSpec(
        columns={
            "name": "name",
            "lat": "lat",
            "lon": "lng",
            "address": "road_address",
            "phone": "tel_number",
        },
        kind=PlaceKind.convenience_store,
        open_24h=True,
        is_safety_house=True,
        # 17 names repeat across branches and 2 coordinate pairs are shared by two stores in
        # one building; name + road address is unique and survives a coordinate correction.
        ref_fields=("name", "address"),
        bbox=SEOUL_BBOX,
    ),
    # 경찰관서 위치 2020: X좌표 is the longitude and Y좌표 the latitude.
    "seoul-police-2020": PlaceSpec(
        columns={
            "name": "지구대파출소",
            "kind": "지구대파출소",
            "lat": "Y좌표",
            "lon": "X좌표",
            "address": "주소",
        },
        ref_fields=("서", "name"),
        bbox=SEOUL_BBOX,
    ),
    # 경찰서/지구대/파출소/치안센터 with lat/lon; 관서명 repeats for the 치안센터 of one 지구대.
    "seoul-police-centres": PlaceSpec(
        columns={
            "name": "관서명",
            "kind": "구분",
            "lat": "위도",
            "lon": "경도",
            "address": "주소",
        },
        ref_fields=("경찰서", "관서명", "구분", "address"),
        name_fn=_police_centre_name,
        bbox=SEOUL_BBOX,
    ),
}

DISTRICT_PRESETS: Mapping[str, DistrictSpec] = {
    "seoul-gu-juso": DistrictSpec(
        columns={"code": "SIG_CD", "name": "SIG_KOR_NM", "name_en": "SIG_ENG_NM"}
    ),
    "seoul-gu-kostat": DistrictSpec(
        columns={"code": "code", "name": "name", "name_en": "name_eng"},
        code_by_name=SEOUL_SIG_CD,
    ),
}


def place_spec(
    *,
    preset: str | None = None,
    mapping: Mapping[str, str] | None = None,
    kind: str | None = None,
    bbox: BBox | None = None,
    use_bbox: bool = True,
    open_24h: bool | None = None,
    is_safety_house: bool | None = None,
) -> PlaceSpec:
    """A preset, with ``mapping`` (field -> column) and the other options laid over it."""
    if preset is not None:
        if preset not in PLACE_PRESETS:
            raise ImportFailed(f"unknown preset {preset!r}; known: {', '.join(PLACE_PRESETS)}")
        base = PLACE_PRESETS[preset]
    else:
        base = PlaceSpec(columns={}, ref_fields=("name", "address"))
    columns = dict(base.columns)
    for f, column in (mapping or {}).items():
        if f not in PLACE_FIELDS:
            raise ImportFailed(f"unknown field {f!r}; fields: {', '.join(PLACE_FIELDS)}")
        columns[f] = column
    if kind is not None and kind not in KINDS:
        raise ImportFailed(f"unknown kind {kind!r}; kinds: {', '.join(sorted(KINDS))}")
    if kind is not None:
        columns.pop("kind", None)
    return PlaceSpec(
        columns=columns,
        kind=kind if kind is not None else base.kind,
        open_24h=open_24h if open_24h is not None else base.open_24h,
        is_safety_house=is_safety_house if is_safety_house is not None else base.is_safety_house,
        ref_fields=base.ref_fields,
        name_fn=base.name_fn if "name" not in (mapping or {}) else None,
        bbox=(bbox or base.bbox) if use_bbox else None,
    )


def district_spec(
    *, preset: str | None = None, mapping: Mapping[str, str] | None = None
) -> DistrictSpec:
    if preset is not None:
        if preset not in DISTRICT_PRESETS:
            known = ", ".join(DISTRICT_PRESETS)
            raise ImportFailed(f"unknown preset {preset!r}; known: {known}")
        base = DISTRICT_PRESETS[preset]
    else:
        base = DistrictSpec(columns={"code": "code", "name": "name", "name_en": "name_en"})
    columns = dict(base.columns)
    for f, prop in (mapping or {}).items():
        if f not in DISTRICT_FIELDS:
            raise ImportFailed(f"unknown field {f!r}; fields: {', '.join(DISTRICT_FIELDS)}")
        columns[f] = prop
    return DistrictSpec(columns=columns, code_by_name=base.code_by_name)


def detect_place_preset(header: Sequence[str]) -> str | None:
    """The one preset whose columns are all in ``header``, if exactly one is."""
    names = {h.strip() for h in header}
    found = [n for n, s in PLACE_PRESETS.items() if set(s.columns.values()) <= names]
    return found[0] if len(found) == 1 else None


def detect_district_preset(properties: Mapping[str, Any]) -> str | None:
    found = [n for n, s in DISTRICT_PRESETS.items() if set(s.columns.values()) <= properties.keys()]
    return found[0] if len(found) == 1 else None


# --- reading -------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_TIME = re.compile(r"(\d{1,2})(?::|시\s*)?(\d{2})?\s*분?", re.ASCII)
_HOURS_SPLIT = re.compile(r"\s*[-~–〜]\s*")
_TRUE = {"y", "yes", "true", "t", "1", "o", "예", "24", "24h", "24시간", "24시"}
_FALSE = {"n", "no", "false", "f", "0", "x", "아니오", "아니요"}
_ALWAYS = {"24h", "24시간", "24시", "연중무휴24시간", "00:00-24:00", "0:00-24:00", "00:00~24:00"}


def decode(data: bytes, encoding: str | None = None) -> str:
    """Text of a data file: UTF-8 (BOM or not) by default, else CP949 (older Korean files)."""
    if encoding:
        enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        try:
            return data.decode(enc)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ImportFailed(f"cannot decode the file as {encoding}: {exc}") from exc
    for enc in ("utf-8-sig", "cp949"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise ImportFailed("cannot decode the file as UTF-8 or CP949; pass --encoding")


def _clean(value: str | None) -> str:
    # PostgreSQL text cannot hold NUL; collapse runs of whitespace (incl. newlines in cells).
    if not value:
        return ""
    return " ".join(value.replace("\x00", "").split())


def _coordinate(raw: str, what: str, low: float, high: float) -> float | str:
    text = _clean(raw)
    if not text:
        return f"{what} is missing"
    if not _NUMBER.fullmatch(text):
        return f"{what} {text[:40]!r} is not a number"
    value = float(text)
    if not math.isfinite(value):
        return f"{what} {text[:40]!r} is not finite"
    if not low <= value <= high:
        return f"{what} {value} is out of range [{low:g}, {high:g}]"
    return value


def _parse_time(text: str) -> time | None:
    m = _TIME.fullmatch(text.strip())
    if not m:
        return None
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    if hour == 24 and minute == 0:
        return time(0, 0)
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _parse_hours(text: str) -> tuple[bool, time | None, time | None] | str:
    """(open_24h, opens_at, closes_at) from "22:00-06:00", "24시간", ... or a reason."""
    compact = text.replace(" ", "").lower()
    if compact in _ALWAYS:
        return True, None, None
    parts = _HOURS_SPLIT.split(text.strip())
    if len(parts) != 2:
        return f"opening hours {text[:40]!r} are not like 09:00-22:00"
    opens, closes = _parse_time(parts[0]), _parse_time(parts[1])
    if opens is None or closes is None:
        return f"opening hours {text[:40]!r} are not like 09:00-22:00"
    if opens == closes:
        return True, None, None
    return False, opens, closes


def _parse_bool(text: str) -> bool | None:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    return None


def _kind_of(text: str) -> str | None:
    t = text.strip()
    if t.lower() in KINDS:
        return t.lower()
    if t in KIND_LABELS:
        return KIND_LABELS[t]
    # Office names carry their type as a suffix: 논현1파출소, 서울강남경찰서, 서울청.
    for label in sorted(KIND_LABELS, key=len, reverse=True):
        if t.endswith(label):
            return KIND_LABELS[label]
    return None


@dataclass(frozen=True)
class PlaceRecord:
    row: int
    ref: str
    kind: str
    name: str
    address: str | None
    phone: str | None
    open_24h: bool
    opens_at: time | None
    closes_at: time | None
    is_safety_house: bool
    lat: float
    lon: float


def _external_ref(parts: Iterable[str]) -> str:
    joined = "|".join(parts)
    # Keep refs readable, but bounded: a long ref is replaced by its hash (stable all the same).
    if len(joined) <= 200:
        return joined
    return "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


def read_csv(text: str) -> tuple[list[str], Iterator[tuple[int, dict[str, str] | str]]]:
    """A CSV text's header (cleaned, BOM dropped) and its rows, lazily: (row number, the cells by
    column name) or (row number, why the row cannot be read). Row numbers are spreadsheet rows
    (the header is row 1); blank lines are not rows."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [_clean(h).lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise ImportFailed("the file is empty") from None
    except csv.Error as exc:
        raise ImportFailed(f"cannot read the CSV header: {exc}") from exc
    index = {h: i for i, h in reversed(list(enumerate(header)))}

    def rows() -> Iterator[tuple[int, dict[str, str] | str]]:
        row_no = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row_no += 1
                yield row_no, f"unreadable CSV row: {exc}"
                continue
            row_no += 1
            if not any(c.strip() for c in cells):
                continue
            yield row_no, {h: (cells[i] if i < len(cells) else "") for h, i in index.items()}

    return header, rows()


def read_places(
    text: str, spec: PlaceSpec
) -> tuple[list[PlaceRecord], list[RowProblem], list[str]]:
    """Parse a CSV text: (good records, reported problems, header)."""
    header, rows = read_csv(text)
    columns = dict(spec.columns)
    if spec.kind is None and "kind" not in columns:
        raise ImportFailed("no kind: map a kind column (--map kind=COLUMN) or give --kind")
    for required in ("name", "lat", "lon"):
        if required not in columns and not (required == "name" and spec.name_fn):
            raise ImportFailed(f"no column mapped to {required!r} (--map {required}=COLUMN)")
    raw_columns = set(columns.values()) | {c for c in spec.ref_fields if c not in PLACE_FIELDS}
    missing = sorted(c for c in raw_columns if c not in header)
    if missing:
        raise ImportFailed(
            f"columns not in the file: {', '.join(missing)} (the header has: {', '.join(header)})"
        )

    records: list[PlaceRecord] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    for row_no, raw in rows:
        if isinstance(raw, str):
            problems.append(RowProblem(row_no, raw))
            continue
        result = _place_record(row_no, raw, columns, spec)
        if isinstance(result, str):
            problems.append(RowProblem(row_no, result))
            continue
        first = seen.setdefault(result.ref, row_no)
        if first != row_no:
            problems.append(RowProblem(row_no, f"same external ref as row {first}: {result.ref}"))
            continue
        records.append(result)
    return records, problems, header


def _place_record(
    row_no: int, raw: Mapping[str, str], columns: Mapping[str, str], spec: PlaceSpec
) -> PlaceRecord | str:
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
    if spec.bbox is not None:
        min_lon, min_lat, max_lon, max_lat = spec.bbox
        if not (min_lat <= lat <= max_lat and min_lon <= lon <= max_lon):
            return f"position {lat},{lon} is outside the bounding box {spec.bbox}"

    name = _clean(spec.name_fn(raw)) if spec.name_fn else get("name")
    if not name:
        return "name is missing"

    if "kind" in columns:
        label = get("kind")
        found = _kind_of(label)
        if found is None:
            return f"unknown kind {label[:40]!r}"
        kind = found
    else:
        assert spec.kind is not None
        kind = spec.kind

    open_24h: bool
    opens_at = closes_at = None
    if "hours" in columns and get("hours"):
        hours = _parse_hours(get("hours"))
        if isinstance(hours, str):
            return hours
        open_24h, opens_at, closes_at = hours
    elif "opens_at" in columns and (get("opens_at") or get("closes_at")):
        hours = _parse_hours(f"{get('opens_at')}-{get('closes_at')}")
        if isinstance(hours, str):
            return hours
        open_24h, opens_at, closes_at = hours
    elif "open_24h" in columns and get("open_24h"):
        flag = _parse_bool(get("open_24h"))
        if flag is None:
            return f"open_24h {get('open_24h')[:40]!r} is not yes/no"
        open_24h = flag
    elif spec.open_24h is not None:
        open_24h = spec.open_24h
    else:
        open_24h = kind in (PlaceKind.police_station, PlaceKind.police_box)

    is_safety_house = spec.is_safety_house
    if "is_safety_house" in columns and get("is_safety_house"):
        flag = _parse_bool(get("is_safety_house"))
        if flag is None:
            return f"is_safety_house {get('is_safety_house')[:40]!r} is not yes/no"
        is_safety_house = flag

    ref = get("ref") if "ref" in columns else ""
    usable = all(f in columns or f not in PLACE_FIELDS or f == "name" for f in spec.ref_fields)
    if not ref and spec.ref_fields and usable:
        values = {"name": name, "address": get("address")}
        parts = [values[f] if f in values else _clean(raw.get(f, "")) for f in spec.ref_fields]
        if all(parts):
            ref = _external_ref(parts)
    if not ref:
        # Without a key column or an address, the position is the best key there is.
        ref = _external_ref([name, f"{lat:.6f}", f"{lon:.6f}"])

    return PlaceRecord(
        row=row_no,
        ref=ref,
        kind=kind,
        name=name,
        address=get("address") or None,
        phone=get("phone") or None,
        open_24h=open_24h,
        opens_at=opens_at,
        closes_at=closes_at,
        is_safety_house=is_safety_house,
        lat=lat,
        lon=lon,
    )


@dataclass(frozen=True)
class DistrictRecord:
    row: int
    code: str
    name: str
    name_en: str | None
    geojson: str


def read_districts(text: str, spec: DistrictSpec) -> tuple[list[DistrictRecord], list[RowProblem]]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ImportFailed(f"not JSON: {exc}") from exc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    else:
        raise ImportFailed("not a GeoJSON FeatureCollection or Feature")
    if not isinstance(features, list):
        raise ImportFailed("the FeatureCollection has no features list")

    records: list[DistrictRecord] = []
    problems: list[RowProblem] = []
    seen: dict[str, int] = {}
    for n, feature in enumerate(features, start=1):
        result = _district_record(n, feature, spec)
        if isinstance(result, str):
            problems.append(RowProblem(n, result))
            continue
        first = seen.setdefault(result.code, n)
        if first != n:
            problems.append(RowProblem(n, f"same code {result.code} as feature {first}"))
            continue
        records.append(result)
    return records, problems


def _prop(props: Mapping[str, Any], key: str | None) -> str:
    if key is None:
        return ""
    value = props.get(key)
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return _clean(str(value))


def _district_record(n: int, feature: Any, spec: DistrictSpec) -> DistrictRecord | str:
    if not isinstance(feature, dict):
        return "not a GeoJSON Feature"
    props = feature.get("properties")
    props = props if isinstance(props, dict) else {}
    name = _prop(props, spec.columns.get("name"))
    if not name:
        return f"property {spec.columns.get('name')!r} (name) is missing"
    if spec.code_by_name is not None:
        code = spec.code_by_name.get(name, "")
        if not code:
            return f"no standard district code known for {name!r}"
    else:
        code = _prop(props, spec.columns.get("code"))
        if not code:
            return f"property {spec.columns.get('code')!r} (code) is missing"
        if len(code) > 32:
            return f"code {code[:40]!r} is longer than 32 characters"
    problem = _polygon_problem(feature.get("geometry"))
    if problem:
        return problem
    return DistrictRecord(
        row=n,
        code=code,
        name=name,
        name_en=_prop(props, spec.columns.get("name_en")) or None,
        geojson=json.dumps(feature["geometry"]),
    )


def _polygon_problem(geometry: Any) -> str | None:
    """Why this is not a well-formed GeoJSON (Multi)Polygon in lon/lat, or None."""
    if not isinstance(geometry, dict):
        return "geometry is missing"
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        polygons = [coords]
    elif kind == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            return "MultiPolygon has no polygons"
        polygons = coords
    else:
        return f"geometry type {str(kind)[:40]!r} is not Polygon or MultiPolygon"
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            return "polygon has no rings"
        for ring in polygon:
            if not isinstance(ring, list) or len(ring) < 4:
                return "ring has fewer than 4 positions"
            for pos in ring:
                if (
                    not isinstance(pos, list)
                    or not 2 <= len(pos) <= 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pos)
                    or not all(math.isfinite(v) for v in pos)
                ):
                    return "position is not a pair of finite numbers"
                if not (-180 <= pos[0] <= 180 and -90 <= pos[1] <= 90):
                    return f"position {pos[:2]} is not lon/lat in degrees"
            if ring[0][:2] != ring[-1][:2]:
                return "ring is not closed (first and last positions differ)"
    return None


# --- writing -------------------------------------------------------------------------------

_UPSERT_PLACES = """
INSERT INTO safe_place AS p (id, source, external_ref, kind, name, address, phone, open_24h,
                             opens_at, closes_at, is_safety_house, active, geog)
SELECT gen_random_uuid(), $1, r.ref, r.kind, r.name, r.address, r.phone, r.open_24h,
       r.opens_at, r.closes_at, r.is_safety_house, true,
       ST_SetSRID(ST_MakePoint(r.lon, r.lat), 4326)::geography
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[],
            $8::time[], $9::time[], $10::bool[], $11::float8[], $12::float8[])
     AS r(ref, kind, name, address, phone, open_24h, opens_at, closes_at, is_safety_house,
          lat, lon)
ON CONFLICT (source, external_ref) DO UPDATE SET
  kind = EXCLUDED.kind, name = EXCLUDED.name, address = EXCLUDED.address,
  phone = EXCLUDED.phone, open_24h = EXCLUDED.open_24h, opens_at = EXCLUDED.opens_at,
  closes_at = EXCLUDED.closes_at, is_safety_house = EXCLUDED.is_safety_house, active = true,
  geog = EXCLUDED.geog, updated_at = now()
WHERE (p.kind, p.name, p.address, p.phone, p.open_24h, p.opens_at, p.closes_at,
       p.is_safety_house, p.active, ST_AsBinary(p.geog))
      IS DISTINCT FROM
      (EXCLUDED.kind, EXCLUDED.name, EXCLUDED.address, EXCLUDED.phone, EXCLUDED.open_24h,
       EXCLUDED.opens_at, EXCLUDED.closes_at, EXCLUDED.is_safety_house, true,
       ST_AsBinary(EXCLUDED.geog))
RETURNING (xmax = 0) AS inserted
"""

_DEACTIVATE_MISSING = """
UPDATE safe_place SET active = false, updated_at = now()
WHERE source = $1 AND active AND NOT (external_ref = ANY($2::text[]))
"""

_CHECK_BOUNDARIES = """
WITH g AS (
  SELECT r.i, ST_SetSRID(ST_Force2D(ST_GeomFromGeoJSON(r.gj)), 4326) AS raw
  FROM unnest($1::int[], $2::text[]) AS r(i, gj)
), fixed AS (
  SELECT i, ST_IsValid(raw) AS was_valid,
         CASE WHEN ST_IsValid(raw) THEN NULL ELSE ST_IsValidReason(raw) END AS reason,
         ST_Multi(CASE WHEN ST_IsValid(raw) THEN raw
                       ELSE ST_CollectionExtract(ST_MakeValid(raw), 3) END) AS geom
  FROM g
)
SELECT i, was_valid, reason,
       CASE WHEN NOT ST_IsEmpty(geom) AND ST_IsValid(geom) THEN ST_AsEWKB(geom) END AS ewkb
FROM fixed
"""

_UPSERT_DISTRICTS = """
INSERT INTO district AS d (id, code, name, name_en, boundary)
SELECT gen_random_uuid(), r.code, r.name, r.name_en, ST_GeomFromEWKB(r.ewkb)
FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS r(code, name, name_en, ewkb)
ON CONFLICT (code) DO UPDATE SET
  name = EXCLUDED.name, name_en = EXCLUDED.name_en, boundary = EXCLUDED.boundary
WHERE (d.name, d.name_en, ST_AsBinary(d.boundary))
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.name_en, ST_AsBinary(EXCLUDED.boundary))
RETURNING (xmax = 0) AS inserted
"""


class _DryRun(Exception):
    pass


async def write_places(
    conn: asyncpg.Connection,
    records: Sequence[PlaceRecord],
    *,
    source: str,
    deactivate_missing: bool = False,
    dry_run: bool = False,
) -> tuple[int, int, int, int]:
    """Upsert ``records`` in one transaction: (inserted, updated, unchanged, deactivated)."""
    if deactivate_missing and not records:
        raise ImportFailed("no usable rows: refusing to deactivate every place of this source")
    result = (0, 0, 0, 0)
    try:
        async with conn.transaction():
            rows = await conn.fetch(
                _UPSERT_PLACES,
                source,
                [r.ref for r in records],
                [r.kind for r in records],
                [r.name for r in records],
                [r.address for r in records],
                [r.phone for r in records],
                [r.open_24h for r in records],
                [r.opens_at for r in records],
                [r.closes_at for r in records],
                [r.is_safety_house for r in records],
                [r.lat for r in records],
                [r.lon for r in records],
            )
            inserted = sum(1 for r in rows if r["inserted"])
            updated = len(rows) - inserted
            deactivated = 0
            if deactivate_missing:
                status = await conn.execute(_DEACTIVATE_MISSING, source, [r.ref for r in records])
                deactivated = int(status.rsplit(" ", 1)[1])
            result = (inserted, updated, len(records) - len(rows), deactivated)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return result


async def write_districts(
    conn: asyncpg.Connection, records: Sequence[DistrictRecord], *, dry_run: bool = False
) -> tuple[int, int, int, list[RowProblem], list[RowProblem]]:
    """Upsert in one transaction: (inserted, updated, unchanged, skipped, repaired)."""
    skipped: list[RowProblem] = []
    repaired: list[RowProblem] = []
    result: tuple[int, int, int] = (0, 0, 0)
    try:
        async with conn.transaction():
            checked = await conn.fetch(
                _CHECK_BOUNDARIES, [r.row for r in records], [r.geojson for r in records]
            )
            by_row = {c["i"]: c for c in checked}
            good: list[tuple[DistrictRecord, bytes]] = []
            for r in records:
                c = by_row[r.row]
                if c["ewkb"] is None:
                    skipped.append(
                        RowProblem(r.row, f"invalid polygon that cannot be repaired: {c['reason']}")
                    )
                    continue
                if not c["was_valid"]:
                    repaired.append(RowProblem(r.row, f"repaired invalid polygon: {c['reason']}"))
                good.append((r, c["ewkb"]))
            rows = await conn.fetch(
                _UPSERT_DISTRICTS,
                [r.code for r, _ in good],
                [r.name for r, _ in good],
                [r.name_en for r, _ in good],
                [e for _, e in good],
            )
            inserted = sum(1 for r in rows if r["inserted"])
            result = (inserted, len(rows) - inserted, len(good) - len(rows))
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return (*result, skipped, repaired)


async def import_places(
    conn: asyncpg.Connection,
    *,
    data: bytes,
    spec: PlaceSpec,
    source: str,
    encoding: str | None = None,
    deactivate_missing: bool = False,
    dry_run: bool = False,
) -> ImportReport:
    """Read a CSV file's bytes and upsert its good rows into ``safe_place`` (all or nothing)."""
    records, problems, _ = read_places(decode(data, encoding), spec)
    inserted, updated, unchanged, deactivated = await write_places(
        conn, records, source=source, deactivate_missing=deactivate_missing, dry_run=dry_run
    )
    return ImportReport(
        source=source,
        rows=len(records) + len(problems),
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        deactivated=deactivated,
        skipped=problems,
        dry_run=dry_run,
    )


async def import_districts(
    conn: asyncpg.Connection,
    *,
    data: bytes,
    spec: DistrictSpec,
    encoding: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Read a GeoJSON file's bytes and upsert its districts (all or nothing)."""
    records, problems = read_districts(decode(data, encoding), spec)
    inserted, updated, unchanged, skipped, repaired = await write_districts(
        conn, records, dry_run=dry_run
    )
    return ImportReport(
        source="district",
        rows=len(records) + len(problems),
        inserted=inserted,
        updated=updated,
        unchanged=unchanged,
        skipped=sorted(problems + skipped, key=lambda p: p.row),
        repaired=repaired,
        dry_run=dry_run,
    )


def default_source(path: Path, preset: str | None) -> str:
    return preset or path.stem
