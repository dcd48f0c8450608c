"""Processed outbox rows are deleted after their retention; nothing unprocessed ever is."""

from __future__ import annotations

from app.incidents.retention import purge_processed_outbox

WEEK = 7 * 24 * 3600


async def test_only_old_processed_outbox_rows_and_their_receipts_are_deleted(pool):
    rows = {
        "old_processed": ("now() - interval '8 days'", True),
        "old_never_processed": ("now() - interval '8 days'", False),
        "recent_processed": ("now() - interval '1 hour'", True),
        "unpublished": ("NULL", False),
    }
    ids = {}
    for name, (published_at, processed) in rows.items():
        ids[name] = await pool.fetchval(
            f"INSERT INTO outbox (topic, payload, published_at)"
            f" VALUES ('incident.created', '{{}}'::jsonb, {published_at}) RETURNING id"
        )
        if processed:
            await pool.execute("INSERT INTO dispatch_receipt (outbox_id) VALUES ($1)", ids[name])

    assert await purge_processed_outbox(pool, retention_s=WEEK, batch=1) == 1
    left = {r["id"] for r in await pool.fetch("SELECT id FROM outbox")}
    assert left == {ids["old_never_processed"], ids["recent_processed"], ids["unpublished"]}
    receipts = {r["outbox_id"] for r in await pool.fetch("SELECT outbox_id FROM dispatch_receipt")}
    assert receipts == {ids["recent_processed"]}
    assert await purge_processed_outbox(pool, retention_s=WEEK) == 0
