"""The test app served by a real uvicorn on a local port (lifespan off: the app's clients are the
ones the ``app`` fixture already started), for tests that need real WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def serve(app: FastAPI, port: int | None = None) -> AsyncIterator[str]:
    """Serve on ``port``, by default one free now (``free_port``): yields ``host:port``."""
    from tests.e2e.harness import free_port

    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # uvicorn exposes only a flag
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def ws_session(
    url: str, *, until: Any = None, within: float = 3.0
) -> tuple[list[dict[str, Any]], int | None]:
    """Connect, read messages until ``until(messages)`` is true, the server closes, or
    ``within`` seconds pass; returns the messages and the server's close code (None if the
    socket was still open)."""
    import websockets

    messages: list[dict[str, Any]] = []
    async with websockets.connect(url, open_timeout=5) as ws:
        try:
            async with asyncio.timeout(within):
                async for raw in ws:
                    messages.append(orjson.loads(raw))
                    if until is not None and until(messages):
                        break
        except (TimeoutError, websockets.ConnectionClosed):
            pass
        code = ws.close_code
    return messages, code
