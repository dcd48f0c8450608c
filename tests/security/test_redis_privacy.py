"""Promise: no position of hers outlives its purpose in Redis.

After the retention job, and after her erasure, no key of the database holds her coordinates
or her phone: every key is read (SCAN, then by its type) and searched with the detector the log
tests use (tests/security/leaks.py). Real Redis, real PostgreSQL, a real dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.dispatch import presence
from app.dispatch.worker import Dispatcher
from tests.security.leaks import phones_in, positions_in, redis_contents, traces_of

HER = (37.5218734, 126.9276519)
HER_TRAIL = (37.5219871, 126.9277632)
OTHER = (37.5251234, 126.9321234)  # ~0.5 km from her: not linked


@contextlib.asynccontextmanager
async def dispatcher(pool, redis, settings) -> AsyncIterator[Dispatcher]:
    async with httpx.AsyncClient() as http:
        worker = Dispatcher(pool=pool, redis=redis, settings=settings, http=http, name="rp")
        task = asyncio.create_task(worker.run())
        try:
            yield worker
        finally:
            worker.stop()
            await asyncio.wait_for(task, 20)


async def _sos(client, member, at: tuple[float, float]) -> str:
    r = await client.post(
        "/v1/alerts",
        json={
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": {"lat": at[0], "lon": at[1], "accuracy_m": 6},
        },
        headers=member.headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["incident_id"])


async def _her_closed_alert(client, member) -> str:
    incident = await _sos(client, member, HER)
    r = await client.post(
        f"/v1/alerts/{incident}/locations",
        json={"points": [{"lat": HER_TRAIL[0], "lon": HER_TRAIL[1], "accuracy_m": 4}]},
        headers=member.headers,
    )
    assert r.status_code == 202
    r = await client.post(
        f"/v1/alerts/{incident}/cancel", json={"pin": member.pin}, headers=member.headers
    )
    assert r.status_code == 200
    return incident


async def _until(check: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _quiet(redis, settings, pool) -> bool:
    """Everything published was processed: no outbox row waits, the group has nothing pending
    and nothing undelivered."""
    if await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
        return False
    try:
        [group] = await redis.xinfo_groups(settings.stream_incidents)
    except Exception:
        return False
    info = await redis.xinfo_stream(settings.stream_incidents)
    return int(group["pending"]) == 0 and group["last-delivered-id"] == info["last-generated-id"]


def _hers(contents: dict[str, str], phone: str) -> dict[str, list[str]]:
    """Her coordinates (the SOS's and the trail's) and her phone, by the key holding them."""
    found: dict[str, list[str]] = {}
    for key, text in contents.items():
        hits = traces_of(text, points=(HER, HER_TRAIL), phone=phone)
        if hits:
            found[key] = hits
    return found


@pytest.fixture
async def scene(make_district, make_member, make_staff, redis, settings, pool):
    await make_district("A", "District A", 126.90, 37.50, 126.95, 37.55)
    her = await make_member()
    phone = await pool.fetchval("SELECT phone FROM member WHERE id = $1", her.id)
    volunteer = await make_staff("volunteer")
    # A volunteer near her: her SOS goes to the dispatchers, with her position in the entry.
    await presence.report(redis, settings, volunteer_id=volunteer.id, lat=37.5221, lon=126.9281)
    return her, phone, await make_member(name="Minji")


async def _dead_letter_copy(worker: Dispatcher, redis, settings, incident: str) -> None:
    """A poison entry of hers (the dispatcher's own dead-letter path, on a copy)."""
    rows = await redis.xrange(settings.stream_incidents)
    entry_id, fields = next((i, f) for i, f in rows if incident.encode() in f[b"payload"])
    await worker._dead_letter(entry_id, fields, 5, "test: poison")


async def test_erase_deletes_every_redis_entry_of_her_incidents(
    client, scene, pool, redis, settings
):
    her, phone, other = scene
    async with dispatcher(pool, redis, settings) as worker:
        incident = await _her_closed_alert(client, her)
        await _sos(client, other, OTHER)
        await _until(lambda: _quiet(redis, settings, pool))
        await _dead_letter_copy(worker, redis, settings, incident)
        before = _hers(await redis_contents(redis), phone)
        # The net catches something: her position is in the three streams before the erasure.
        assert set(before) >= {
            settings.stream_incidents,
            settings.stream_dead_letter,
            settings.console_stream,
        }, before
        r = await client.post("/v1/me/erase", json={"pin": her.pin}, headers=her.headers)
        assert r.status_code == 204

        async def erased() -> bool:
            return not _hers(await redis_contents(redis), phone)

        await _until(erased)
    contents = await redis_contents(redis)
    assert _hers(contents, phone) == {}
    assert {k: phones_in(v) for k, v in contents.items() if phones_in(v)} == {}
    # Only hers: the other woman's open alert is still on the console log and in the stream.
    for key in (settings.console_stream, settings.stream_incidents):
        assert traces_of(contents[key], points=[OTHER]), key
    # Nor does the outbox keep her position for its week.
    payloads = await pool.fetch(
        "SELECT payload FROM outbox WHERE incident_id = $1", uuid.UUID(incident)
    )
    assert payloads and not any("lat" in p["payload"] for p in payloads)


async def test_retention_trims_the_streams_by_age_but_never_unprocessed_work(
    client, scene, pool, redis, settings, make_member
):
    her, phone, other = scene
    short = settings.model_copy(
        update={
            "stream_retention_s": 0.5,
            "console_retention_s": 0.5,
            "dead_letter_retention_s": 0.5,
        }
    )
    async with dispatcher(pool, redis, settings) as worker:
        await _her_closed_alert(client, her)
        incident = await _her_closed_alert(client, her)
        await _until(lambda: _quiet(redis, settings, pool))
        await _dead_letter_copy(worker, redis, settings, incident)
    assert _hers(await redis_contents(redis), phone)
    # Work nobody has finished, as old as hers: one entry a dispatcher took and then died
    # holding, one no dispatcher has read yet. Both hold the other woman's position.
    first = await _sos(client, other, OTHER)
    await _until(lambda: _entries_naming(redis, settings, first))
    taken = await redis.xreadgroup(
        settings.stream_group, "ghost", {settings.stream_incidents: ">"}, count=1
    )
    [(_stream, [(pending_id, _fields)])] = taken
    second = await _sos(client, await make_member(name="Sora"), OTHER)
    await _until(lambda: _entries_naming(redis, settings, second))
    await asyncio.sleep(1.0)

    async with httpx.AsyncClient() as http:
        idle = Dispatcher(pool=pool, redis=redis, settings=short, http=http, name="retention")
        await idle._purge_trails()  # the retention job every dispatcher runs
    contents = await redis_contents(redis)
    assert _hers(contents, phone) == {}
    ids = [i for i, _f in await redis.xrange(settings.stream_incidents)]
    assert pending_id in ids, "an entry still pending was trimmed"
    assert await _entries_naming(redis, settings, second), "an undelivered entry was trimmed"
    assert await redis.xlen(settings.console_stream) == 0
    assert await redis.xlen(settings.stream_dead_letter) == 0


async def _entries_naming(redis, settings, incident: str) -> bool:
    rows = await redis.xrange(settings.stream_incidents)
    return any(incident.encode() in f[b"payload"] for _i, f in rows)


def test_the_detector_finds_short_coordinates_and_phone_numbers():
    found = [
        'incident {"lat":37.52187,"lon":126.92765}',
        "at 37.5219, 126.9277",
        "POINT(126.9277 37.5219)",
        "lat=-33.8688 lon=151.2093",  # Sydney: anywhere, not only Seoul
        "last seen 37.52187",  # a lone coordinate near Korea
    ]
    for text in found:
        assert positions_in(text), text
    clean = [
        "delivered in 0.0123 s and 0.0456 s",
        "committed_at 1712345678.123456",
        "coarse 37.52, 126.93",  # the purged, ~1 km position
        "entry 1712345678123-0 of incident 3f2a9c10-0101-4cde-9f00-010123456789",
    ]
    for text in clean:
        assert positions_in(text) == [] and phones_in(text) == [], text
    for phone in ("+821055501234", "+82 10-5550-1234", "010-5550-1234", "01055501234"):
        assert phones_in(f"to {phone}."), phone
    assert traces_of("x 37.5219 y", points=[(37.5218734, 126.9276519)]) == ["37.5219"]
    assert traces_of("p 010-5550-1234", phone="+821055501234") == ["+821055501234"]
    assert traces_of("p 010-5550-1235", phone="+821055501234") == []
