"""Nearest safe places for any authenticated client (phone app, console, volunteer)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.api.deps import AnyClient, PoolDep, SettingsDep
from app.api.schemas import DistrictOut, SafePlaceOut
from app.geo.nearest import district_at, nearest_places
from app.models.geo import PlaceKind

router = APIRouter(prefix="/v1/safe-places", tags=["safe places"])

_KINDS = ", ".join(k.value for k in PlaceKind)


class NearestQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lat: float = Field(ge=-90, le=90, description="latitude, WGS84 degrees")
    lon: float = Field(ge=-180, le=180, description="longitude, WGS84 degrees")
    limit: int = Field(5, ge=1, le=50, description="how many places (1-50)")
    kind: list[str] = Field(
        default_factory=list,
        description=f"only these kinds ({_KINDS}); repeat the parameter or separate by commas",
    )
    open_now: bool = Field(False, description="only places open now (local time)")

    @field_validator("kind")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        kinds = [k.strip() for item in value for k in item.split(",") if k.strip()]
        unknown = sorted({k for k in kinds if k not in PlaceKind.__members__})
        if unknown:
            raise ValueError(f"unknown kind {', '.join(unknown)}; kinds: {_KINDS}")
        return list(dict.fromkeys(kinds))


class NearestOut(BaseModel):
    places: list[SafePlaceOut] = Field(description="nearest first, by geodesic distance")
    district: DistrictOut | None = Field(description="the district containing the point")


@router.get(
    "/nearest",
    summary="Nearest safe places by true geodesic distance",
    response_model=NearestOut,
    responses={401: {"description": "no valid token"}, 422: {"description": "invalid query"}},
)
async def nearest(
    q: Annotated[NearestQuery, Query()],
    _client: AnyClient,
    pool: PoolDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Active places ordered by distance on the WGS84 spheroid (ties by id), with the district
    that contains the point (or null outside every district)."""
    places, district = await asyncio.gather(
        nearest_places(
            pool,
            lat=q.lat,
            lon=q.lon,
            limit=q.limit,
            kinds=q.kind or None,
            open_now=q.open_now,
            tz=settings.local_timezone,
        ),
        district_at(pool, lat=q.lat, lon=q.lon),
    )
    return {
        "places": [p.as_json() for p in places],
        "district": district.as_json() if district else None,
    }
