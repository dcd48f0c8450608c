"""Request/response schemas shared by the routers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """Requests everywhere but the SOS: unknown fields and NaN/Infinity are 422s."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=4096)


class SafePlaceOut(BaseModel):
    id: str
    name: str
    kind: str
    lat: float
    lon: float
    distance_m: float = Field(description="geodesic distance on the WGS84 spheroid, metres")
    phone: str | None
    address: str | None
    is_safety_house: bool
    open_now: bool


class DistrictOut(BaseModel):
    code: str
    name: str
