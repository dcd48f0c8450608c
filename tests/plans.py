"""How many rows a hot statement reads under the plan a long-lived pooled connection ends up
with: PostgreSQL's *generic* plan, which it may choose (and keep) while a table is still small.
A hot statement must read a bounded number of rows whatever the table holds."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson


def rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows an ``EXPLAIN (ANALYZE, FORMAT JSON)`` plan read from ``relation`` (kept or not)."""
    own = 0
    if plan.get("Relation Name") == relation:
        own = plan["Actual Rows"] * plan["Actual Loops"] + plan.get("Rows Removed by Filter", 0)
    return own + sum(rows_read(p, relation) for p in plan.get("Plans", []))


async def generic_plan(pool: asyncpg.Pool, sql: str, *args: Any) -> dict[str, Any]:
    """Run ``sql`` with ``args`` under its generic plan, in a transaction that is rolled back,
    and return the plan it ran (``auto_explain``, its report sent to this client)."""
    reports: list[str] = []

    def listen(_conn: Any, message: Any) -> None:
        reports.append(message.message)

    async with pool.acquire() as conn:
        conn.add_log_listener(listen)
        try:
            await conn.execute("LOAD 'auto_explain'")
            measuring = conn.transaction()
            await measuring.start()
            try:
                await conn.execute(
                    "SET LOCAL plan_cache_mode = force_generic_plan;"
                    " SET LOCAL auto_explain.log_min_duration = 0;"
                    " SET LOCAL auto_explain.log_analyze = on;"
                    " SET LOCAL auto_explain.log_format = json;"
                    " SET LOCAL client_min_messages = log"
                )
                await conn.fetch(sql, *args)
            finally:
                await measuring.rollback()
        finally:
            conn.remove_log_listener(listen)
    for report in reports:
        explained = orjson.loads(report[report.index("{") :]) if "{" in report else {}
        if explained.get("Query Text") == sql:
            plan: dict[str, Any] = explained["Plan"]
            return plan
    raise AssertionError(f"no plan reported for the statement: {reports!r}")


class Measured(Exception):
    """Raised by ``PlanProbe`` once it has the plan (the caller gets no rows)."""


class PlanProbe:
    """Stands in for a pool: the ``fetchrow`` it is given is measured (``generic_plan``: run
    and rolled back), then ``Measured`` is raised; the plan is in ``plan``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.plan: dict[str, Any] = {}

    async def fetchrow(self, sql: str, *args: Any) -> None:
        self.plan = await generic_plan(self.pool, sql, *args)
        raise Measured
