"""``ansim devices ...``: register panic buttons, rotate their secrets, disable them.

Secrets are printed once, here, and never again (the operator provisions them into the button).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer

from app.config import get_settings
from app.devices import service
from app.errors import AppError

devices_app = typer.Typer(help="Panic buttons installed in safe places.", no_args_is_help=True)

T = TypeVar("T")


def run_on_connection(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` on one connection; an ``AppError`` is printed and exits 1."""

    async def main() -> T:
        conn = await asyncpg.connect(get_settings().asyncpg_dsn)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(main())
    except AppError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None


_run = run_on_connection


@devices_app.command("create")
def create(
    place_id: Annotated[uuid.UUID, typer.Option("--place-id", help="The safe place (store).")],
    label: Annotated[str | None, typer.Option(help="e.g. 'counter, left'")] = None,
    duress_double_cancel: Annotated[
        bool,
        typer.Option(
            "--duress-double-cancel",
            help="A cancel pressed twice within --duress-window-s is a silent duress alarm.",
        ),
    ] = False,
    duress_window_s: Annotated[
        float, typer.Option(min=0.5, max=60, help="The double-cancel window in seconds.")
    ] = service.DEFAULT_DOUBLE_CANCEL_S,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Register a button at a safe place and print its id and secret (shown only this once)."""
    window = duress_window_s if duress_double_cancel else None
    creds = _run(
        lambda c: service.create_device(
            c, place_id=place_id, label=label, duress_double_cancel_s=window
        )
    )
    if as_json:
        out: dict[str, object] = {"device_id": str(creds.device_id), "secret": creds.secret}
        if window is not None:
            out["duress_double_cancel_s"] = window
        typer.echo(json.dumps(out))
    else:
        typer.echo(f"device_id: {creds.device_id}\nsecret:    {creds.secret}")
        if window is not None:
            typer.echo(f"duress: a double cancel within {window:g} s")
        typer.echo("Store the secret in the button now; it cannot be shown again.", err=True)


@devices_app.command("duress")
def duress(
    device_id: uuid.UUID,
    double_cancel_s: Annotated[
        float | None,
        typer.Option(
            "--double-cancel-s", min=0.5, max=60, help="Turn the double cancel on (seconds)."
        ),
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Turn the double cancel off.")] = False,
) -> None:
    """Set up a button's double-cancel duress sequence (the `duress` signal always works)."""
    if off == (double_cancel_s is not None):
        typer.echo("error: give --double-cancel-s SECONDS or --off", err=True)
        raise typer.Exit(2)
    _run(lambda c: service.set_double_cancel(c, device_id=device_id, seconds=double_cancel_s))
    state = "off" if off else f"a double cancel within {double_cancel_s:g} s"
    typer.echo(f"{device_id}: duress {state}")


@devices_app.command("rotate-secret")
def rotate_secret(
    device_id: uuid.UUID,
    grace_seconds: Annotated[
        int,
        typer.Option(min=0, help="How long the old secret stays valid (0: revoke it at once)."),
    ] = 86400,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Issue a new secret; the old one keeps working for the grace period."""
    creds, until = _run(
        lambda c: service.rotate_secret(c, device_id=device_id, grace_seconds=grace_seconds)
    )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "device_id": str(creds.device_id),
                    "secret": creds.secret,
                    "previous_secret_valid_until": until.isoformat() if until else None,
                }
            )
        )
    else:
        typer.echo(f"device_id: {creds.device_id}\nsecret:    {creds.secret}")
        typer.echo(f"previous secret valid until: {until.isoformat() if until else 'revoked'}")


@devices_app.command("disable")
def disable(device_id: uuid.UUID) -> None:
    """Refuse every signal from this button (each attempt is recorded as a security event)."""
    _run(lambda c: service.set_enabled(c, device_id=device_id, enabled=False))
    typer.echo(f"disabled {device_id}")


@devices_app.command("enable")
def enable(device_id: uuid.UUID) -> None:
    """Accept signals from a disabled button again (with its current secret)."""
    _run(lambda c: service.set_enabled(c, device_id=device_id, enabled=True))
    typer.echo(f"enabled {device_id}")
