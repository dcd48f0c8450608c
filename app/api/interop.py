"""Other agencies (docs/interop.md): a dispatcher's CAP 1.2 and NENA EIDO exports of an
incident, and the operators' registry of agencies' endpoints (subscriptions)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from app.admin.service import audit
from app.api.deps import CurrentDispatcher, CurrentOperator, PoolDep, SettingsDep
from app.api.schemas import StrictModel
from app.interop import cap, delivery, eido, subscriptions

console = APIRouter(prefix="/v1/console", tags=["console"])
admin = APIRouter(prefix="/v1/admin/agency-subscriptions", tags=["operators"])

_XML_SCHEMA = {"type": "string", "description": "An OASIS CAP 1.2 <alert>"}
_EIDO_SCHEMA = {
    "type": "object",
    "description": "A NENA-STA-021 EIDO (EmergencyIncidentDataObjectType of NENA's openapi.yaml)",
    # Another standard's schema, not ours to copy here: tests/interop validates every document
    # against NENA's openapi.yaml (tests/api/test_answers.py accepts this marker for it).
    "x-standard-schema": (
        "NENA-STA-021 openapi.yaml#/components/schemas/EmergencyIncidentDataObjectType"
    ),
}


@console.get(
    "/incidents/{incident_id}/cap",
    summary="The incident as an OASIS CAP 1.2 alert (for another agency)",
    response_class=Response,
    responses={200: {"content": {cap.MEDIA_TYPE: {"schema": _XML_SCHEMA}}}},
)
async def get_cap(
    incident_id: uuid.UUID, staff: CurrentDispatcher, pool: PoolDep, settings: SettingsDep
) -> Response:
    return await _export(incident_id, "cap", staff, pool, settings)


@console.get(
    "/incidents/{incident_id}/eido",
    summary="The incident as a NENA EIDO (for another agency)",
    response_class=Response,
    responses={200: {"content": {eido.MEDIA_TYPE: {"schema": _EIDO_SCHEMA}}}},
)
async def get_eido(
    incident_id: uuid.UUID, staff: CurrentDispatcher, pool: PoolDep, settings: SettingsDep
) -> Response:
    return await _export(incident_id, "eido", staff, pool, settings)


async def _export(
    incident_id: uuid.UUID,
    format: delivery.Format,
    staff: CurrentDispatcher,
    pool: PoolDep,
    settings: SettingsDep,
) -> Response:
    document = await delivery.export(
        pool,
        settings,
        incident_id=incident_id,
        format=format,
        staff_id=staff.id,
        city_wide=staff.city_wide,
        district_ids=staff.district_ids,
    )
    return Response(document.body, media_type=document.media_type)


# --- operators -------------------------------------------------------------------------------


class SubscriptionIn(StrictModel):
    name: str = Field(min_length=1, max_length=200, description="The agency, e.g. 강남경찰서 CAD.")
    url: str = Field(
        min_length=8, max_length=2000, description="Its endpoint (http:// or https://)."
    )
    format: Literal["cap", "eido"]
    districts: list[Annotated[str, Field(min_length=1, max_length=16)]] = Field(
        default_factory=list,
        max_length=100,
        description="District codes it takes (e.g. 11680); none: every incident.",
    )
    secret: str | None = Field(
        None, min_length=16, max_length=200, description="The HMAC key; made up if absent."
    )


class SubscriptionOut(BaseModel):
    id: str
    name: str
    url: str
    format: str
    districts: list[str]
    enabled: bool
    created_at: str
    pending: int = Field(description="Deliveries waiting (or being retried).")
    failed: int = Field(description="Deliveries given up (deadline passed, or disabled).")


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="Shown this once: the key the agency checks signatures with.")


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionOut]


class DeliveryOut(BaseModel):
    id: int
    incident_id: str | None
    change: str | None = Field(description="The change it carried (a timeline kind).")
    attempt: int
    ok: bool
    http_status: int | None
    error: str | None
    at: str
    delivery_id: int | None
    status: str | None = Field(description="The delivery now: pending, sent, failed.")


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


@admin.post(
    "", status_code=201, response_model=SubscriptionCreated, summary="Register an agency endpoint"
)
async def create_subscription(
    body: SubscriptionIn, operator: CurrentOperator, pool: PoolDep
) -> SubscriptionCreated:
    async with pool.acquire() as conn, conn.transaction():
        created = await subscriptions.create(
            conn,
            name=body.name,
            url=body.url,
            format=body.format,
            district_codes=body.districts,
            secret=body.secret,
            created_by=operator.id,
        )
        await audit(
            conn,
            kind="admin_agency_subscription_created",
            operator_id=operator.id,
            detail={"agency_subscription_id": created["id"], "url": created["url"]},
        )
    return SubscriptionCreated(**created)


@admin.get("", response_model=SubscriptionList, summary="Agencies' endpoints (no secrets)")
async def list_subscriptions(_operator: CurrentOperator, pool: PoolDep) -> SubscriptionList:
    rows = await subscriptions.list_all(pool)
    return SubscriptionList(subscriptions=[SubscriptionOut(**r) for r in rows])


async def _set_enabled(
    subscription_id: uuid.UUID, operator: CurrentOperator, pool: PoolDep, *, enabled: bool
) -> SubscriptionOut:
    async with pool.acquire() as conn, conn.transaction():
        row = await subscriptions.set_enabled(conn, subscription_id, enabled=enabled)
        await audit(
            conn,
            kind=f"admin_agency_subscription_{'enabled' if enabled else 'disabled'}",
            operator_id=operator.id,
            detail={"agency_subscription_id": str(subscription_id)},
        )
    return SubscriptionOut(**row)


@admin.post(
    "/{agency_subscription_id}/disable",
    response_model=SubscriptionOut,
    summary="Stop an agency's deliveries (those waiting are given up)",
)
async def disable_subscription(
    agency_subscription_id: uuid.UUID, operator: CurrentOperator, pool: PoolDep
) -> SubscriptionOut:
    return await _set_enabled(agency_subscription_id, operator, pool, enabled=False)


@admin.post(
    "/{agency_subscription_id}/enable", response_model=SubscriptionOut, summary="Resume an agency"
)
async def enable_subscription(
    agency_subscription_id: uuid.UUID, operator: CurrentOperator, pool: PoolDep
) -> SubscriptionOut:
    return await _set_enabled(agency_subscription_id, operator, pool, enabled=True)


@admin.get(
    "/{agency_subscription_id}/deliveries",
    response_model=DeliveryList,
    summary="Every delivery attempt to an agency, newest first",
)
async def subscription_deliveries(
    agency_subscription_id: uuid.UUID,
    _operator: CurrentOperator,
    pool: PoolDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryList:
    rows = await subscriptions.deliveries(pool, agency_subscription_id, limit=limit)
    return DeliveryList(deliveries=[DeliveryOut(**r) for r in rows])
