"""``ansim agencies ...``: other agencies' endpoints (mounted by app/cli.py)."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from app.devices.cli import run_on_connection
from app.interop import subscriptions
from app.receiver.cli import AsJson, _emit

agencies_app = typer.Typer(
    help="Other agencies' endpoints: incidents as CAP 1.2 or NENA EIDO (docs/interop.md).",
    no_args_is_help=True,
)


@agencies_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="The agency, e.g. '강남경찰서 CAD'.")],
    url: Annotated[str, typer.Option(help="Its endpoint (http:// or https://).")],
    format: Annotated[str, typer.Option("--format", help="cap or eido.")],
    district: Annotated[
        list[str] | None,
        typer.Option("--district", help="A district code it takes (repeat); none: all."),
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="The HMAC key (16+ characters); made up if absent.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Register an endpoint; prints its secret once."""
    created = run_on_connection(
        lambda c: subscriptions.create(
            c,
            name=name,
            url=url,
            format=format.lower(),
            district_codes=list(district or []),
            secret=secret,
        )
    )
    typer.echo("The secret is shown only this once: give it to the agency.", err=True)
    _emit(created, as_json)


@agencies_app.command("list")
def list_(as_json: AsJson = False) -> None:
    """Every endpoint with its deliveries waiting and given up (no secrets)."""
    _emit(run_on_connection(subscriptions.list_all), as_json)


@agencies_app.command("deliveries")
def deliveries(subscription_id: uuid.UUID, limit: int = 100, as_json: AsJson = False) -> None:
    """Every delivery attempt to an endpoint, newest first."""
    _emit(
        run_on_connection(lambda c: subscriptions.deliveries(c, subscription_id, limit=limit)),
        as_json,
    )


@agencies_app.command("disable")
def disable(subscription_id: uuid.UUID) -> None:
    """Stop its deliveries; those waiting are given up."""
    run_on_connection(lambda c: subscriptions.set_enabled(c, subscription_id, enabled=False))


@agencies_app.command("enable")
def enable(subscription_id: uuid.UUID) -> None:
    run_on_connection(lambda c: subscriptions.set_enabled(c, subscription_id, enabled=True))
