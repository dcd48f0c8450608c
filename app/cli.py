"""``ansim``: the one command-line entry point for operators."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.cli import analytics_app
from app.assets.cli import assets_app
from app.config import get_settings
from app.db import create_engine, create_sessionmaker
from app.devices.cli import devices_app
from app.dispatch.cli import dead_letters, dispatcher, relay
from app.errors import AppError, NotFound
from app.geo.cli import districts_app, places_app
from app.homes.cli import homes_app
from app.interop.cli import agencies_app
from app.receiver.cli import alarm_accounts_app, receiver
from app.zones.cli import zones_app

T = TypeVar("T")

cli = typer.Typer(help="Ansim safety-alert service: operator commands.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
members_app = typer.Typer(help="Members (women with the app).", no_args_is_help=True)
dispatchers_app = typer.Typer(help="Police dispatchers.", no_args_is_help=True)
volunteers_app = typer.Typer(help="Escort volunteers.", no_args_is_help=True)
operators_app = typer.Typer(help="City operators.", no_args_is_help=True)
staff_app = typer.Typer(
    help="Any staff account (dispatchers, volunteers, operators).", no_args_is_help=True
)
cli.add_typer(db_app, name="db")
cli.add_typer(members_app, name="members")
cli.add_typer(dispatchers_app, name="dispatchers")
cli.add_typer(volunteers_app, name="volunteers")
cli.add_typer(operators_app, name="operators")
cli.add_typer(staff_app, name="staff")
cli.add_typer(places_app, name="places")
cli.add_typer(districts_app, name="districts")
cli.add_typer(assets_app, name="assets")
cli.add_typer(devices_app, name="devices")
cli.add_typer(homes_app, name="homes")
cli.command("dispatcher")(dispatcher)
cli.command("relay")(relay)
cli.command("dead-letters")(dead_letters)
cli.add_typer(alarm_accounts_app, name="alarm-accounts")
cli.command("receiver")(receiver)
cli.add_typer(zones_app, name="zones")
cli.add_typer(analytics_app, name="analytics")
cli.add_typer(agencies_app, name="agencies")

ROOT = Path(__file__).resolve().parent.parent


def run_in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed unit of work; an AppError becomes a clean exit 1."""

    async def main() -> T:
        engine = create_engine(get_settings(), application_name="ansim-cli")
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except AppError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


def emit(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, default=str))
    else:
        for key, value in data.items():
            typer.echo(f"{key}: {value}")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations (creates the PostGIS extension on first run)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    command.upgrade(cfg, revision)


