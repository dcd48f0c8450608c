"""The analytics for the city safety office and district police (app/analytics/): aggregates
of incidents, a k-anonymous heat map, the crime comparison layer, CSV export. A district's
dispatchers see their districts' incidents; city-wide dispatchers and operators see the city."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.analytics import service
from app.analytics.service import Query as Period
from app.api.deps import CurrentStaff, PoolDep, SettingsDep, StaffPrincipal
from app.config import Settings
from app.errors import BadRequest, Forbidden

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])

DEFAULT_DAYS = 365


async def _analyst(staff: CurrentStaff) -> StaffPrincipal:
    if staff.role not in ("dispatcher", "operator"):
        raise Forbidden("the analytics are for dispatchers and operators")
    return staff


Analyst = Annotated[StaffPrincipal, Depends(_analyst)]


def _city_wide(staff: StaffPrincipal) -> bool:
    return staff.role == "operator" or staff.city_wide


async def _period(
    staff: Analyst,
    since: Annotated[
        datetime | None, Query(description="from (inclusive); default a year ago")
    ] = None,
    until: Annotated[datetime | None, Query(description="to (exclusive); default now")] = None,
) -> Period:
    now = datetime.now(UTC)
    until = until or now
    since = since or until - timedelta(days=DEFAULT_DAYS)
    if since.tzinfo is None or until.tzinfo is None:
        raise BadRequest("since and until need a time zone offset (e.g. +09:00)")
    return Period(
        since=since,
        until=until,
        district_ids=None if _city_wide(staff) else sorted(staff.district_ids),
    )


PeriodDep = Annotated[Period, Depends(_period)]


class Scope(BaseModel):
    since: datetime
    until: datetime
    city_wide: bool
    refreshed_at: datetime | None = Field(description="the aggregates are as of this moment")


async def _scope(pool: Any, q: Period) -> dict[str, Any]:
    refreshed, _seconds = await service.refreshed_at(pool)
    return {
        "since": q.since,
        "until": q.until,
        "city_wide": q.district_ids is None,
        "refreshed_at": refreshed,
    }


class DistrictRow(BaseModel):
    code: str | None = Field(description="null: incidents outside every district or unlocated")
    name: str | None
    incidents: int
    false_alarms: int
    resolved: int
    open: int
    ack_p50_s: float | None = Field(description="median seconds to acknowledge")
    ack_p90_s: float | None


class Districts(BaseModel):
    scope: Scope
    districts: list[DistrictRow]


class DongRow(BaseModel):
    code: str
    name: str
    district_code: str | None
    incidents: int
    false_alarms: int
    resolved: int


class Dongs(BaseModel):
    scope: Scope
    dongs: list[DongRow]


class Hours(BaseModel):
    scope: Scope
    timezone: str
    hours: list[int] = Field(description="168 counts: Monday 00-01 first, in the city's time zone")


class OutcomeRow(BaseModel):
    source: str
    outcome: Literal["open", "resolved", "false_alarm", "cancelled"]
    incidents: int
    ack_p50_s: float | None
    ack_p90_s: float | None
    ack_mean_s: float | None


class Outcomes(BaseModel):
    scope: Scope
    outcomes: list[OutcomeRow]


class Cell(BaseModel):
    i: int
    j: int
    incidents: int
    geometry: dict[str, Any] = Field(description="the cell, a GeoJSON Polygon in lon/lat")


class HeatmapOut(BaseModel):
    scope: Scope
    cell_m: int
    k: int = Field(description="cells with fewer incidents are not shown")
    cells: list[Cell]
    hidden_cells: int
    hidden_incidents: int


class CrimeRow(BaseModel):
    code: str
    name: str | None
    total: int | None = None
    murder: int | None = None
    robbery: int | None = None
    sexual_assault: int | None = None
    theft: int | None = None
    violence: int | None = None


class Crimes(BaseModel):
    year: int | None
    years: list[int]
    source: str
    districts: list[CrimeRow]


CellM = Annotated[int, Query(ge=service.MIN_CELL_M, le=service.MAX_CELL_M)]
K = Annotated[int | None, Query(ge=2, le=1000, description="at least the configured k")]


def _k(settings: Settings, k: int | None) -> int:
    return max(settings.analytics_k, k or settings.analytics_k)


@router.get("/districts", response_model=Districts, summary="Incidents by district")
async def districts(q: PeriodDep, pool: PoolDep) -> dict[str, Any]:
    return {"scope": await _scope(pool, q), "districts": await service.by_district(pool, q)}


@router.get("/dongs", response_model=Dongs, summary="Incidents by legal dong (법정동)")
async def dongs(q: PeriodDep, pool: PoolDep) -> dict[str, Any]:
    return {"scope": await _scope(pool, q), "dongs": await service.by_dong(pool, q)}


@router.get("/hours", response_model=Hours, summary="Incidents by hour of the week")
async def hours(q: PeriodDep, pool: PoolDep, settings: SettingsDep) -> dict[str, Any]:
    return {
        "scope": await _scope(pool, q),
        "timezone": "Asia/Seoul",
        "hours": await service.by_hour_of_week(pool, q),
    }


@router.get(
    "/outcomes",
    response_model=Outcomes,
    summary="Incidents by source and outcome, with the time to acknowledge",
)
async def outcomes(q: PeriodDep, pool: PoolDep) -> dict[str, Any]:
    return {"scope": await _scope(pool, q), "outcomes": await service.by_outcome(pool, q)}


@router.get(
    "/heatmap",
    response_model=HeatmapOut,
    summary="Incidents on a square grid; cells with fewer than k incidents are not shown",
)
async def heatmap(
    q: PeriodDep, pool: PoolDep, settings: SettingsDep, cell_m: CellM = 500, k: K = None
) -> dict[str, Any]:
    h = await service.heatmap(pool, q, cell_m=cell_m, k=_k(settings, k))
    return {
        "scope": await _scope(pool, q),
        "cell_m": h.cell_m,
        "k": h.k,
        "cells": h.cells,
        "hidden_cells": h.hidden_cells,
        "hidden_incidents": h.hidden_incidents,
    }


CRIMES_SOURCE = "서울시 5대 범죄 발생현황 통계 (data.seoul.go.kr), occurrences"


@router.get(
    "/crimes",
    response_model=Crimes,
    summary="Seoul's five major crimes by district (comparison layer)",
)
async def crimes(
    staff: Analyst, pool: PoolDep, year: Annotated[int | None, Query(ge=1900, le=2100)] = None
) -> dict[str, Any]:
    years = await service.crime_years(pool)
    chosen = year if year is not None else (years[-1] if years else None)
    codes = (
        None
        if _city_wide(staff)
        else await service.district_codes(pool, sorted(staff.district_ids))
    )
    rows = await service.crimes(pool, year=chosen, district_codes=codes) if chosen else []
    return {"year": chosen, "years": years, "source": CRIMES_SOURCE, "districts": rows}


Aggregate = Literal["districts", "dongs", "hours", "outcomes", "heatmap"]
_CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "districts": (
        "code",
        "name",
        "incidents",
        "false_alarms",
        "resolved",
        "open",
        "ack_p50_s",
        "ack_p90_s",
    ),
    "dongs": ("code", "name", "district_code", "incidents", "false_alarms", "resolved"),
    "hours": ("day", "hour", "incidents"),
    "outcomes": ("source", "outcome", "incidents", "ack_p50_s", "ack_p90_s", "ack_mean_s"),
    "heatmap": ("i", "j", "cell_m", "lon", "lat", "incidents"),
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@router.get(
    "/export.csv",
    summary="One aggregate as CSV (the heat map with its k-anonymity)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "the aggregate as CSV"}},
)
async def export_csv(
    q: PeriodDep,
    pool: PoolDep,
    settings: SettingsDep,
    aggregate: Aggregate,
    cell_m: CellM = 500,
    k: K = None,
) -> Response:
    rows: list[dict[str, Any]]
    if aggregate == "districts":
        rows = await service.by_district(pool, q)
    elif aggregate == "dongs":
        rows = await service.by_dong(pool, q)
    elif aggregate == "hours":
        counts = await service.by_hour_of_week(pool, q)
        rows = [
            {"day": _DAYS[h // 24], "hour": h % 24, "incidents": n} for h, n in enumerate(counts)
        ]
    elif aggregate == "outcomes":
        rows = await service.by_outcome(pool, q)
    else:
        h = await service.heatmap(pool, q, cell_m=cell_m, k=_k(settings, k))
        rows = [_cell_row(c, h.cell_m) for c in h.cells]
    body = service.to_csv(rows, _CSV_COLUMNS[aggregate])
    stamp = f"{q.since:%Y%m%d}-{q.until:%Y%m%d}"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="ansim-{aggregate}-{stamp}.csv"'},
    )


def _cell_row(cell: dict[str, Any], cell_m: int) -> dict[str, Any]:
    ring = cell["geometry"]["coordinates"][0]
    lon = sum(p[0] for p in ring[:-1]) / (len(ring) - 1)
    lat = sum(p[1] for p in ring[:-1]) / (len(ring) - 1)
    return {**cell, "cell_m": cell_m, "lon": round(lon, 6), "lat": round(lat, 6)}
