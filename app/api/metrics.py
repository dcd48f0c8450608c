"""``GET /metrics``: Prometheus text exposition (app/metrics.py, docs/operations.md)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app import metrics
from app.api.deps import PoolDep, RedisDep, SettingsDep
from app.errors import Unauthorized

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def scrape(
    request: Request, pool: PoolDep, redis: RedisDep, settings: SettingsDep
) -> Response:
    if settings.metrics_token:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.metrics_token.encode()
        ):
            raise Unauthorized("the metrics token is missing or wrong")
    elif settings.environment not in ("development", "test"):
        # No personal data here, but whether a district has no console open right now is not
        # for the public (docs/dispatch.md): in production a scrape needs the token.
        raise Unauthorized("set ANSIM_METRICS_TOKEN and scrape with it")
    snapshot = await metrics.read_state(
        pool=pool,
        redis=redis,
        settings=settings,
        consoles_here=request.app.state.console_hub.subscribers,
    )
    return Response(metrics.render(snapshot), media_type=metrics.CONTENT_TYPE_LATEST)