@members_app.command("create")
def members_create(
    phone: Annotated[str, typer.Option(help="E.164, e.g. +821012345678")],
    name: Annotated[str, typer.Option()],
    pin: Annotated[str, typer.Option(help="Cancels an alert")],
    duress_pin: Annotated[
        str | None, typer.Option(help="Looks like a cancel, but escalates")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a member and print her app token (shown once)."""
    from app.security.accounts import create_member, issue_member_token

    async def work(session: AsyncSession) -> dict[str, Any]:
        member = await create_member(
            session, phone=phone, name=name, pin=pin, duress_pin=duress_pin
        )
        token = await issue_member_token(session, member_id=member.id, label="cli")
        return {"member_id": str(member.id), "token": token}

    emit(run_in_session(work), as_json)


@members_app.command("code")
def members_code(
    phone: Annotated[str, typer.Option(help="Her number, as registered or as she types it")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Issue a one-time sign-in code for her app (read it out to her; not texted). It voids
    her earlier codes and lives ANSIM_MEMBER_CODE_TTL_S."""
    from typing import cast

    import asyncpg

    from app.security.member_signin import issue_code, member_by_phone

    async def work(session: AsyncSession) -> dict[str, Any]:
        raw = await (await session.connection()).get_raw_connection()
        conn = cast(asyncpg.Connection, raw.driver_connection)
        member = await member_by_phone(conn, phone)
        if member is None:
            raise NotFound(f"no member with phone {phone}")
        issued = await issue_code(
            conn, get_settings(), member_id=member["id"], issued_by="operator"
        )
        return {
            "member_id": str(issued.member_id),
            "code": issued.code,
            "expires_at": issued.expires_at.isoformat(),
        }

    emit(run_in_session(work), as_json)


def _enrolment(enrolment: Any) -> dict[str, Any]:
    return {
        "otpauth_uri": enrolment.otpauth_uri,
        "totp_secret": enrolment.secret,
        "recovery_codes": enrolment.recovery_codes,
    }


_SHOWN_ONCE = (
    "The otpauth URI (scan it into an authenticator app), the secret and the recovery codes "
    "are shown this once: keep the codes somewhere safe; each signs in once without the app."
)


def _create_staff(role: str, *, totp: bool = False, **kwargs: Any) -> dict[str, Any]:
    from app.security.accounts import create_staff, enrol_totp, issue_staff_token

    async def work(session: AsyncSession) -> dict[str, Any]:
        staff = await create_staff(session, role=role, **kwargs)
        token, expires_at = await issue_staff_token(
            session, staff_id=staff.id, ttl_s=get_settings().staff_token_ttl_s
        )
        out = {
            "staff_id": str(staff.id),
            "username": staff.username,
            "token": token,
            "expires_at": expires_at.isoformat(),
        }
        if totp:
            enrolment = await enrol_totp(session, staff=staff, secret_key=get_settings().secret_key)
            out.update(_enrolment(enrolment))
        return out

    result = run_in_session(work)
    if totp:
        typer.echo(_SHOWN_ONCE, err=True)
    return result


Username = Annotated[str, typer.Option(help="Sign-in name")]
Password = Annotated[str, typer.Option(help="Sign-in password")]
Name = Annotated[str, typer.Option(help="Full name")]
AsJson = Annotated[bool, typer.Option("--json")]


@dispatchers_app.command("create")
def dispatchers_create(
    username: Username,
    name: Name,
    password: Password,
    district: Annotated[
        list[str] | None, typer.Option(help="District code (repeat for several)")
    ] = None,
    city_wide: Annotated[bool, typer.Option(help="Sees every district (supervisor)")] = False,
    phone: Annotated[str | None, typer.Option(help="E.164; where pages are texted")] = None,
    on_call: Annotated[
        bool, typer.Option(help="Paged (SMS to --phone) when nobody acts on an incident")
    ] = False,
    totp: Annotated[
        bool, typer.Option(help="Sign-in needs a TOTP code too (prints the enrolment once)")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Create a dispatcher for one or more districts (or city-wide) and print a session token."""
    if not district and not city_wide:
        typer.echo("error: give --district CODE (repeatable) or --city-wide", err=True)
        raise typer.Exit(2)
    if on_call and not phone:
        typer.echo("error: --on-call needs --phone (pages are texted)", err=True)
        raise typer.Exit(2)
    emit(
        _create_staff(
            "dispatcher",
            username=username,
            name=name,
            password=password,
            district_codes=district or [],
            city_wide=city_wide,
            phone=phone,
            on_call=on_call,
            totp=totp,
        ),
        as_json,
    )


@volunteers_app.command("create")
def volunteers_create(
    username: Username,
    name: Name,
    password: Password,
    badge_number: Annotated[str, typer.Option(help="Shown to the woman so she can check the ID")],
    phone: Annotated[str | None, typer.Option()] = None,
    as_json: AsJson = False,
) -> None:
    """Create an escort volunteer and print a session token."""
    emit(
        _create_staff(
            "volunteer",
            username=username,
            name=name,
            password=password,
            badge_number=badge_number,
            phone=phone,
        ),
        as_json,
    )


@operators_app.command("create")
def operators_create(
    username: Username, name: Name, password: Password, as_json: AsJson = False
) -> None:
    """Create a city operator (loads data, manages devices and staff) with a TOTP second
    factor, which operators must use to sign in."""
    emit(
        _create_staff("operator", username=username, name=name, password=password, totp=True),
        as_json,
    )


@staff_app.command("enrol-totp")
def staff_enrol_totp(username: Username, as_json: AsJson = False) -> None:
    """Give an account a (new) TOTP second factor and recovery codes; earlier ones stop working."""
    from app.security.accounts import enrol_totp, staff_by_username

    async def work(session: AsyncSession) -> dict[str, Any]:
        staff = await staff_by_username(session, username)
        enrolment = await enrol_totp(session, staff=staff, secret_key=get_settings().secret_key)
        return {"username": staff.username, **_enrolment(enrolment)}

    emit(run_in_session(work), as_json)
    typer.echo(_SHOWN_ONCE, err=True)


@cli.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the demo credentials")] = ROOT
    / ".demo"
    / "credentials.json",
) -> None:
    """Seed the demo city (Seoul's 25 real districts, synthetic places; idempotent)."""
    from app.demo import seed_demo

    creds = run_in_session(seed_demo)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(creds, indent=2))
    typer.echo(json.dumps(creds, indent=2))
    typer.echo(f"(saved to {out})", err=True)


#: How every HTTP process of ours runs under uvicorn (the API, the console processes).
UVICORN_OPTIONS: dict[str, Any] = {
    "factory": True,
    "loop": "uvloop",
    "http": "httptools",
    "ws_per_message_deflate": False,  # console fan-out cost (docs/performance.md)
    "access_log": False,
    "backlog": 2048,
    # The client behind a proxy is found by the app (ANSIM_TRUSTED_PROXIES,
    # app/security/client_ip.py); uvicorn's own rule would trust 127.0.0.1.
    "proxy_headers": False,
}


@cli.command("consoles")
def consoles(
    host: str = "127.0.0.1",
    port: int = 8001,
    workers: Annotated[int, typer.Option(help="Console processes on this port")] = 1,
) -> None:
    """Serve the console WebSocket (/v1/console/stream) apart from the API: each process reads
    the console log from Redis; run any number, beside the API (docs/operations.md)."""
    import uvicorn

    uvicorn.run(
        "app.consoles.app:create_console_app", host=host, port=port, workers=workers,
        **UVICORN_OPTIONS,
    )  # fmt: skip


def _stream_url(host: str, port: int) -> str | None:
    """Where a browser finds the console processes ``serve`` started; None for a wildcard
    address, which names no host a browser can reach."""
    if host in ("0.0.0.0", "::", ""):
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"ws://{shown}:{port}/v1/console/stream"


@cli.command("serve")
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="API worker processes")] = 1,
    dispatchers: Annotated[
        int, typer.Option(help="Dispatcher processes to run beside the API (stopped with it)")
    ] = 0,
    consoles: Annotated[
        int,
        typer.Option(
            help="Console processes beside the API (0: the API serves the console WebSocket)"
        ),
    ] = 1,
    consoles_port: Annotated[
        int | None, typer.Option(help="Their port (default: the API's port + 1)")
    ] = None,
) -> None:
    """Run the API (uvicorn with uvloop and httptools), the console processes, and optionally
    dispatchers."""
    import os
    import signal
    import subprocess

    import uvicorn

    settings = get_settings()
    multiproc = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc:
        # The workers' metric files of an earlier run would be summed into this one's.
        os.makedirs(multiproc, exist_ok=True)
        for stale in Path(multiproc).glob("*.db"):
            stale.unlink()
    # Each dispatcher serves its own /metrics (base port + i): the multiprocess directory is
    # the API workers' alone (app/dispatch/metrics.py).
    child_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    base = settings.dispatcher_metrics_port
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "dispatcher",
                "--metrics-port",
                str(base + i if base else 0),
            ],
            env=child_env,
        )
        for i in range(dispatchers)
    ]
    if consoles:
        cport = port + 1 if consoles_port is None else consoles_port
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "app.cli", "consoles", "--host", host,
                 "--port", str(cport), "--workers", str(consoles)],
                env=child_env,
            )
        )  # fmt: skip
        # The console page connects there, unless the operator named another place.
        url = settings.console_stream_url or _stream_url(host, cport)
        if url is None:
            typer.echo(
                f"consoles on port {cport}: route /v1/console/stream there or set"
                " ANSIM_CONSOLE_STREAM_URL to their public ws(s):// URL; until then the"
                " console page uses the API's own stream",
                err=True,
            )
        elif not settings.console_stream_url:
            os.environ["ANSIM_CONSOLE_STREAM_URL"] = url
            get_settings.cache_clear()

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # uvicorn re-raises the SIGTERM it shut down for; with the default handler this process
    # would die there and orphan its children. Exiting through Python runs the cleanup below.
    signal.signal(signal.SIGTERM, stop)
    try:
        uvicorn.run("app.main:create_app", host=host, port=port, workers=workers, **UVICORN_OPTIONS)
    finally:
        for child in children:
            child.terminate()  # SIGTERM: dispatchers drain their in-flight entries
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
