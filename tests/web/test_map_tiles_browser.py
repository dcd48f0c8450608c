"""The maps' tile server setting in headless Chromium: with ANSIM_MAP_TILE_URL the console and the
phone simulator load tiles from it (a local tile server this test starts); without it they make
no tile request and no request off this machine at all, and draw the dongs for orientation.

Its own API processes and tile server, on ports chosen free at run time (not the module stack of
test_console_browser.py): the setting is read at a process's start."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.harness import Proc, free_port, stack_env, start_api
from tests.web.conftest import HAVE_CHROMIUM, A, chromium_context, screenshot

pytestmark = pytest.mark.skipif(
    not HAVE_CHROMIUM,
    reason="browser tests need Debian's chromium at /usr/bin/chromium (setup.sh --browser)",
)

# The smallest valid PNG (1x1, transparent): what a tile server answers.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
TILE = re.compile(r"^/tiles/\d+/\d+/\d+\.png$")


class TileServer:
    def __init__(self) -> None:
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def tiles(self) -> list[str]:
        return [p for p in self.paths if TILE.match(p)]


@pytest.fixture(scope="module")
def tile_server() -> Iterator[TileServer]:
    server = TileServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


async def _api(settings: Any, **extra: str) -> tuple[Proc, str]:
    port = free_port()
    env = stack_env(
        redis_url=settings.redis_url,
        gateway_port=None,
        ANSIM_DB_POOL_SIZE="2",
        ANSIM_DB_MAX_OVERFLOW="1",
        ANSIM_DB_HOT_POOL_SIZE="2",
        **extra,
    )
    return await asyncio.to_thread(start_api, port, env), f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
async def with_tiles(migrated: None, settings: Any, tile_server: TileServer) -> AsyncIterator[str]:
    proc, base = await _api(
        settings,
        ANSIM_MAP_TILE_URL=f"http://127.0.0.1:{tile_server.port}/tiles/{{z}}/{{x}}/{{y}}.png",
        ANSIM_MAP_TILE_ATTRIBUTION="© Test Tiles <b>",
    )
    try:
        yield base
    finally:
        proc.stop(timeout=3)


@pytest.fixture(scope="module")
async def without_tiles(migrated: None, settings: Any) -> AsyncIterator[str]:
    proc, base = await _api(settings)
    try:
        yield base
    finally:
        proc.stop(timeout=3)


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    async with chromium_context() as context:
        yield context


@pytest.fixture
async def dispatcher(make_district: Any, make_staff: Any) -> Any:
    district = await make_district("11440", "마포구", *A)
    return await make_staff("dispatcher", district_ids=(district,))


async def _open(chromium: Any, url: str, requests: list[str], errors: list[str]) -> Any:
    page = await chromium.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught {e}"))
    await page.goto(url)
    return page


async def _sign_in(page: Any, staff: Any) -> None:
    await page.fill("#login-username", f"dispatcher-{staff.id.hex[:8]}")
    await page.fill("#login-password", "pw")
    await page.click("#login-submit")
    await page.locator("#map .leaflet-control-attribution").wait_for(timeout=10000)


async def _eventually(check: Any, within_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_with_a_tile_url_the_console_and_phone_maps_load_tiles_from_it(
    with_tiles: str, tile_server: TileServer, chromium: Any, dispatcher: Any
) -> None:
    requests: list[str] = []
    errors: list[str] = []
    console = await _open(chromium, with_tiles + "/console", requests, errors)
    await _sign_in(console, dispatcher)
    await _eventually(lambda: len(tile_server.tiles()) > 0)
    await console.locator("#map img.leaflet-tile-loaded").first.wait_for(timeout=10000)
    attribution = await console.locator("#map .leaflet-control-attribution").inner_text()
    assert "© Test Tiles <b>" in attribution  # the setting is text, never HTML
    await screenshot(console, "console-with-tiles")
    seen = len(tile_server.tiles())

    phone = await _open(chromium, with_tiles + "/demo/phone", requests, errors)
    await _eventually(lambda: len(tile_server.tiles()) > seen)
    await phone.locator("#map img.leaflet-tile-loaded").first.wait_for(timeout=10000)
    assert all(
        u.startswith((with_tiles, f"http://127.0.0.1:{tile_server.port}/")) for u in requests
    )
    await console.close()
    await phone.close()
    assert errors == []


async def test_without_a_tile_url_no_tile_is_asked_for_and_the_dongs_are_drawn(
    without_tiles: str, tile_server: TileServer, chromium: Any, dispatcher: Any
) -> None:
    requests: list[str] = []
    errors: list[str] = []
    before = len(tile_server.paths)
    console = await _open(chromium, without_tiles + "/console", requests, errors)
    await _sign_in(console, dispatcher)
    # The dong layer is the last thing the map draws from the config: once its labels are
    # there, every request the map makes at this view has been made.
    await _eventually_labels(console)
    assert await console.locator("#map .leaflet-tile").count() == 0
    phone = await _open(chromium, without_tiles + "/demo/phone", requests, errors)
    await _eventually_labels(phone)
    assert await phone.locator("#map .leaflet-tile").count() == 0
    # Dong names show only when zoomed in far enough to read them (the whole city: hidden).
    label = phone.locator(".dong-label", has_text="역삼동")
    assert not await label.is_visible()
    await phone.evaluate(
        "() => { window.ansimPhoneMap.setView([37.5006, 127.0364], 15, {animate: false}); }"
    )
    await label.wait_for(state="visible", timeout=5000)
    await asyncio.sleep(0.5)
    assert [u for u in requests if not u.startswith(without_tiles)] == []
    assert [u for u in requests if re.search(r"/\d+/\d+/\d+\.(png|jpe?g|webp)", u)] == []
    assert len(tile_server.paths) == before
    await screenshot(console, "console-without-tiles-dongs")
    await console.close()
    await phone.close()
    assert errors == []


async def _eventually_labels(page: Any) -> None:
    await page.wait_for_function("document.querySelectorAll('.dong-label').length === 467")
