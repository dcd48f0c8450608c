"""``ansim homes ...``: register a member's home and its sensors.

The sensors' secrets are printed once, here, and never again. Rotating a sensor's secret and
disabling it are ``ansim devices rotate-secret`` / ``disable`` / ``enable``, as for a button."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Annotated

import asyncpg
import typer

from app.config import get_settings
from app.errors import BadRequest, NotFound
from app.homes import service

homes_app = typer.Typer(
    help="Homes of members living alone, and their sensors.", no_args_is_help=True
)


@homes_app.callback()
def _homes() -> None:
    """Homes of members living alone, and their sensors (a group of commands, not one)."""


@homes_app.command("create")
def create(
    member_id: Annotated[
        uuid.UUID, typer.Option("--member-id", help="The member who lives there.")
    ],
    address: Annotated[str, typer.Option(help="Her address, as police should read it.")],
    lat: Annotated[float, typer.Option(help="Latitude of the home.")],
    lon: Annotated[float, typer.Option(help="Longitude of the home.")],
    label: Annotated[str | None, typer.Option(help="e.g. 'flat 302'")] = None,
    motion: Annotated[bool, typer.Option("--motion", help="Also a motion sensor.")] = False,
    keypad: Annotated[bool, typer.Option("--keypad", help="Also a keypad (arm/disarm).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Register her home with a door contact and an in-home button (optionally a motion sensor
    and a keypad), and print each device's id and secret (shown only this once)."""

    async def main() -> service.RegisteredHome:
        conn = await asyncpg.connect(get_settings().asyncpg_dsn)
        try:
            return await service.create_home(
                conn,
                member_id=member_id,
                address=address,
                lat=lat,
                lon=lon,
                label=label,
                motion=motion,
                keypad=keypad,
            )
        finally:
            await conn.close()

    try:
        home = asyncio.run(main())
    except (NotFound, BadRequest) as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(home.as_json()))
        return
    district = home.district["name"] if home.district else "outside every district"
    typer.echo(f"home {home.home_id} ({district})")
    for kind, device_id, secret in home.devices:
        typer.echo(f"  {kind:12} {device_id}  secret {secret}")
    typer.echo("The secrets are shown only this once.")
