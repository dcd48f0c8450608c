"""The per-process console hub: a console too slow to keep up is sent back to its cursor."""

from __future__ import annotations

from app.dispatch.console_log import ConsoleEntry, ConsoleHub


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
