"""``ansim analytics import-dongs|import-crimes|refresh`` (mounted by app/cli.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import asyncpg
import typer

from app.analytics import service
from app.geo.importers import ImportFailed, decode
from app.geo.shipped import SEOUL_DONGS
from app.zones.cli import with_pool

analytics_app = typer.Typer(help="Analytics: reference layers and the aggregates' refresh.")

FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


@analytics_app.callback()
def _analytics() -> None:
    """Analytics: reference layers and the aggregates' refresh."""


async def _on_connection(pool: asyncpg.Pool, path: Path, crimes: bool) -> int:
    async with pool.acquire() as conn:
        if crimes:
            data = await asyncio.to_thread(path.read_bytes)
            return await service.import_crimes(conn, decode(data))
        return await service.import_dongs(conn, path)


@analytics_app.command("import-dongs")
def import_dongs_command(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="default: the shipped Seoul dongs")
    ] = SEOUL_DONGS,
) -> None:
    """Load the legal dongs the analytics count incidents by (JUSO properties EMD_CD...)."""
    try:
        n = with_pool(lambda pool: _on_connection(pool, file, crimes=False))
    except ImportFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{file.name}: {n} dongs")


@analytics_app.command("import-crimes")
def import_crimes_command(file: FileArg) -> None:
    """Load Seoul's five-major-crimes-by-district CSV (all rows or none; bad rows by number)."""
    try:
        n = with_pool(lambda pool: _on_connection(pool, file, crimes=True))
    except ImportFailed as exc:
        typer.echo(f"error: {file}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{file.name}: {n} district-years")


@analytics_app.command("refresh")
def refresh_command() -> None:
    """Refresh the aggregates now (the dispatchers also do it every ANSIM_ANALYTICS_REFRESH_S)."""
    seconds = with_pool(service.refresh)
    if seconds is None:
        typer.echo("another process is refreshing the analytics right now")
    else:
        typer.echo(f"refreshed in {seconds:.2f} s")
