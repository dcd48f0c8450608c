"""Operator commands: ``ansim places import`` and ``ansim districts import``.

The lead mounts ``places_app`` and ``districts_app`` in ``app/cli.py``.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import orjson
import typer

from app.config import get_settings
from app.db import create_pool
from app.geo import importers
from app.geo.importers import ImportFailed, ImportReport

places_app = typer.Typer(help="Safe places (stores, police offices): import from CSV.")
districts_app = typer.Typer(help="Districts (boundaries): import from GeoJSON.")


# A callback keeps each app a command group (`ansim places import ...`) even with one command.
@places_app.callback()
def _places() -> None:
    """Safe places (stores, police offices): import from CSV."""


@districts_app.callback()
def _districts() -> None:
    """Districts (boundaries): import from GeoJSON."""


FileArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="the file to import")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="check and count everything, then roll back")
]
EncodingOpt = Annotated[
    str | None, typer.Option(help="file encoding (default: UTF-8 with or without BOM, else CP949)")
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="FIELD=COLUMN, repeatable; places fields: "
        + ", ".join(importers.PLACE_FIELDS)
        + "; district fields: "
        + ", ".join(importers.DISTRICT_FIELDS),
    ),
]


def _mapping(pairs: list[str] | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        f, sep, column = pair.partition("=")
        if not sep or not f.strip() or not column.strip():
            raise ImportFailed(f"--map {pair!r} is not FIELD=COLUMN")
        mapping[f.strip()] = column.strip()
    return mapping


def _bbox(text: str | None) -> importers.BBox | None:
    if text is None:
        return None
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 4 or not (parts[0] < parts[2] and parts[1] < parts[3]):
        raise ImportFailed("--bbox must be MIN_LON,MIN_LAT,MAX_LON,MAX_LAT")
    return (parts[0], parts[1], parts[2], parts[3])


async def _with_connection(
    work: Callable[..., Awaitable[ImportReport]],
) -> ImportReport:
    pool = await create_pool(get_settings(), application_name="ansim-cli", min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            return await work(conn)
    finally:
        await pool.close()


def _print(report: ImportReport, as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps(report.as_json()).decode())
        return
    head = "dry run (rolled back): " if report.dry_run else ""
    typer.echo(
        f"{head}{report.source}: {report.rows} rows; inserted {report.inserted}, "
        f"updated {report.updated}, unchanged {report.unchanged}, "
        f"deactivated {report.deactivated}, skipped {len(report.skipped)}"
    )
    for p in report.repaired:
        typer.echo(f"  repaired row {p.row}: {p.reason}")
    for p in report.skipped:
        typer.echo(f"  skipped row {p.row}: {p.reason}", err=True)


def _fail(exc: ImportFailed, as_json: bool) -> typer.Exit:
    if as_json:
        typer.echo(orjson.dumps({"error": "ImportFailed", "detail": str(exc)}).decode())
    else:
        typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


@places_app.command("import")
def import_places_command(
    file: FileArg,
    preset: Annotated[
        str | None,
        typer.Option(
            help="a known layout: "
            + ", ".join(importers.PLACE_PRESETS)
            + " (guessed from the header when omitted)"
        ),
    ] = None,
    map_: MapOpt = None,
    kind: Annotated[
        str | None,
        typer.Option(help="the kind of every row: " + ", ".join(sorted(importers.KINDS))),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="the source name that keys re-imports (default: preset or file name)"),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option(help="MIN_LON,MIN_LAT,MAX_LON,MAX_LAT: skip rows outside (presets: Seoul)"),
    ] = None,
    no_bbox: Annotated[bool, typer.Option("--no-bbox", help="no bounding box check")] = False,
    open_24h: Annotated[
        bool | None, typer.Option("--open-24h/--not-open-24h", help="every row is open 24h")
    ] = None,
    safety_house: Annotated[
        bool | None,
        typer.Option("--safety-house/--not-safety-house", help="every row is a Safety House"),
    ] = None,
    deactivate_missing: Annotated[
        bool,
        typer.Option(help="deactivate places of this source that are not in the file"),
    ] = False,
    encoding: EncodingOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import safe places from a CSV file; re-importing updates rather than duplicates."""
    try:
        data = file.read_bytes()
        mapping = _mapping(map_)
        if preset is None and not mapping:
            first = importers.decode(data, encoding).splitlines()[:1]
            preset = importers.detect_place_preset(next(csv.reader(first), []))
            if preset is None:
                raise ImportFailed(
                    "unknown layout: give --preset ("
                    + ", ".join(importers.PLACE_PRESETS)
                    + ") or --map name=COL --map lat=COL --map lon=COL"
                )
        spec = importers.place_spec(
            preset=preset,
            mapping=mapping,
            kind=kind,
            bbox=_bbox(bbox),
            use_bbox=not no_bbox,
            open_24h=open_24h,
            is_safety_house=safety_house,
        )
        src = source or importers.default_source(file, preset)
        report = asyncio.run(
            _with_connection(
                lambda conn: importers.import_places(
                    conn,
                    data=data,
                    spec=spec,
                    source=src,
                    encoding=encoding,
                    deactivate_missing=deactivate_missing,
                    dry_run=dry_run,
                )
            )
        )
    except ImportFailed as exc:
        raise _fail(exc, as_json) from None
    _print(report, as_json)


@districts_app.command("import")
def import_districts_command(
    file: FileArg,
    preset: Annotated[
        str | None,
        typer.Option(
            help="a known layout: "
            + ", ".join(importers.DISTRICT_PRESETS)
            + " (guessed from the properties when omitted)"
        ),
    ] = None,
    map_: MapOpt = None,
    encoding: EncodingOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import district boundaries from GeoJSON; the district code keys re-imports."""
    try:
        data = file.read_bytes()
        mapping = _mapping(map_)
        if preset is None and not mapping:
            preset = _guess_district_preset(importers.decode(data, encoding))
        spec = importers.district_spec(preset=preset, mapping=mapping)
        report = asyncio.run(
            _with_connection(
                lambda conn: importers.import_districts(
                    conn, data=data, spec=spec, encoding=encoding, dry_run=dry_run
                )
            )
        )
    except ImportFailed as exc:
        raise _fail(exc, as_json) from None
    _print(report, as_json)


def _guess_district_preset(text: str) -> str | None:
    try:
        doc = orjson.loads(text)
        props = doc["features"][0]["properties"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None
    return importers.detect_district_preset(props) if isinstance(props, dict) else None
