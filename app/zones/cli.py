"""``ansim zones import FILE`` and ``ansim zones list`` (mounted by app/cli.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import asyncpg
import orjson
import typer

from app.config import get_settings
from app.db import create_pool
from app.geo.importers import ImportFailed
from app.zones import service
from app.zones.service import ZoneImportRejected

T = TypeVar("T")

zones_app = typer.Typer(help="Special control zones: import from GeoJSON, list.")


@zones_app.callback()
def _zones() -> None:
    """Special control zones: import from GeoJSON, list."""


def with_pool(work: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = await create_pool(
            get_settings(), application_name="ansim-cli", min_size=1, max_size=2
        )
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def _out(data: Any) -> None:
    typer.echo(orjson.dumps(data).decode())


@zones_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    source: Annotated[str | None, typer.Option(help="recorded with each zone")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
) -> None:
    """Import every feature of a GeoJSON FeatureCollection, or none if any is bad (each bad
    feature is reported by its number, from 1)."""
    try:
        doc = orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError as exc:
        typer.echo(f"error: {file}: not JSON: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        zones = with_pool(lambda pool: service.import_zones(pool, doc, source=source or file.name))
    except ZoneImportRejected as exc:
        if as_json:
            _out({"error": "ZoneImportRejected", "problems": [p.as_json() for p in exc.problems]})
        else:
            typer.echo(f"error: {file}: nothing imported", err=True)
            for p in exc.problems:
                typer.echo(f"  feature {p.row}: {p.reason}", err=True)
        raise typer.Exit(2) from exc
    except ImportFailed as exc:
        typer.echo(f"error: {file}: {exc}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        _out({"imported": len(zones), "zones": [{"id": z["id"], "name": z["name"]} for z in zones]})
    else:
        typer.echo(f"{file}: imported {len(zones)} zones")


@zones_app.command("list")
def list_command() -> None:
    """Every zone as JSON lines (id, name, reason, hours, raise, active now)."""
    tz = get_settings().local_timezone
    for z in with_pool(lambda pool: service.list_zones(pool, tz=tz)):
        z.pop("geometry")
        _out(z)
