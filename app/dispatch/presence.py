"""Volunteers on duty and where they are: Redis GEO for position, a ZSET of last-seen times so
stale positions expire (a phone that stopped reporting is not offered incidents)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from redis.asyncio import Redis

from app.config import Settings


async def report(
    redis: Redis, settings: Settings, *, volunteer_id: uuid.UUID, lat: float, lon: float
) -> None:
    member = str(volunteer_id)
    pipe = redis.pipeline(transaction=True)
    pipe.geoadd(settings.volunteer_geo_key, (lon, lat, member))
    pipe.zadd(settings.volunteer_seen_key, {member: time.time()})
    await pipe.execute()


async def off_duty(redis: Redis, settings: Settings, *, volunteer_id: uuid.UUID) -> None:
    pipe = redis.pipeline(transaction=True)
    pipe.zrem(settings.volunteer_geo_key, str(volunteer_id))
    pipe.zrem(settings.volunteer_seen_key, str(volunteer_id))
    await pipe.execute()


async def expire_stale(redis: Redis, settings: Settings) -> int:
    cutoff = time.time() - settings.volunteer_stale_s
    stale = await redis.zrangebyscore(settings.volunteer_seen_key, "-inf", cutoff)
    if not stale:
        return 0
    pipe = redis.pipeline(transaction=True)
    pipe.zrem(settings.volunteer_geo_key, *stale)
    pipe.zrem(settings.volunteer_seen_key, *stale)
    await pipe.execute()
    return len(stale)


async def nearest(
    redis: Redis,
    settings: Settings,
    *,
    lat: float,
    lon: float,
    radius_m: float,
    count: int,
    exclude: set[uuid.UUID],
) -> list[tuple[uuid.UUID, float]]:
    """Up to ``count`` fresh on-duty volunteers within ``radius_m``, nearest first."""
    # One round trip for the search and the stale check; stale ones are dropped afterwards
    # (rarely any), so the usual case costs a single pipeline.
    search: dict[str, Any] = {
        "longitude": lon,
        "latitude": lat,
        "radius": radius_m,
        "unit": "m",
        "sort": "ASC",
        "count": count + len(exclude),
        "withdist": True,
    }
    pipe = redis.pipeline(transaction=False)
    pipe.zrangebyscore(
        settings.volunteer_seen_key, "-inf", time.time() - settings.volunteer_stale_s
    )
    pipe.geosearch(settings.volunteer_geo_key, **search)
    stale_raw, rows = await pipe.execute()
    stale = {n.decode() if isinstance(n, bytes) else n for n in stale_raw}
    if stale:
        await expire_stale(redis, settings)
        rows = await redis.geosearch(settings.volunteer_geo_key, **search)
    out: list[tuple[uuid.UUID, float]] = []
    for name, dist in rows:
        vid = uuid.UUID(name.decode() if isinstance(name, bytes) else name)
        if vid not in exclude:
            out.append((vid, float(dist)))
        if len(out) >= count:
            break
    return out
