"""Browser tests: a real uvicorn API, a console process (`ansim consoles`, where the console page
opens its WebSocket, as under `ansim serve`) and real dispatcher processes on this module's
ports, driven through Debian's chromium with Playwright (never a downloaded browser)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    Proc,
    free_ports,
    stack_env,
    start_api,
    start_consoles,
    start_dispatcher,
)

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The module's API, on a port chosen free when its stack starts (see ``base``).
_base = ""
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"

# Two districts side by side; a point inside each.
A = (126.90, 37.50, 126.95, 37.55)
B = (126.95, 37.50, 127.00, 37.55)
IN_A = (37.52, 126.92)
IN_B = (37.52, 126.97)


def _stack_env(redis_url: str) -> dict[str, str]:
    # A long acknowledgement deadline: the countdown shows and nothing escalates mid-test.
    # Small pools: other suites share this PostgreSQL's connection limit.
    return stack_env(
        redis_url=redis_url,
        gateway_port=None,
        ANSIM_ACK_DEADLINE_S="120",
        ANSIM_DB_POOL_SIZE="4",
        ANSIM_DB_MAX_OVERFLOW="2",
        ANSIM_DISPATCH_DRAIN_S="1",
        ANSIM_DEVICE_OFFLINE_CHECK_S="1",
    )


def base() -> str:
    """The running stack's URL (the ``stack`` fixture chose its port)."""
    assert _base, "no stack running: request the stack fixture"
    return _base


@dataclass
class Stack:
    env: dict[str, str]
    port: int
    api: Proc
    consoles_port: int
    consoles: Proc
    dispatchers: list[Proc] = field(default_factory=list)

    async def restart_api(self) -> None:
        self.api.kill()  # SIGKILL by PID: the server drops every WebSocket without a goodbye
        await asyncio.to_thread(self.api.popen.wait, 10)
        self.api = await asyncio.to_thread(start_api, self.port, self.env)


@pytest.fixture(scope="module")
async def stack(migrated: None, settings: Any) -> AsyncIterator[Stack]:
    if not HAVE_CHROMIUM:
        pytest.fail(
            "browser tests need Debian's chromium at /usr/bin/chromium"
            " (apt-get install chromium; scripts/setup.sh --browser installs it)",
            pytrace=False,
        )
    global _base
    port, consoles_port = free_ports(2)
    env = _stack_env(settings.redis_url)
    # As `ansim serve` sets it: the page connects to the console process.
    env["ANSIM_CONSOLE_STREAM_URL"] = f"ws://127.0.0.1:{consoles_port}/v1/console/stream"
    consoles = await asyncio.to_thread(start_consoles, consoles_port, env)
    api = await asyncio.to_thread(start_api, port, env)
    _base = f"http://127.0.0.1:{port}"
    running = Stack(env=env, port=port, api=api, consoles_port=consoles_port, consoles=consoles)
    try:
        running.dispatchers = [start_dispatcher(f"web-d{n}", env) for n in (1, 2)]
        yield running
    finally:
        for proc in running.dispatchers:
            proc.stop()
        running.api.stop(timeout=3)  # uvicorn's graceful shutdown adds nothing to a test
        running.consoles.stop(timeout=3)


@contextlib.asynccontextmanager
async def chromium_context() -> AsyncIterator[Any]:
    """Debian's chromium, headless, with a throw-away profile, in Seoul's time zone."""
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="ansim-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1366, "height": 768},
                env={**os.environ, "TZ": "Asia/Seoul"},
            )
            try:
                yield context
            finally:
                await context.close()


@pytest.fixture(scope="module")
async def browser(stack: Stack) -> AsyncIterator[Any]:
    async with chromium_context() as context:
        yield context


@dataclass
class Pages:
    """Pages of one test, each with its browser console errors collected."""

    context: Any
    pages: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: Substrings of errors a test expects (e.g. refused connections while the API is down).
    allowed: list[str] = field(default_factory=list)

    async def new(self, path: str, *, width: int = 1366, height: int = 768) -> Any:
        page = await self.context.new_page()
        await page.set_viewport_size({"width": width, "height": height})
        page.on(
            "console",
            lambda m: self.errors.append(f"{path}: {m.text}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: self.errors.append(f"{path}: uncaught {e}"))
        self.pages.append(page)
        await page.goto(base() + path)
        return page

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@pytest.fixture
async def pages(browser: Any) -> AsyncIterator[Pages]:
    opened = Pages(browser)
    try:
        yield opened
    finally:
        for page in opened.pages:
            await page.close()
    assert opened.unexpected_errors() == [], "browser console errors"


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path))
    return path


@pytest.fixture(autouse=True)
async def clean_receipts(clean: None, pool: Any) -> None:
    # Outbox ids restart with every test's TRUNCATE: old receipts would hide new entries.
    await pool.execute("TRUNCATE dispatch_receipt")
