"""The routers, one per audience, in the order a request is matched against them."""

from fastapi import APIRouter

from app.api import (
    admin,
    alarm_accounts,
    alerts,
    auth,
    console,
    devices,
    guardian,
    health,
    homes,
    maps,
    me,
    metrics,
    safe_places,
    safe_return,
    volunteers,
    web,
)

#: Included into the app one by one (``app.include_router``), not through a router that
#: includes them: FastAPI matches a request router by router, and a nested inclusion walks
#: the tree again at every level (a quarter of an SOS request's time in the framework went to
#: that). The alert intakes come first, the pages (``web``) last.
ROUTERS: tuple[APIRouter, ...] = (
    alerts.router,
    devices.router,
    homes.router,
    console.router,
    health.router,
    auth.router,
    auth.member_router,
    me.router,
    safe_places.router,
    volunteers.router,
    admin.router,
    alarm_accounts.router,
    maps.router,
    guardian.router,
    safe_return.router,
    metrics.router,
    web.router,
)
