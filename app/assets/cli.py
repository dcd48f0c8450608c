"""``ansim assets import --kind cctv|bell FILE``: CCTV sites and emergency bells from CSV."""

from __future__ import annotations

import asyncio
from typing import Annotated

import orjson
import typer

from app.assets import importer
from app.geo.cli import DryRunOpt, EncodingOpt, FileArg, JsonOpt, _bbox, _fail, _with_connection
from app.geo.importers import SEOUL_BBOX, ImportFailed

assets_app = typer.Typer(help="CCTV sites and emergency bells: import from CSV.")


@assets_app.callback()
def _assets() -> None:
    """CCTV sites and emergency bells: import from CSV."""


@assets_app.command("import")
def import_assets_command(
    file: FileArg,
    kind: Annotated[
        str | None,
        typer.Option(help="cctv or bell (told by the header when omitted)"),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="the source name that keys re-imports (default: file name)")
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option(help="MIN_LON,MIN_LAT,MAX_LON,MAX_LAT: skip rows outside (default: Seoul)"),
    ] = None,
    no_bbox: Annotated[bool, typer.Option("--no-bbox", help="no bounding box check")] = False,
    deactivate_missing: Annotated[
        bool, typer.Option(help="deactivate this source's assets of the kind not in the file")
    ] = False,
    strict: Annotated[
        bool, typer.Option(help="import nothing when any row is bad (exit code 1)")
    ] = False,
    encoding: EncodingOpt = None,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Import CCTV sites or emergency bells; re-importing updates rather than duplicates."""
    try:
        data = file.read_bytes()
        box = None if no_bbox else (_bbox(bbox) or SEOUL_BBOX)
        report = asyncio.run(
            _with_connection(
                lambda conn: importer.import_assets(
                    conn,
                    data=data,
                    kind=kind,
                    source=source or file.stem,
                    encoding=encoding,
                    bbox=box,
                    deactivate_missing=deactivate_missing,
                    strict=strict,
                    dry_run=dry_run,
                )
            )
        )
        assert isinstance(report, importer.AssetImportReport)
    except ImportFailed as exc:
        raise _fail(exc, as_json) from None
    _print(report, as_json)
    if report.refused:
        raise typer.Exit(code=1)


def _print(report: importer.AssetImportReport, as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps(report.as_json()).decode())
        return
    if report.refused:
        typer.echo(
            f"refused (--strict): {report.source} ({report.kind}): {len(report.skipped)} bad"
            f" rows of {report.rows}; nothing imported",
            err=True,
        )
    else:
        head = "dry run (rolled back): " if report.dry_run else ""
        typer.echo(
            f"{head}{report.source} ({report.kind}): {report.rows} rows; inserted"
            f" {report.inserted}, updated {report.updated}, unchanged {report.unchanged},"
            f" deactivated {report.deactivated}, merged {len(report.merged)},"
            f" skipped {len(report.skipped)}"
        )
    for p in report.skipped:
        typer.echo(f"  skipped row {p.row}: {p.reason}", err=True)
