"""The sender that runs in every dispatcher: claims due notifications, one HTTP attempt each.

It sleeps until kicked (``kick()``, called after a commit that queued something, so the first
attempt goes out at once) or for ``notify_poll_s`` (retries coming due, messages another process
queued, leases of a dead sender running out)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import asyncpg

from app.config import Settings
from app.dispatch import metrics as dispatch_metrics
from app.dispatch.gateways import Attempt, Gateway
from app.notifications import service

log = logging.getLogger(__name__)

#: The wake-up of every sender running in this process.
_running: set[asyncio.Event] = set()


def kick() -> None:
    """Wake this process's senders: something was queued and committed."""
    for wake in _running:
        wake.set()


class Sender:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: Settings,
        gateways: dict[str, Gateway],
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.gateways = gateways
        dispatch_metrics.preset_channels(gateways)
        #: Called after a failure wrote an outbox row (the dispatcher kicks its relay).
        self.on_outbox = on_outbox
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(settings.notify_concurrency)
        self.sent = 0
        self.retried = 0
        self.failed = 0

    async def run(self, stopping: asyncio.Event) -> None:
        _running.add(self._wake)
        purged_at = 0.0
        try:
            while not stopping.is_set():
                try:
                    while await self.run_once() and not stopping.is_set():
                        pass
                    if time.monotonic() - purged_at > self.settings.retention_interval_s:
                        purged_at = time.monotonic()
                        await service.purge_finished(
                            self.pool, retention_s=self.settings.outbox_retention_s
                        )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("notification sender: %r", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.notify_poll_s)
                self._wake.clear()
        finally:
            _running.discard(self._wake)

    async def run_once(self) -> int:
        """Claim one batch of due messages and attempt each once; returns how many."""
        s = self.settings
        claimed = await service.claim_due(self.pool, limit=s.notify_batch, lease_s=s.notify_lease_s)
        if claimed:
            await asyncio.gather(*(self._attempt(n) for n in claimed))
        return len(claimed)

    async def _attempt(self, n: service.Claimed) -> None:
        async with self._sem:
            gateway = self.gateways[n.channel]
            try:
                attempt = await gateway.send(
                    target=n.target,
                    message=service.render(self.settings, n),
                    idempotency_key=n.dedupe_key,
                )
            except Exception as exc:  # a gateway adapter's bug must not stop the others
                log.exception("gateway %s failed on notification %s", n.channel, n.id)
                attempt = Attempt(False, None, type(exc).__name__, retry=True)
            # If this fails (PostgreSQL down) the lease runs out and the message is tried again:
            # a 2xx not recorded is sent twice, with the same Idempotency-Key.
            status = await service.record_attempt(self.pool, self.settings, n, attempt)
        dispatch_metrics.count_send(n.channel, ok=attempt.ok, retry=attempt.retry)
        if status == "failed":
            dispatch_metrics.NOTIFICATIONS_GIVEN_UP.labels(n.channel).inc()
        if status == "sent":
            self.sent += 1
        elif status == "pending":
            self.retried += 1
        elif status == "failed":
            self.failed += 1
            log.warning("notification %s to %s failed for good: %s", n.id, n.target, attempt)
            if self.on_outbox is not None:
                self.on_outbox()
