"""``ansim dispatcher`` / ``ansim relay`` (mounted by app/cli.py); also runnable as
``python -m app.dispatch.cli dispatcher|relay|dead-letters``."""

from __future__ import annotations

import asyncio
import signal

import httpx
import orjson
import typer
import uvloop

from app import logs
from app.config import get_settings
from app.db import create_pool
from app.dispatch import metrics
from app.dispatch.relay import OutboxRelay
from app.dispatch.worker import Dispatcher, read_dead_letters
from app.redis import create_redis
from app.runtime import settle_heap

dispatcher_app = typer.Typer(help="Dispatch workers: consumers, relay, dead letters.")


async def _run_dispatcher(name: str | None, metrics_port: int) -> None:
    settings = get_settings()
    pool = await create_pool(settings, application_name=f"ansim-dispatcher-{name or ''}")
    redis = create_redis(settings, client_name=f"ansim-dispatcher-{name or ''}")
    http = httpx.AsyncClient(timeout=httpx.Timeout(5.0, connect=2.0))
    worker = Dispatcher(pool=pool, redis=redis, settings=settings, http=http, name=name)
    if metrics_port:
        metrics.serve_metrics(
            metrics_port, settings.metrics_host, lambda: metrics.dispatcher_state(worker)
        )
    settle_heap()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await http.aclose()
        await redis.aclose()
        await pool.close()


async def _run_relay(metrics_port: int) -> None:
    settings = get_settings()
    pool = await create_pool(settings, application_name="ansim-relay")
    redis = create_redis(settings, client_name="ansim-relay")
    relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
    if metrics_port:
        metrics.serve_metrics(
            metrics_port, settings.metrics_host, lambda: metrics.relay_state(relay)
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    relay.start()
    try:
        await stop.wait()
    finally:
        await relay.stop()
        await redis.aclose()
        await pool.close()


@dispatcher_app.command("dispatcher")
def dispatcher(
    name: str = typer.Option(None, help="stable consumer name (default host-pid)"),
    metrics_port: int | None = typer.Option(
        None, help="serve /metrics on this port (default ANSIM_DISPATCHER_METRICS_PORT; 0: off)"
    ),
) -> None:
    """Run one dispatcher worker (consumer group member + relay + deadline loop)."""
    settings = get_settings()
    logs.configure(settings)
    port = settings.dispatcher_metrics_port if metrics_port is None else metrics_port
    uvloop.run(_run_dispatcher(name, port))


@dispatcher_app.command("relay")
def relay(
    metrics_port: int | None = typer.Option(
        None, help="serve /metrics on this port (default ANSIM_RELAY_METRICS_PORT; 0: off)"
    ),
) -> None:
    """Run an outbox relay alone (API processes and dispatchers already run one each)."""
    settings = get_settings()
    logs.configure(settings)
    port = settings.relay_metrics_port if metrics_port is None else metrics_port
    uvloop.run(_run_relay(port))


@dispatcher_app.command("dead-letters")
def dead_letters(count: int = 20) -> None:
    """Show the newest entries of the dead-letter stream."""

    async def show() -> None:
        settings = get_settings()
        redis = create_redis(settings, client_name="ansim-cli")
        try:
            for entry in await read_dead_letters(redis, settings, count=count):
                typer.echo(orjson.dumps(entry).decode())
        finally:
            await redis.aclose()

    asyncio.run(show())


if __name__ == "__main__":
    dispatcher_app()
