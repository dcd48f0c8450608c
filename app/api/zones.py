"""Special control zones: operators define and import them; consoles draw them and read the
zone each incident lies in (app/zones/)."""

from __future__ import annotations

import uuid
from datetime import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, model_validator

from app.api.deps import CurrentDispatcher, CurrentOperator, CurrentStaff, PoolDep, SettingsDep
from app.api.schemas import StrictModel
from app.errors import BadRequest
from app.geo.importers import ImportFailed
from app.incidents.console_service import log_location_access
from app.zones import service
from app.zones.service import ZoneImportRejected

router = APIRouter(tags=["zones"])

#: Ids per lookup: 200 fit a URL well under the HTTP servers' 16 KB request-line limit.
MAX_LOOKUP = 200


class PolygonIn(StrictModel):
    type: Literal["Polygon", "MultiPolygon"]
    coordinates: list[Any]


class ZoneIn(StrictModel):
    name: str = Field(min_length=1, max_length=service.MAX_NAME)
    reason: str = Field(min_length=1, max_length=service.MAX_REASON)
    geometry: PolygonIn
    active_from: time | None = Field(None, description="daily start, Asia/Seoul (HH:MM)")
    active_to: time | None = Field(None, description="daily end; before active_from: overnight")
    priority_raise: int = Field(1, ge=0, le=service.MAX_PRIORITY_RAISE)

    @model_validator(mode="after")
    def _both_or_neither(self) -> ZoneIn:
        if (self.active_from is None) != (self.active_to is None):
            raise ValueError("give both active_from and active_to, or neither (all day)")
        if self.active_from is not None and self.active_from == self.active_to:
            raise ValueError("active_from equals active_to: leave both out for all day")
        return self


class ZoneOut(BaseModel):
    id: str
    name: str
    reason: str
    active_hours: str | None = Field(description="HH:MM-HH:MM in Asia/Seoul; null: all day")
    priority_raise: int
    source: str
    created_at: str
    geometry: dict[str, Any] = Field(description="GeoJSON MultiPolygon, lon/lat")
    active_now: bool | None = None


class ZoneList(BaseModel):
    zones: list[ZoneOut]


class ZoneImportOut(BaseModel):
    imported: int
    zones: list[ZoneOut]


class IncidentZoneOut(BaseModel):
    incident_id: str
    zone_id: str
    name: str
    reason: str
    active_at_report: bool = Field(description="the zone's hours included the report's moment")
    priority_raise: int = Field(description="added to the incident's priority (0 outside hours)")


class IncidentZones(BaseModel):
    zones: list[IncidentZoneOut]


@router.post(
    "/v1/admin/zones",
    status_code=201,
    response_model=ZoneOut,
    summary="Create a special control zone",
    responses={400: {"description": "invalid polygon"}, 422: {"description": "bad body"}},
)
async def create_zone(body: ZoneIn, _op: CurrentOperator, pool: PoolDep) -> dict[str, Any]:
    hours = f"{body.active_from:%H:%M}-{body.active_to:%H:%M}" if body.active_from else None
    feature = {
        "type": "Feature",
        "properties": {
            "name": body.name,
            "reason": body.reason,
            "active_hours": hours,
            "priority_raise": body.priority_raise,
        },
        "geometry": body.geometry.model_dump(),
    }
    try:
        zones = await service.import_zones(
            pool, {"type": "FeatureCollection", "features": [feature]}, source="manual"
        )
    except ZoneImportRejected as exc:
        raise BadRequest(exc.detail.replace("1 bad feature(s), nothing imported: ", "")) from exc
    return zones[0]


@router.post(
    "/v1/admin/zones/import",
    status_code=201,
    response_model=ZoneImportOut,
    summary="Import zones from a GeoJSON FeatureCollection, all or nothing",
    responses={400: {"description": "bad features, each by its number; nothing imported"}},
)
async def import_zones(
    _op: CurrentOperator,
    pool: PoolDep,
    doc: Annotated[dict[str, Any], Body(description="a GeoJSON FeatureCollection")],
    source: Annotated[str, Query(min_length=1, max_length=200)] = "api",
) -> dict[str, Any]:
    try:
        zones = await service.import_zones(pool, doc, source=source)
    except ImportFailed as exc:
        raise BadRequest(str(exc)) from exc
    return {"imported": len(zones), "zones": zones}


@router.get("/v1/admin/zones", response_model=ZoneList, summary="Every special control zone")
async def admin_zones(_op: CurrentOperator, pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    return {"zones": await service.list_zones(pool, tz=settings.local_timezone)}


@router.delete("/v1/admin/zones/{zone_id}", status_code=204, summary="Delete a zone")
async def delete_zone(zone_id: uuid.UUID, _op: CurrentOperator, pool: PoolDep) -> Response:
    await service.delete_zone(pool, zone_id)
    return Response(status_code=204)


@router.get(
    "/v1/map/zones",
    response_model=ZoneList,
    summary="The zones for a staff map, each with whether it is active now",
)
async def map_zones(_staff: CurrentStaff, pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    return {"zones": await service.list_zones(pool, tz=settings.local_timezone)}


@router.get(
    "/v1/console/zones/incidents",
    response_model=IncidentZones,
    summary="The special control zone of each incident (those in the caller's scope)",
)
async def incident_zones(
    staff: CurrentDispatcher,
    pool: PoolDep,
    settings: SettingsDep,
    ids: Annotated[
        str, Query(description="incident ids, comma-separated", max_length=MAX_LOOKUP * 37)
    ],
) -> dict[str, Any]:
    try:
        wanted = list(dict.fromkeys(uuid.UUID(i.strip()) for i in ids.split(",") if i.strip()))
    except ValueError:
        raise BadRequest("ids must be incident ids (UUIDs), comma-separated") from None
    if len(wanted) > MAX_LOOKUP:
        raise BadRequest(f"at most {MAX_LOOKUP} ids")
    found = [
        z
        for z in await service.zones_of_incidents(pool, wanted, tz=settings.local_timezone)
        if staff.sees(z.district_id, z.covered_by)
    ]
    # Being inside a zone says roughly where she is: a read of her position.
    await log_location_access(
        pool, staff_id=staff.id, incident_ids=[z.incident_id for z in found], reason="zone"
    )
    return {
        "zones": [
            {
                "incident_id": str(z.incident_id),
                "zone_id": str(z.zone_id),
                "name": z.name,
                "reason": z.reason,
                "active_at_report": z.active_at_report,
                "priority_raise": z.priority_raise,
            }
            for z in found
        ]
    }
