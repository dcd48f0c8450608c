"""A guardian's view of her open alert, through the link in the guardian's text message: the
page (``/guardian/{token}``) and what it reads (``/v1/guardian/{token}``). The token is the
credential; every read of her position is logged (``reason = guardian_view``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from app.api.deps import PoolDep
from app.api.web import WEB
from app.errors import NotFound
from app.notifications.guardian_view import read_view

router = APIRouter(tags=["guardians"])

#: Longer than any token we issue: answered without a query.
_MAX_TOKEN = 64


class GuardianPosition(BaseModel):
    lat: float
    lon: float
    accuracy_m: float | None
    captured_at: str | None


class GuardianPolice(BaseModel):
    acknowledged_at: str | None = Field(description="when police acknowledged the alert")
    unit_assigned: bool = Field(description="a police unit is assigned")
    volunteers_assigned: int = Field(description="escort volunteers on their way")
    escalated: bool = Field(description="the alert went to a supervisor")


class GuardianViewOut(BaseModel):
    incident_id: str
    name: str = Field(description="her name")
    status: str = Field(description="new | acknowledged | responding | on_scene")
    status_text: str = Field(description="what police did, in plain words")
    received_at: str
    police: GuardianPolice
    district: str | None
    location: GuardianPosition | None = Field(description="her latest position, if any")
    trail: list[GuardianPosition] = Field(description="her recent positions, oldest first")


@router.get(
    "/v1/guardian/{token}",
    summary="A guardian's view of her open alert",
    response_model=GuardianViewOut,
    responses={
        404: {"description": "no such link"},
        410: {"description": "the alert is closed: the link has expired"},
    },
)
async def guardian_view(token: str, pool: PoolDep) -> dict[str, Any]:
    """Her name, what police did and her live position, while the alert is open."""
    if len(token) > _MAX_TOKEN:
        raise NotFound("no such guardian link")
    return await read_view(pool, token=token)


@router.get("/guardian/{token}", include_in_schema=False)
async def guardian_page(token: str) -> FileResponse:
    # The page reads the token from its own address; it holds no data until it asks.
    return FileResponse(
        WEB / "guardian.html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
