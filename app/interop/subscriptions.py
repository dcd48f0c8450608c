"""Agencies' subscriptions: registered by an operator (``POST /v1/admin/agency-subscriptions``,
``ansim agencies create``), each change of a matching incident queued as one delivery.

A delivery is a ``notification`` row of channel ``agency`` (target ``agency:<id>``): it is
claimed, leased, retried with the queue's backoff until its deadline and each attempt is a
``delivery_attempt`` row, exactly like a guardian's text (app/notifications). The row holds no
document and no position: the document is made when it is sent (``delivery``), so an agency
is never sent an older state after a newer one, and her position leaves only then, logged."""

from __future__ import annotations

import secrets
import uuid
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from app.errors import BadRequest, NotFound

CHANNEL = "agency"
FORMATS = ("cap", "eido")
#: Changes that are not sent: our own failed deliveries (a failed delivery must not queue
#: another one), and the erasure's bookkeeping.
NOT_SENT = ("notify_failed", "notified", "erased")


def target(subscription_id: uuid.UUID | str) -> str:
    return f"{CHANNEL}:{subscription_id}"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        hostname, _ = parts.hostname, parts.port
    except ValueError:  # a bad IPv6 literal or port
        raise BadRequest("the endpoint is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise BadRequest("the endpoint must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise BadRequest("the endpoint URL must not carry credentials: the secret signs")
    return url


# --- queueing the changes --------------------------------------------------------------------

#: Subscription ``s`` takes incidents of the district ``{district}`` (an SQL expression):
#: enabled, and for that district or for all.
_TAKES = "s.enabled AND (s.district_ids = '{{}}' OR {district} = ANY(s.district_ids))"


def agency_takes_sql(district: str) -> str:
    """A subquery that yields a row when some agency takes an incident of ``district``."""
    return f"SELECT 1 FROM agency_subscription s WHERE {_TAKES.format(district=district)}"


#: The matching subscriptions of incident ``{incident}`` get one delivery each for the change
#: of outbox id ``{outbox}`` (kind ``{kind}``), due now, retried until ``{deadline}`` seconds.
#: A change queued twice (a redelivered stream entry) is one delivery: the dedupe key.
_ENQUEUE = """
INSERT INTO notification (incident_id, channel, target, message, dedupe_key, deadline_at)
SELECT i.id, 'agency', 'agency:' || s.id,
       jsonb_build_object('kind', {kind}::text, 'outbox_id', {outbox}::bigint),
       'agency:' || s.id || ':' || {outbox}::bigint,
       now() + make_interval(secs => {deadline}::float8)
FROM incident i
JOIN agency_subscription s ON {takes}
WHERE i.id = {incident} AND NOT ({kind}::text = ANY('{not_sent}'))
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id
"""


def enqueue_sql(*, incident: str, outbox: str, kind: str, deadline: str, source: str = "") -> str:
    """The queueing statement over SQL expressions (a CTE body for a caller's own statement;
    ``source`` adds a ``FROM`` item that must yield a row, e.g. the routing receipt)."""
    sql = _ENQUEUE.format(
        incident=incident,
        outbox=outbox,
        kind=kind,
        deadline=deadline,
        not_sent="{" + ",".join(NOT_SENT) + "}",
        takes=_TAKES.format(district="i.district_id"),
    )
    if source:
        sql = sql.replace("FROM incident i\n", f"FROM {source}, incident i\n", 1)
    return sql


_ENQUEUE_SQL = enqueue_sql(incident="$1", outbox="$2", kind="$3", deadline="$4")


async def enqueue(
    conn: asyncpg.Connection,
    *,
    incident_id: uuid.UUID,
    outbox_id: int,
    kind: str,
    deadline_s: float,
) -> int:
    """Queue one change for every subscription that takes the incident's district, inside the
    caller's transaction; returns how many were queued (kick the sender after the commit)."""
    rows = await conn.fetch(_ENQUEUE_SQL, incident_id, outbox_id, kind, deadline_s)
    return len(rows)


# --- the operator's side ---------------------------------------------------------------------

_COLUMNS = """s.id, s.name, s.url, s.format, s.enabled, s.created_at,
  coalesce((SELECT array_agg(d.code ORDER BY d.code) FROM district d
            WHERE d.id = ANY(s.district_ids)), '{}') AS districts,
  (SELECT count(*) FROM notification n WHERE n.channel = 'agency' AND n.status = 'pending'
     AND n.target = 'agency:' || s.id) AS pending,
  (SELECT count(*) FROM notification n WHERE n.channel = 'agency' AND n.status = 'failed'
     AND n.target = 'agency:' || s.id) AS failed"""


def _json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "url": row["url"],
        "format": row["format"],
        "districts": list(row["districts"]),
        "enabled": row["enabled"],
        "created_at": row["created_at"].isoformat(),
        "pending": row["pending"],
        "failed": row["failed"],
    }


