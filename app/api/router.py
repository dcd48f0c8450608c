"""Gathers the routers, one per audience."""

from fastapi import APIRouter

from app.api import (
    admin,
    alerts,
    auth,
    console,
    devices,
    health,
    maps,
    me,
    safe_places,
    volunteers,
    web,
)

api_router = APIRouter()
api_router.include_router(health.router)
api_router.include_router(auth.router)
api_router.include_router(alerts.router)
api_router.include_router(me.router)
api_router.include_router(devices.router)
api_router.include_router(safe_places.router)
api_router.include_router(console.router)
api_router.include_router(volunteers.router)
api_router.include_router(admin.router)
api_router.include_router(maps.router)
api_router.include_router(web.router)
