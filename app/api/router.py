"""The routers, one per audience, in the order a request is matched against them."""

from fastapi import APIRouter

from app.api import (
    admin,
    alarm_accounts,
    alerts,
    analytics,
    assets,
    auth,
    console,
    console_stream,
    devices,
    guardian,
    health,
    homes,
    interop,
    maps,
    me,
    metrics,
    safe_places,
    safe_return,
    scouts,
    volunteers,
    web,
    zones,
)

#: Included into the app one by one (``app.include_router``), not through a router that
#: includes them: FastAPI matches a request router by router, and a nested inclusion walks
#: the tree again at every level (a quarter of an SOS request's time in the framework went to
#: that). The alert intakes come first, the pages (``web``) last.
#: ``console_stream`` is left out when ``ANSIM_API_CONSOLE_STREAM`` is off (app/main.py).
ROUTERS: tuple[APIRouter, ...] = (
    alerts.router,
    devices.router,
    homes.router,
    console.router,
    console_stream.router,
    assets.router,
    health.router,
    auth.router,
    auth.member_router,
    me.router,
    safe_places.router,
    volunteers.router,
    admin.router,
    alarm_accounts.router,
    interop.console,
    interop.admin,
    maps.router,
    guardian.router,
    safe_return.router,
    scouts.router,
    metrics.router,
    zones.router,
    analytics.router,
    web.router,
)