async def create(
    conn: asyncpg.Connection,
    *,
    name: str,
    url: str,
    format: str,
    district_codes: list[str],
    secret: str | None = None,
    created_by: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Register an endpoint; the answer carries the secret, the only time it is shown. No
    districts: every incident, those outside every district too."""
    if format not in FORMATS:
        raise BadRequest(f"format is one of {', '.join(FORMATS)}")
    check_url(url)
    if secret is not None and len(secret) < 16:
        raise BadRequest("a secret has at least 16 characters")
    codes = sorted(set(district_codes))
    found = await conn.fetch("SELECT id, code FROM district WHERE code = ANY($1::text[])", codes)
    unknown = sorted(set(codes) - {r["code"] for r in found})
    if unknown:
        raise BadRequest(f"unknown district codes: {', '.join(unknown)}")
    secret = secret or new_secret()
    new_id = await conn.fetchval(
        "INSERT INTO agency_subscription (id, name, url, secret, format, district_ids, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        uuid.uuid4(),
        name,
        url,
        secret,
        format,
        [r["id"] for r in found],
        created_by,
    )
    return {**await get(conn, new_id), "secret": secret}


async def get(
    conn: asyncpg.Connection | asyncpg.Pool, subscription_id: uuid.UUID
) -> dict[str, Any]:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM agency_subscription s WHERE s.id = $1", subscription_id
    )
    if row is None:
        raise NotFound(f"agency subscription {subscription_id} not found")
    return _json(row)


async def list_all(pool: asyncpg.Pool | asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM agency_subscription s ORDER BY s.created_at")
    return [_json(r) for r in rows]


async def set_enabled(
    conn: asyncpg.Connection, subscription_id: uuid.UUID, *, enabled: bool
) -> dict[str, Any]:
    """Disabling stops its deliveries at once: those still waiting are marked failed (they are
    not sent later, when nobody expects them)."""
    async with conn.transaction():
        done = await conn.fetchval(
            "UPDATE agency_subscription SET enabled = $2 WHERE id = $1 RETURNING id",
            subscription_id,
            enabled,
        )
        if done is None:
            raise NotFound(f"agency subscription {subscription_id} not found")
        if not enabled:
            await conn.execute(
                "UPDATE notification SET status = 'failed', lease_until = NULL,"
                " last_error = 'subscription disabled'"
                " WHERE channel = 'agency' AND status = 'pending' AND target = $1",
                target(subscription_id),
            )
        return await get(conn, subscription_id)


_DELIVERIES_SQL = """
SELECT a.id, a.incident_id, a.attempt, a.ok, a.http_status, a.error, a.created_at,
       a.notification_id, n.status, n.message->>'kind' AS change
FROM delivery_attempt a LEFT JOIN notification n ON n.id = a.notification_id
WHERE a.channel = 'agency' AND a.target = $1 ORDER BY a.id DESC LIMIT $2
"""


async def deliveries(
    pool: asyncpg.Pool | asyncpg.Connection, subscription_id: uuid.UUID, *, limit: int
) -> list[dict[str, Any]]:
    """Every attempt, newest first: which incident's which change, the outcome."""
    await get(pool, subscription_id)
    rows = await pool.fetch(_DELIVERIES_SQL, target(subscription_id), limit)
    return [
        {
            "id": r["id"],
            "incident_id": str(r["incident_id"]) if r["incident_id"] else None,
            "change": r["change"],
            "attempt": r["attempt"],
            "ok": r["ok"],
            "http_status": r["http_status"],
            "error": r["error"],
            "at": r["created_at"].isoformat(),
            "delivery_id": r["notification_id"],
            "status": r["status"],
        }
        for r in rows
    ]


async def secret_of(conn: asyncpg.Connection | asyncpg.Pool, subscription_id: uuid.UUID) -> Any:
    """(url, secret, format, enabled) for the sender, or None if it is gone."""
    return await conn.fetchrow(
        "SELECT url, secret, format, enabled FROM agency_subscription WHERE id = $1",
        subscription_id,
    )
