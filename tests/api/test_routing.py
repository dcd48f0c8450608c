"""How requests are routed: a performance property of the SOS path that no other test sees."""

from __future__ import annotations

from app.api import alerts
from app.api.router import ROUTERS
from app.config import Settings
from app.main import create_app


def _included(routes: list[object]) -> list[object]:
    return [r.original_router for r in routes if hasattr(r, "original_router")]


def test_audience_routers_are_included_one_level_deep_alert_intake_first(
    settings: Settings,
) -> None:
    # FastAPI walks an inclusion of an inclusion again at every level of every match: with
    # the routers nested in one more router, routing was a third of an SOS request's
    # framework time (docs/performance.md, eighth round).
    app = create_app(settings)
    included = _included(app.router.routes)
    assert included == list(ROUTERS)
    assert included[0] is alerts.router
    for router in ROUTERS:
        assert _included(router.routes) == []
