"""Request/response schemas shared by the routers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


def storable_text(value: str) -> str:
    """PostgreSQL text takes neither NUL nor unpaired surrogates: refuse them as bad input."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("not valid Unicode text") from exc
    return value


#: A query-string value that can be stored or compared in PostgreSQL.
QueryText = Annotated[str, AfterValidator(storable_text)]


class StrictModel(BaseModel):
    """Requests everywhere but the SOS: unknown fields, NaN/Infinity and text PostgreSQL cannot
    hold are 422s."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=4096)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return storable_text(value) if isinstance(value, str) else value


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
