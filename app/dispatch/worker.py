"""Dispatcher worker: a Redis Streams consumer group loop with bounded concurrency.

XACK only after ``routing.handle`` finished (its commit, the console message, notifications);
entries a dead worker left pending are taken over with XAUTOCLAIM after a few idle seconds; an
entry that failed ``dispatch_max_deliveries`` times goes to the dead-letter stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.analytics import service as analytics
from app.config import Settings
from app.devices import health
from app.dispatch import routing, stream_retention
from app.dispatch.coverage import Coverage
from app.dispatch.gateways import build_gateways
from app.dispatch.relay import OutboxRelay, republish_unrouted
from app.errors import TRANSIENT, transient
from app.homes import service as homes
from app.incidents.retention import purge_closed_trails, purge_processed_outbox
from app.interop.delivery import AgencyGateway
from app.notifications import sender as notification_sender
from app.notifications.sender import Sender
from app.safe_return import sweeper as safe_return

log = logging.getLogger(__name__)
T = TypeVar("T")


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Dispatcher:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        redis: Redis,
        settings: Settings,
        http: httpx.AsyncClient,
        name: str | None = None,
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.settings = settings
        self.name = name or default_consumer_name()
        gateways = build_gateways(settings, http)
        # Agencies' webhooks (app/interop) go through the same queue and sender.
        gateways[AgencyGateway.channel] = AgencyGateway(pool=pool, settings=settings, http=http)
        self.ctx = routing.Context(pool, redis, settings, gateways)
        self.relay = OutboxRelay(pool=pool, redis=redis, settings=settings)
        self.coverage = Coverage(pool=pool, redis=redis, settings=settings)
        self.sender = Sender(
            pool=pool, settings=settings, gateways=self.ctx.gateways, on_outbox=self.relay.kick
        )
        self._sem = asyncio.Semaphore(settings.dispatch_concurrency)
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._acks: list[str] = []
        self._ack_task: asyncio.Task[None] | None = None
        self.processed = 0
        self.failed = 0
        self.dead_lettered = 0

    # -- group -------------------------------------------------------------------------------
    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(
                self.settings.stream_incidents, self.settings.stream_group, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        await self._retry(self.ensure_group)
        self.relay.start()
        loops = [
            asyncio.create_task(self._read_loop(), name="read"),
            asyncio.create_task(self._claim_loop(), name="claim"),
            asyncio.create_task(self._deadline_loop(), name="deadlines"),
            asyncio.create_task(self._health_loop(), name="health"),
            asyncio.create_task(self.sender.run(self._stopping), name="notifications"),
            asyncio.create_task(
                self._every(self.settings.device_offline_check_s, self._report_offline_devices),
                name="devices-offline",
            ),
            asyncio.create_task(
                self._every(self.settings.coverage_poll_s, self._cover_unwatched),
                name="coverage",
            ),
            asyncio.create_task(
                self._every(self.settings.home_entry_check_s, self._raise_expired_entries),
                name="home-entry-delays",
            ),
            asyncio.create_task(
                self._every(self.settings.safe_return_sweep_s, self._sweep_safe_return),
                name="safe-return",
            ),
            asyncio.create_task(
                self._every(self.settings.retention_interval_s, self._purge_trails),
                name="retention",
            ),
            asyncio.create_task(
                self._every(self.settings.relay_reconcile_after_s / 2, self._republish_lost),
                name="reconcile",
            ),
        ]
        if self.settings.analytics_refresh_s > 0:
            loops.append(
                asyncio.create_task(
                    self._every(self.settings.analytics_refresh_s, self._refresh_analytics),
                    name="analytics",
                )
            )
        log.info("dispatcher %s started", self.name)
        await self._stopping.wait()
        log.info("dispatcher %s draining %d entries", self.name, len(self._inflight))
        for task in loops:
            task.cancel()
        # Bounded, and every loop also checks the stopping flag: a cancellation swallowed inside
        # a client library (seen once in a long test session, not reproduced) must not keep a
        # SIGTERMed dispatcher alive.
        _done, stuck = await asyncio.wait(loops, timeout=5)
        if stuck:
            log.warning("loops did not stop in 5 s: %s", sorted(t.get_name() for t in stuck))
        if self._inflight:
            _done, pending = await asyncio.wait(
                list(self._inflight.values()), timeout=self.settings.dispatch_drain_s
            )
            for task in pending:
                task.cancel()  # not acked: another dispatcher reclaims it
            await asyncio.gather(*pending, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush_acks()
        await self.relay.stop()
        with contextlib.suppress(Exception):
            await self.redis.delete(self._health_key)
        log.info("dispatcher %s stopped", self.name)

    async def _retry(self, fn: Any) -> None:
        while not self._stopping.is_set():
            try:
                await fn()
                return
            except Exception as exc:
                log.warning("%s failed (%s); retrying", fn.__name__, type(exc).__name__)
                await asyncio.sleep(0.5)

    # -- loops ---------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        s = self.settings
        while not self._stopping.is_set():
            try:
                await self._sem.acquire()
                self._sem.release()
                free = max(1, s.dispatch_concurrency - len(self._inflight))
                rows: Any = await self.redis.xreadgroup(
                    s.stream_group, self.name, {s.stream_incidents: ">"}, count=free, block=1000
                )
                for _stream, entries in rows or []:
                    for entry_id, fields in entries:
                        self._spawn(entry_id, fields, deliveries=1)
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis lost its data: the group comes back
                    await self._retry(self.ensure_group)
                else:
                    log.warning("read failed: %s", exc)
                    await asyncio.sleep(0.5)
            except Exception as exc:
                log.warning("read failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _claim_loop(self) -> None:
        s = self.settings
        idle_ms = int(s.dispatch_claim_idle_s * 1000)
        while not self._stopping.is_set():
            await asyncio.sleep(max(0.2, s.dispatch_claim_idle_s / 2))
            try:
                await self._heartbeat()
                start = "0-0"
                while True:
                    result = await self.redis.xautoclaim(
                        s.stream_incidents, s.stream_group, self.name, idle_ms, start, count=100
                    )
                    start, claimed = result[0], result[1]
                    if len(result) > 2 and result[2]:
                        # Trimmed away while pending: nothing left to process.
                        await self.redis.xack(s.stream_incidents, s.stream_group, *result[2])
                    for entry_id, fields in claimed:
                        key = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                        if key in self._inflight or fields is None:
                            continue
                        deliveries = await self._delivery_count(entry_id)
                        if deliveries > s.dispatch_max_deliveries:
                            await self._dead_letter(entry_id, fields, deliveries, "max deliveries")
                        else:
                            self._spawn(entry_id, fields, deliveries=deliveries)
                    if start in (b"0-0", "0-0"):
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("autoclaim failed: %r", exc)

    async def _heartbeat(self) -> None:
        """Reset the idle time of our own in-flight entries: only a dead (or frozen) consumer's
        entries go idle, so a slow but alive dispatcher is not robbed (nor its entries counted
        towards the dead-letter limit)."""
        if self._inflight:
            await self.redis.xclaim(
                self.settings.stream_incidents,
                self.settings.stream_group,
                self.name,
                0,
                list(self._inflight),
                justid=True,
            )

    async def _delivery_count(self, entry_id: bytes | str) -> int:
        rows = await self.redis.xpending_range(
            self.settings.stream_incidents,
            self.settings.stream_group,
            min=entry_id,
            max=entry_id,
            count=1,
        )
        return int(rows[0]["times_delivered"]) if rows else 1

    async def _deadline_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.deadline_poll_s)
            try:
                if await routing.escalate_overdue(self.pool, self.settings):
                    self.relay.kick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("deadline sweep failed: %r", exc)

    async def _every(self, interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
        """A periodic job in every dispatcher; the jobs lock rows with SKIP LOCKED, so any number
        of dispatchers share them without doing anything twice."""
        while not self._stopping.is_set():
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s failed: %r", job.__name__, exc)
            await asyncio.sleep(interval_s)

    async def _report_offline_devices(self) -> None:
        if await health.report_offline(self.pool, self.settings):
            self.relay.kick()

    async def _raise_expired_entries(self) -> None:
        if await homes.raise_expired_entries(self.pool, self.settings):
            self.relay.kick()

    async def _cover_unwatched(self) -> None:
        if await self.coverage.sweep():
            self.relay.kick()

    async def _sweep_safe_return(self) -> None:
        result = await safe_return.sweep(self.pool, self.settings)
        if result.asked or result.no_shows:
            notification_sender.kick()
        if result.escalated:
            self.relay.kick()

    async def _republish_lost(self) -> None:
        lost = await republish_unrouted(self.pool, self.settings)
        if lost:
            log.warning("%d published outbox rows were never processed; publishing again", lost)
            self.relay.kick()

    async def _refresh_analytics(self) -> None:
        seconds = await analytics.refresh(self.pool)
        if seconds is not None:
            log.info("analytics refreshed in %.2f s", seconds)

    async def _purge_trails(self) -> None:
        result = await purge_closed_trails(self.pool, retention_s=self.settings.trail_retention_s)
        if result.incidents:
            log.info("retention: purged %d trails (%d points)", result.incidents, result.points)
        walks = await safe_return.purge_ended(
            self.pool, retention_s=self.settings.trail_retention_s
        )
        if walks:
            log.info("retention: purged the trails of %d walks home", walks)
        outbox = await purge_processed_outbox(
            self.pool, retention_s=self.settings.outbox_retention_s
        )
        if outbox:
            log.info("retention: deleted %d processed outbox rows", outbox)
        trimmed = await stream_retention.trim_streams(self.redis, self.settings)
        if trimmed.incidents or trimmed.dead_letters or trimmed.console:
            log.info(
                "retention: trimmed %d incidents-stream, %d dead-letter, %d console entries",
                trimmed.incidents,
                trimmed.dead_letters,
                trimmed.console,
            )

    @property
    def inflight(self) -> dict[str, asyncio.Task[None]]:
        """The entries being handled now (by stream id)."""
        return self._inflight

    @property
    def _health_key(self) -> str:
        return f"{self.settings.stream_group}:health:{self.name}"

    async def _health_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):
                await self.redis.set(
                    self._health_key,
                    orjson.dumps(
                        {
                            "at": time.time(),
                            "inflight": len(self._inflight),
                            "processed": self.processed,
                            "failed": self.failed,
                            "dead_lettered": self.dead_lettered,
                            "relay_published": self.relay.stats.published,
                        }
                    ),
                    ex=15,
                )
            await asyncio.sleep(5)

    # -- one entry -----------------------------------------------------------------------------
    def _spawn(self, entry_id: bytes | str, fields: dict[bytes, bytes], *, deliveries: int) -> None:
        key = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        task = asyncio.create_task(self._process(key, fields, deliveries))
        self._inflight[key] = task
        task.add_done_callback(lambda _t: self._inflight.pop(key, None))

    async def _process(self, entry_id: str, fields: dict[bytes, bytes], deliveries: int) -> None:
        s = self.settings
        async with self._sem:
            try:
                if stream_retention.is_erase_entry(fields):
                    await self._handle_through_outages(
                        entry_id,
                        lambda: stream_retention.handle_erase_entry(
                            self.pool, self.redis, s, entry_id, fields
                        ),
                    )
                    acked = False
                elif health.is_device_entry(fields):
                    await self._handle_through_outages(
                        entry_id, lambda: health.publish_device_entry(self.ctx, fields)
                    )
                    acked = False
                else:
                    entry = routing.parse_entry(fields, stream_id=entry_id)
                    acked = await self._handle_through_outages(
                        entry_id, lambda: routing.handle(self.ctx, entry)
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed += 1
                log.exception("entry %s failed (delivery %d)", entry_id, deliveries)
                if deliveries >= s.dispatch_max_deliveries:
                    with contextlib.suppress(Exception):
                        await self._dead_letter(entry_id, fields, deliveries, repr(exc))
                return  # not acked: redelivered through XAUTOCLAIM
        if acked:  # with its last effect (``routing.handle``)
            self.processed += 1
        else:
            self._ack(entry_id)

    def _ack(self, entry_id: str) -> None:
        """XACK after the entry's effects, batched with the entries that finished in the same
        loop turn (one round trip for many); a lost XACK only means a harmless redelivery."""
        self._acks.append(entry_id)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        await asyncio.sleep(0)  # let the other entries finishing now join this batch
        while self._acks:
            ids, self._acks = self._acks, []
            try:
                await self.redis.xack(
                    self.settings.stream_incidents, self.settings.stream_group, *ids
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Left pending: XAUTOCLAIM hands them out again and their effects are not
                # repeated (receipts, SET NX, delivery attempts).
                log.warning("xack of %d entries failed (%s)", len(ids), type(exc).__name__)
                continue
            self.processed += len(ids)

    async def _handle_through_outages(self, entry_id: str, work: Callable[[], Awaitable[T]]) -> T:
        """A database or Redis outage is not the entry's fault: retry it here (keeping it
        claimed) instead of counting deliveries towards the dead-letter stream."""
        backoff = 0.1
        while True:
            try:
                return await work()
            except TRANSIENT as exc:
                if self._stopping.is_set() or not transient(exc):
                    raise
                log.warning(
                    "entry %s: %s; retrying in %.1fs", entry_id, type(exc).__name__, backoff
                )
                await asyncio.sleep(backoff + random.uniform(0, backoff))
                backoff = min(backoff * 2, 2.0)
                with contextlib.suppress(Exception):
                    # Reset the idle time so other dispatchers do not reclaim it meanwhile.
                    await self.redis.xclaim(
                        self.settings.stream_incidents,
                        self.settings.stream_group,
                        self.name,
                        0,
                        [entry_id],
                        justid=True,
                    )

    async def _dead_letter(
        self, entry_id: bytes | str, fields: dict[bytes, bytes], deliveries: int, error: str
    ) -> None:
        s = self.settings
        key = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        dead: dict[Any, Any] = {
            **fields,
            b"original_id": key.encode(),
            b"error": error[:500].encode(),
            b"deliveries": str(deliveries).encode(),
            b"consumer": self.name.encode(),
        }
        await self.redis.xadd(s.stream_dead_letter, dead, maxlen=100_000, approximate=True)
        await self.redis.xack(s.stream_incidents, s.stream_group, key)
        with contextlib.suppress(Exception):
            # Dead letters are for people to look at: the reconciler must not publish them again.
            await self.pool.execute(
                "INSERT INTO dispatch_receipt (outbox_id) VALUES ($1) ON CONFLICT DO NOTHING",
                int(fields[b"outbox_id"]),
            )
        self.dead_lettered += 1
        log.error(
            "entry %s moved to %s after %d deliveries: %s",
            key,
            s.stream_dead_letter,
            deliveries,
            error,
        )


async def read_dead_letters(
    redis: Redis, settings: Settings, *, count: int = 100
) -> list[dict[str, Any]]:
    rows: Any = await redis.xrevrange(settings.stream_dead_letter, count=count)
    return [
        {
            "id": i.decode(),
            **{k.decode(): v.decode(errors="replace") for k, v in f.items()},
        }
        for i, f in rows
    ]
