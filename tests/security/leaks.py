"""One detector of positions and phone numbers, for the logs and for Redis.

A position is a latitude-like and a longitude-like number, each with 4 or more decimals (11 m or
better), next to each other in either order (``37.52187, 126.92765``, ``"lat": 37.52187, "lon":
126.92765``, ``POINT(126.92765 37.52187)``), anywhere on Earth; near Korea a lone coordinate is
enough. A phone number is a Korean mobile number in any of its spellings (``+821055501234``,
``+82 10-5550-1234``, ``010-5550-1234``, ``01055501234``)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

# A number that is not part of a longer one (a timestamp, an id, a version).
_NUM = r"(?<![\w.])-?\d{1,3}\.\d{4,}(?![\d.])"
_PAIR = re.compile(rf"({_NUM})[\s,;:/'\"()=\[\]{{}}A-Za-z_]{{1,24}}?({_NUM})")
_LONE = re.compile(_NUM)
_PHONE = re.compile(r"(?<![\w.])(?:\+?82[- ]?0?10|010)[- ]?\d{3,4}[- ]?\d{4}(?!\w)")
#: Korea and its waters, where a lone coordinate is a position.
_KOREA_LAT, _KOREA_LON = (33.0, 39.0), (124.0, 132.0)


def _is_pair(a: float, b: float) -> bool:
    # One at least 1 degree off the null point: "0.0123 s ... 0.0456 s" is a timing, not a place.
    if max(abs(a), abs(b)) < 1:
        return False
    return (abs(a) <= 90 and abs(b) <= 180) or (abs(b) <= 90 and abs(a) <= 180)


def positions_in(text: str) -> list[str]:
    """Every position in ``text``, as found."""
    found = [
        m.group(0) for m in _PAIR.finditer(text) if _is_pair(float(m.group(1)), float(m.group(2)))
    ]
    for m in _LONE.finditer(text):
        v = abs(float(m.group(0)))
        if _KOREA_LAT[0] <= v <= _KOREA_LAT[1] or _KOREA_LON[0] <= v <= _KOREA_LON[1]:
            found.append(m.group(0))
    return found


def phones_in(text: str) -> list[str]:
    return [m.group(0) for m in _PHONE.finditer(text)]


def traces_of(
    text: str, *, points: Iterable[tuple[float, float]] = (), phone: str | None = None
) -> list[str]:
    """Her own coordinates (the first 4 decimals, rounded or cut, so any longer print of them
    too) and her phone, in any spelling of its digits; what ``positions_in`` and ``phones_in``
    find of anybody's is not included."""
    hits: list[str] = []
    for v in (c for point in points for c in point):
        printed = f"{v:.9f}"
        for form in {printed[: printed.index(".") + 5], f"{v:.4f}"}:
            if form in text:
                hits.append(form)
    if phone is not None:
        squeezed = re.sub(r"[-\s]", "", text)
        local = "0" + phone.removeprefix("+82")  # +821055501234 -> 01055501234
        if local in squeezed or phone.removeprefix("+") in squeezed:
            hits.append(phone)
    return hits


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return " ".join(f"{_text(k)}={_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value)
    return str(value)


async def redis_contents(redis: Redis) -> dict[str, str]:
    """Every key of the database and what it holds, as text (SCAN, then by type)."""
    out: dict[str, str] = {}
    async for raw in redis.scan_iter(count=1000):
        key = raw.decode()
        kind = (await redis.type(raw)).decode()
        value: Any
        if kind == "stream":
            value = [await redis.xrange(raw)]
            with contextlib.suppress(ResponseError):  # a stream without groups
                value.append(await redis.xinfo_groups(raw))
        elif kind == "hash":
            value = await redis.hgetall(raw)
        elif kind == "string":
            value = await redis.get(raw)
        elif kind == "zset":
            value = await redis.zrange(raw, 0, -1, withscores=True)
        elif kind == "set":
            value = await redis.smembers(raw)
        elif kind == "list":
            value = await redis.lrange(raw, 0, -1)
        else:
            raise AssertionError(f"key {key} of type {kind}: teach this scan to read it")
        out[key] = f"{key} {_text(value)}"
    return out
