"""The per-process console hub: a console too slow to keep up is sent back to its cursor."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.dispatch import console_log
from app.dispatch.console_log import LINGER_MIN_CONSOLES, ConsoleEntry, ConsoleHub


async def test_a_slow_console_gets_nothing_past_its_cursor_before_the_reconnect(redis, settings):
    hub = ConsoleHub(redis=redis, settings=settings)
    queue = hub.subscribe()
    await hub.stop()  # drive the fan-out by hand; no reader of the live stream
    for i in range(queue.maxsize + 5):
        hub._fan_out(ConsoleEntry(cursor=f"{i + 1}-0", district_id=None, body={}))
    # Everything queued was dropped with the overflow: the socket's last cursor is what it sent,
    # so a reconnect with it replays all of them. Only the "reconnect" marker is left.
    assert queue.qsize() == 1 and queue.get_nowait() is None
    hub._fan_out(ConsoleEntry(cursor="9999-0", district_id=None, body={}))
    assert queue.empty(), "an unsubscribed console gets nothing more"


async def test_a_console_stays_through_five_seconds_of_a_1000_per_second_burst(redis, settings):
    hub = ConsoleHub(redis=redis, settings=settings)
    queue = hub.subscribe()
    await hub.stop()
    for i in range(5_000):
        hub._fan_out(ConsoleEntry(cursor=f"{i + 1}-0", district_id=None, body={}))
    assert queue.qsize() == 5_000 and hub.subscribers == 1
    assert [queue.get_nowait().cursor for _ in range(2)] == ["1-0", "2-0"]  # type: ignore[union-attr]


@pytest.mark.parametrize("consoles", [1, LINGER_MIN_CONSOLES], ids=["few", "many"])
async def test_with_many_consoles_the_hub_lingers_after_a_busy_read(redis, settings, consoles):
    """The first message after a quiet spell goes out at once. With many consoles the hub then
    waits ``console_linger_s`` before reading again, so messages appended meanwhile reach the
    consoles together; with few it reads again at once."""
    linger = 1.0
    hub = ConsoleHub(redis=redis, settings=settings.model_copy(update={"console_linger_s": linger}))
    queues = [hub.subscribe() for _ in range(consoles)]
    queue = queues[0]
    try:
        await asyncio.sleep(0.2)  # the hub's first read is blocked on the empty log
        started = time.monotonic()
        await console_log.append(redis, settings, dedupe_key="a", district_id=None, body={"n": 1})
        first = await asyncio.wait_for(queue.get(), 2)
        assert first.body == {"n": 1} and time.monotonic() - started < linger / 2
        for n in (2, 3, 4):
            await console_log.append(
                redis, settings, dedupe_key=f"k{n}", district_id=None, body={"n": n}
            )
        await asyncio.sleep(linger / 4)
        if consoles >= LINGER_MIN_CONSOLES:
            assert queue.empty(), "held while the hub lingers"
            await asyncio.sleep(linger)
        assert [queue.get_nowait().body["n"] for _ in range(3)] == [2, 3, 4]
    finally:
        await hub.stop()
