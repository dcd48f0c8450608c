"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api import answers
from app.api.deps import PoolDep, RedisDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive", response_model=answers.Alive)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="PostgreSQL, PostGIS and Redis are reachable",
    response_model=answers.Ready,
    responses={503: {"description": "a dependency is down", "model": answers.Ready}},
)
async def readyz(pool: PoolDep, redis: RedisDep) -> JSONResponse:
    checks: dict[str, str] = {}

    async def check_db() -> None:
        try:
            version = await asyncio.wait_for(pool.fetchval("SELECT postgis_lib_version()"), 2)
            checks["postgres"] = "ok"
            checks["postgis"] = str(version)
        except Exception as exc:  # readiness reports, it does not raise
            checks["postgres"] = f"down: {type(exc).__name__}"

    async def check_redis() -> None:
        try:
            await asyncio.wait_for(redis.ping(), 2)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"down: {type(exc).__name__}"

    await asyncio.gather(check_db(), check_redis())
    ready = checks.get("postgres") == "ok" and checks.get("redis") == "ok"
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
