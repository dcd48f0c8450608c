"""The console log: one Redis stream of console messages, its entry id is the console cursor.

Dispatchers append (once per dedupe key, atomically); every API process runs one ``ConsoleHub``
that reads the stream and hands each entry to its local WebSocket connections."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeAlias

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.config import Settings
from app.redis_line import RedisLine

log = logging.getLogger(__name__)


def append_once_lua(log: str, seen: str, maxlen: str, district: str, ttl: str, body: str) -> str:
    """Lua that appends a console message unless its dedupe key was set before (a redelivered
    entry appends nothing), leaving its cursor (or false) in ``cursor``; the arguments are Lua
    expressions (``KEYS[i]``, ``ARGV[i]``). Every writer of the console log uses it (``append``,
    and a phone's SOS routed at intake in ``relay._PUBLISH``), so its entries have one shape."""
    return f"""
local cursor = false
if redis.call('SET', {seen}, '1', 'NX', 'EX', {ttl}) then
  cursor = redis.call('XADD', {log}, 'MAXLEN', '~', {maxlen}, '*', 'district', {district},
                      'body', {body})
end
"""


# With a third key, the message is the last effect of an incidents-stream entry: XACK it
# (ARGV[5] the group, ARGV[6] the entry) in the same round trip, appended now or before.
_APPEND_ONCE = (
    append_once_lua("KEYS[1]", "KEYS[2]", "ARGV[1]", "ARGV[2]", "ARGV[3]", "ARGV[4]")
    + """
if #KEYS == 3 then
  redis.call('XACK', KEYS[3], ARGV[5], ARGV[6])
end
return cursor
"""
)
DEDUPE_TTL_S = 7 * 24 * 3600
#: The hub lingers (``Settings.console_linger_s``) only with at least this many consoles: every
#: message costs every console a wake-up, so with many the batches save more than the wait
#: costs; with 5 consoles lingering saved no CPU and cost ~4 ms of p50 (docs/performance.md).
LINGER_MIN_CONSOLES = 20
#: Messages a console may fall behind before it is told to reconnect with its cursor: ten
#: seconds of a 1,000/s burst. The queue holds references to entries every console shares, so a
#: console behind costs 8 bytes a message; with 1,000, every console of the benchmark's burst
#: was cut and replayed from Redis while the API was busiest (docs/performance.md).
QUEUE_MAX = 10_000


@dataclass(frozen=True)
class ConsoleEntry:
    cursor: str
    district_id: uuid.UUID | None
    body: dict[str, Any]
    #: Districts that cover it: their consoles get it too (app/dispatch/coverage.py).
    also: frozenset[uuid.UUID] = frozenset()

    def message(self) -> dict[str, Any]:
        return {**self.body, "cursor": self.cursor}

    @cached_property
    def key(self) -> tuple[int, int]:
        return cursor_key(self.cursor)

    @cached_property
    def located_incident(self) -> uuid.UUID | None:
        """The incident whose location this message shows (for the access log), if any."""
        incident = self.body.get("incident")
        if isinstance(incident, dict) and incident.get("lat") is not None:
            return uuid.UUID(incident["id"])
        return None

    @cached_property
    def text(self) -> str:
        """The message as sent, serialised once per entry however many sockets get it."""
        return orjson.dumps(self.message()).decode()


def audience_field(district_id: uuid.UUID | None, also: Iterable[uuid.UUID] = ()) -> str:
    """An entry's ``district`` field: its district (empty: none), then the districts that
    cover it, comma-separated; the same string for every writer of the log."""
    return ",".join([str(district_id) if district_id else "", *sorted(str(d) for d in also)])


def _decode(entry_id: bytes | str, fields: dict[bytes, bytes]) -> ConsoleEntry:
    cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    district, *also = fields.get(b"district", b"").decode().split(",")
    return ConsoleEntry(
        cursor=cursor,
        district_id=uuid.UUID(district) if district else None,
        body=orjson.loads(fields[b"body"]),
        also=frozenset(uuid.UUID(d) for d in also),
    )


def cursor_key(cursor: str) -> tuple[int, int]:
    ms, _, seq = cursor.partition("-")
    return int(ms), int(seq or 0)


def seen_key(settings: Settings, dedupe_key: str) -> str:
    """The key whose existence says ``dedupe_key`` was appended (``SET NX`` by the append)."""
    return f"{settings.console_stream}:seen:{dedupe_key}"


def outbox_dedupe_key(outbox_id: int) -> str:
    """The dedupe key of an outbox row's console message (whoever appends it)."""
    return f"o{outbox_id}"


def incident_message(
    kind: str, payload: dict[str, Any], summary: dict[str, Any], committed_at: float | None
) -> dict[str, Any]:
    """The console message of an incidents-stream entry (its kind and payload)."""
    # (The position is in the summary; the payload's copy is for the dispatcher.)
    data = {
        k: v
        for k, v in payload.items()
        if k not in ("incident_id", "kind", "lat", "lon", "request_id")
    }
    if committed_at is not None:
        data["committed_at"] = committed_at
    message = {"type": "incident", "event": kind, "incident": summary, "data": data}
    if "request_id" in payload:
        # The SOS's HTTP request (app/logs.py): what to grep the API's and dispatcher's logs for.
        message["request_id"] = payload["request_id"]
    return message


async def append(
    redis: Redis,
    settings: Settings,
    *,
    dedupe_key: str,
    district_id: uuid.UUID | None,
    body: dict[str, Any],
    also: Iterable[uuid.UUID] = (),
    ack: str | None = None,
) -> str | None:
    """Append a console message unless ``dedupe_key`` was appended before; returns its cursor.
    ``also``: the districts covering it. ``ack``: the incidents-stream entry whose last effect
    this is, acknowledged with it."""
    keys = [settings.console_stream, seen_key(settings, dedupe_key)]
    args: list[Any] = [
        str(settings.console_maxlen),
        audience_field(district_id, also),
        str(DEDUPE_TTL_S),
        orjson.dumps(body),
    ]
    if ack is not None:
        keys.append(settings.stream_incidents)
        args += [settings.stream_group, ack]
    result = await redis.eval(_APPEND_ONCE, len(keys), *keys, *args)
    if result is None:
        return None
    return result.decode() if isinstance(result, bytes) else str(result)


async def last_cursor(redis: Redis, settings: Settings) -> str:
    try:
        info: Any = await redis.xinfo_stream(settings.console_stream)
    except ResponseError:  # no such key yet
        return "0-0"
    last = info.get("last-generated-id") or info.get(b"last-generated-id") or b"0-0"
    return last.decode() if isinstance(last, bytes) else str(last)


async def replay_after(
    redis: Redis, settings: Settings, cursor: str
) -> tuple[list[ConsoleEntry], bool]:
    """Entries after ``cursor``; the flag is False when entries after it were already trimmed."""
    try:
        info: Any = await redis.xinfo_stream(settings.console_stream)
    except ResponseError:
        return [], True
    deleted = info.get("max-deleted-entry-id") or info.get(b"max-deleted-entry-id") or b"0-0"
    deleted_s = deleted.decode() if isinstance(deleted, bytes) else str(deleted)
    if cursor_key(deleted_s) > cursor_key(cursor):
        return [], False
    out: list[ConsoleEntry] = []
    start = "(" + cursor
    while True:
        rows: Any = await redis.xrange(settings.console_stream, min=start, max="+", count=1000)
        if not rows:
            break
        out.extend(_decode(i, f) for i, f in rows)
        start = "(" + out[-1].cursor
        if len(rows) < 1000:
            break
    return out, True


class Wake(enum.Enum):
    """What a connection puts in its own queue besides the hub's entries: the wake-ups of its
    loop, which then waits on the queue alone (``app.api.console_stream._live``)."""

    TICK = "tick"  # its next ping or session check is due
    GONE = "gone"  # its client closed the socket


#: A connection's queue: console entries, its own wake-ups, and ``None`` once the hub gave up
#: on it (too slow: it is told to reconnect with its cursor).
Subscription: TypeAlias = "asyncio.Queue[ConsoleEntry | Wake | None]"


class ConsoleHub:
    """One reader of the console log per process; connections subscribe with a queue."""

    def __init__(self, *, redis: Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        #: The blocking read's own connection (see app/redis_line.py): it reads about once per
        #: message, and redis-py's client cost three times the rest of the read.
        self._line = RedisLine.like(redis, role="console-hub")
        self._queues: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def subscribe(self) -> Subscription:
        queue: Subscription = asyncio.Queue(maxsize=QUEUE_MAX)
        self._queues.add(queue)
        self.start()
        return queue

    def unsubscribe(self, queue: Subscription) -> None:
        self._queues.discard(queue)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="console-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._line.aclose()

    async def _run(self) -> None:
        last: str | None = None
        while True:
            try:
                if last is None:
                    last = await last_cursor(self.redis, self.settings)
                rows: Any = await self._line.execute(
                    b"XREAD", b"COUNT", 500, b"BLOCK", 2000, b"STREAMS",
                    self.settings.console_stream, last, block_s=2.0,
                )  # fmt: skip
                for _stream, entries in rows or []:
                    for entry_id, flat in entries:
                        entry = _decode(entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))
                        last = entry.cursor
                        self._fan_out(entry)
                if rows and len(self._queues) >= LINGER_MIN_CONSOLES:
                    # Busy, with many consoles: let the next entries gather for a moment, so
                    # that one wake-up and one frame per batch console carry them all. (After
                    # a quiet spell the read is blocked when an entry arrives: it goes at once.)
                    await asyncio.sleep(self.settings.console_linger_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("console hub read failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)

    def _fan_out(self, entry: ConsoleEntry) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait(entry)
            except asyncio.QueueFull:
                # The connection is too slow: it is told to reconnect with its cursor. Nothing
                # queued after its cursor may be sent first, or the reconnect would skip a hole.
                self._queues.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)
