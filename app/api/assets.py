"""Consoles: the CCTV cameras and emergency bells around an incident (issue 22 §1).

Scoped exactly like the incident detail (``in_scope``: her district's dispatchers, those covering
for it, city-wide staff; anyone else gets 404), and read from her latest position, which her
trail moves (``incident.location``), so the list follows her. Reading that position is a staff
read of her location: it is logged in ``location_access`` (``console_assets``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.api.console import _in_scope
from app.api.deps import CurrentDispatcher, PoolDep, SettingsDep
from app.assets.nearby import Asset, assets_near
from app.errors import BadRequest
from app.incidents.console_service import log_location_access

router = APIRouter(prefix="/v1/console", tags=["console"])


class AssetOut(BaseModel):
    id: str
    kind: str = Field(description="cctv or bell")
    name: str | None = Field(description="a bell's installation place (설치위치)")
    address: str | None = Field(description="road address, else lot address")
    office: str | None = Field(description="the managing office (관리기관명)")
    phone: str | None = Field(description="the managing office's phone, where the file has it")
    cameras: int | None = Field(description="CCTV: the number of cameras at the site")
    direction: str | None = Field(description="CCTV: the direction filmed (촬영방면정보)")
    purpose: str | None = Field(description="why it was installed (설치목적)")
    lat: float
    lon: float
    distance_m: float = Field(description="geodesic distance on the WGS84 spheroid, metres")

    @classmethod
    def of(cls, asset: Asset) -> AssetOut:
        return cls(**asset.as_json())


class PositionOut(BaseModel):
    lat: float
    lon: float
    accuracy_m: float | None


class IncidentAssetsOut(BaseModel):
    incident_id: str
    position: PositionOut | None = Field(
        description="her latest position, the one looked around; null: no position yet"
    )
    radius_m: float
    cameras: list[AssetOut] = Field(description="the nearest CCTV sites within the radius")
    cameras_within: int = Field(description="how many CCTV sites are within the radius")
    bells: list[AssetOut] = Field(description="the nearest emergency bells within the radius")
    bells_within: int = Field(description="how many emergency bells are within the radius")


@router.get(
    "/incidents/{incident_id}/assets",
    summary="CCTV cameras and emergency bells near an incident's latest position",
    responses={
        400: {"description": "radius_m above ANSIM_ASSETS_MAX_RADIUS_M"},
        404: {"description": "no such incident in the dispatcher's scope"},
    },
)
async def incident_assets(
    incident_id: uuid.UUID,
    staff: CurrentDispatcher,
    pool: PoolDep,
    settings: SettingsDep,
    radius_m: Annotated[
        float | None, Query(gt=0, description="metres (default ANSIM_ASSETS_RADIUS_M)")
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=50, description="of each kind (default ANSIM_ASSETS_LIMIT)")
    ] = None,
) -> IncidentAssetsOut:
    radius = radius_m if radius_m is not None else settings.assets_radius_m
    if radius > settings.assets_max_radius_m:
        raise BadRequest(f"radius_m may be at most {settings.assets_max_radius_m:g} m")
    summary = await _in_scope(pool, staff, incident_id)
    out = IncidentAssetsOut(
        incident_id=str(incident_id),
        position=None,
        radius_m=radius,
        cameras=[],
        cameras_within=0,
        bells=[],
        bells_within=0,
    )
    lat, lon = summary["lat"], summary["lon"]
    if lat is None or lon is None:
        return out
    found = await assets_near(
        pool, lat=lat, lon=lon, radius_m=radius, limit=limit or settings.assets_limit
    )
    await log_location_access(
        pool, staff_id=staff.id, incident_ids=[incident_id], reason="console_assets"
    )
    out.position = PositionOut(lat=lat, lon=lon, accuracy_m=summary["accuracy_m"])
    out.cameras = [AssetOut.of(a) for a in found.cameras]
    out.bells = [AssetOut.of(a) for a in found.bells]
    out.cameras_within, out.bells_within = found.cameras_within, found.bells_within
    return out
