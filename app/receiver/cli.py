"""``ansim receiver`` (the SIA DC-09 receiver process) and ``ansim alarm-accounts ...``
(mounted by app/cli.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import uuid
from typing import Annotated

import asyncpg
import typer
import uvloop

from app.config import get_settings
from app.db import create_engine, create_pool, create_sessionmaker
from app.devices.cli import run_on_connection
from app.dispatch.relay import OutboxRelay
from app.receiver import accounts
from app.receiver.server import ReceiverServer
from app.receiver.service import Receiver
from app.redis import create_redis

alarm_accounts_app = typer.Typer(
    help="Alarm-panel accounts reporting over SIA DC-09.", no_args_is_help=True
)

_run = run_on_connection


def _emit(data: object, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, default=str))
    elif isinstance(data, dict):
        for key, value in data.items():
            typer.echo(f"{key}: {value}")
    else:
        typer.echo(json.dumps(data, default=str, indent=2))


AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@alarm_accounts_app.command("create")
def create(
    account: Annotated[str, typer.Option(help="Account number, 3-16 hex characters.")],
    prefix: Annotated[str, typer.Option(help="Line prefix (L), up to 6 hex characters.")] = "0",
    key: Annotated[
        str | None,
        typer.Option(help="AES key: 16/24/32 ASCII characters or 32/48/64 hex digits."),
    ] = None,
    key_hex: Annotated[
        bool | None, typer.Option("--key-hex/--key-ascii", help="How to read --key.")
    ] = None,
    generate_key: Annotated[
        bool, typer.Option("--generate-key", help="Make a random AES-256 key (printed once).")
    ] = False,
    supervision_s: Annotated[
        float | None, typer.Option(help="Silent this long: offline (default the setting).")
    ] = None,
    window_past_s: Annotated[float, typer.Option(help="Accepted clock lag (NAK beyond).")] = 40,
    window_future_s: Annotated[float, typer.Option(help="Accepted clock lead.")] = 20,
    label: Annotated[str | None, typer.Option(help="e.g. 'ADT Caps panel, back office'")] = None,
    place_id: Annotated[
        uuid.UUID | None, typer.Option("--place-id", help="The store it protects.")
    ] = None,
    home_id: Annotated[
        uuid.UUID | None,
        typer.Option("--home-id", help="Or the member's home it protects (ansim homes create)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Register a panel's account to a store (--place-id) or a member's home (--home-id)."""
    if (place_id is None) == (home_id is None):
        typer.echo("error: give --place-id or --home-id, exactly one", err=True)
        raise typer.Exit(2)
    if generate_key:
        if key is not None:
            typer.echo("error: give --key or --generate-key, not both", err=True)
            raise typer.Exit(2)
        key, key_hex = accounts.new_key(), True
    settings = get_settings()
    created = _run(
        lambda c: accounts.create_account(
            c,
            place_id=place_id,
            home_id=home_id,
            account=account,
            prefix=prefix,
            key=key,
            key_hex=key_hex,
            supervision_s=supervision_s or settings.alarm_supervision_s,
            window_past_s=window_past_s,
            window_future_s=window_future_s,
            label=label,
        )
    )
    if generate_key:
        created["key"] = key
        typer.echo("The key is shown only this once: enter it in the panel (hex).", err=True)
    _emit(created, as_json)


@alarm_accounts_app.command("list")
def list_(as_json: AsJson = False) -> None:
    """Every account, offline ones first."""
    _emit(_run(accounts.list_accounts), as_json)


@alarm_accounts_app.command("log")
def log_(account_id: uuid.UUID, limit: int = 100, as_json: AsJson = False) -> None:
    """An account's log, newest first (unknown codes included)."""
    _emit(_run(lambda c: accounts.account_log(c, account_id, limit=limit)), as_json)


@alarm_accounts_app.command("disable")
def disable(account_id: uuid.UUID) -> None:
    """Answer the account's messages DUH and stop supervising it."""
    _run(lambda c: accounts.set_enabled(c, account_id=account_id, enabled=False))


@alarm_accounts_app.command("enable")
def enable(account_id: uuid.UUID) -> None:
    _run(lambda c: accounts.set_enabled(c, account_id=account_id, enabled=True))


async def _serve(host: str, port: int) -> None:
    settings = get_settings()
    log = logging.getLogger("app.receiver")
    for attempt in range(30):  # started before PostgreSQL is up, or it is full: keep trying
        try:
            pool = await create_pool(settings, application_name="ansim-receiver")
            break
        except (OSError, asyncpg.PostgresError) as exc:
            if attempt == 29:
                raise
            log.warning("receiver waiting for PostgreSQL: %s", type(exc).__name__)
            await asyncio.sleep(1)
    engine = create_engine(settings, application_name="ansim-receiver")
    redis = create_redis(settings, client_name="ansim-receiver")
    relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
    receiver = Receiver(
        pool=pool, sessionmaker=create_sessionmaker(engine), settings=settings, relay=relay
    )
    server = ReceiverServer(receiver=receiver, settings=settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    relay.start()
    tcp, udp = await server.start(host, port)
    print(json.dumps({"receiver": "listening", "host": host, "tcp": tcp, "udp": udp}), flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
        await relay.stop()
        await redis.aclose()
        await engine.dispose()
        await pool.close()


def receiver(
    host: Annotated[str | None, typer.Option(help="Default ANSIM_RECEIVER_HOST")] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP and UDP; default ANSIM_RECEIVER_PORT")
    ] = None,
) -> None:
    """Run the SIA DC-09 alarm receiver (TCP and UDP)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    uvloop.run(
        _serve(host or settings.receiver_host, settings.receiver_port if port is None else port)
    )
