"""Panic buttons in Safety House stores: ``POST /v1/devices/{device_id}/signals``.

The scheme is in docs/devices.md and app/security/device_signature.py."""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app import logs, metrics
from app.api import answers
from app.api.deps import PoolDep, RedisDep, SessionDep, SettingsDep, kick_relay
from app.devices import health, service
from app.devices.service import AuthenticatedDevice, SignedRequest
from app.devices.signals import PANIC_TYPES, SignalBody, SignalType, parse_signal
from app.errors import ServiceUnavailable
from app.security.device_signature import NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER

router = APIRouter(tags=["devices"])


async def signed_request(device_id: str, request: Request) -> SignedRequest:
    """A device's request as the signature checks read it (store buttons and home sensors).
    The path id is a plain string so that a malformed one is a 401 like any unknown device,
    not a 422 that would tell a prober what the ids look like."""
    return SignedRequest(
        device_ref=device_id,
        timestamp=request.headers.get(TIMESTAMP_HEADER),
        nonce=request.headers.get(NONCE_HEADER),
        signature=request.headers.get(SIGNATURE_HEADER),
        body=await request.body(),
        source_ip=request.client.host if request.client else None,
    )


async def signed_device(
    device_id: str, request: Request, pool: PoolDep, redis: RedisDep, settings: SettingsDep
) -> AuthenticatedDevice:
    return await service.authenticate(
        pool=pool,
        redis=redis,
        settings=settings,
        request=await signed_request(device_id, request),
    )


SignedDevice = Annotated[AuthenticatedDevice, Depends(signed_device)]


_ERROR = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
            }
        }
    }
}

_OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [
        {
            "name": TIMESTAMP_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
            "description": "Unix seconds when the request was signed.",
        },
        {
            "name": NONCE_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"},
            "description": "Unique per request and device.",
        },
        {
            "name": SIGNATURE_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "description": 'Hex HMAC-SHA256(secret, f"{timestamp}.{nonce}." + raw body).',
        },
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SignalBody.model_json_schema()}},
    },
}


@router.post(
    "/v1/devices/{device_id}/signals",
    summary="A signal from a panic button (HMAC-signed; see docs/devices.md)",
    responses={
        200: {
            "description": "Accepted: a non-panic signal (SignalAck), or a retried panic's"
            " incident (PanicOut)",
            "model": answers.SignalAck | answers.PanicOut,
        },
        201: {
            "description": "Panic accepted: the incident, the store and the nearest police",
            "model": answers.PanicOut,
        },
        401: {"description": "Signature, clock window, nonce or device rejected", **_ERROR},
        422: {"description": "The body is not a usable signal", **_ERROR},
        503: {"description": "A backing service is down; retry with a fresh nonce", **_ERROR},
    },
    openapi_extra=_OPENAPI_EXTRA,
)
async def post_signal(
    request: Request,
    device: SignedDevice,
    pool: PoolDep,
    settings: SettingsDep,
    session: SessionDep,
) -> Response:
    started = time.perf_counter()
    signal = parse_signal(await request.body())
    kind = signal.body.type
    # The request id goes with the incident to the console message, as a phone's SOS's does.
    request_id = logs.request_id_of(request.scope)
    if kind in PANIC_TYPES:
        result = await service.raise_panic(
            pool=pool, settings=settings, device=device, signal=signal, request_id=request_id
        )
        if result.created:
            kick_relay(request)
        metrics.sos_accepted(
            "button", created=result.created, folded=result.folded, started=started
        )
        return _json(result.body, 201 if result.created else 200)
    if not device.nonce_checked:
        if kind is SignalType.duress:
            # A cancel would be refused now, so the duress is refused alike (the store must not
            # tell them apart), but it is acted on first: a replay of it is harmless (the
            # incident is under duress already), and losing it is not.
            await service.duress_from_device(
                session=session, pool=pool, device=device, signal=signal, request_id=request_id
            )
            await session.commit()
            kick_relay(request)
        # Without the nonce check a captured cancel could be replayed against a later, real
        # panic; only a panic is worth accepting unprotected (its signal_id makes a replay
        # harmless).
        raise ServiceUnavailable("replay protection is unavailable; retry shortly")

    extra: dict[str, Any] = {}
    if kind in (SignalType.cancel, SignalType.duress):
        if kind is SignalType.cancel:
            outcome = await service.cancel_from_device(
                session=session, pool=pool, settings=settings, device=device, signal=signal,
                request_id=request_id,
            )  # fmt: skip
        else:
            outcome = await service.duress_from_device(
                session=session, pool=pool, device=device, signal=signal, request_id=request_id
            )
        # Commit here rather than in the dependency's teardown so the relay is kicked after it.
        await session.commit()
        kick_relay(request)
        extra = {
            "incident_id": str(outcome.incident_id) if outcome.incident_id else None,
            "status": outcome.status,
            "cancelled": outcome.cancelled,
        }
    elif kind is SignalType.tamper:
        await service.record_security_event(
            pool,
            kind=service.EV_TAMPER,
            device_id=device.id,
            source_ip=request.client.host if request.client else None,
            detail={"store": device.store.name, "firmware": signal.body.firmware},
        )
    elif kind is SignalType.test:
        # An installer pressing "test" sees which store the button is registered to.
        extra = {"store": device.store.as_json()}

    signal_health = await health.record_signal_of_type(
        pool, device_id=device.id, signal_type=kind.value, battery_pct=signal.body.battery_pct
    )
    if signal_health.reported:
        kick_relay(request)
    at = signal_health.at
    return _json(
        {
            "device_id": str(device.id),
            # A duress is answered as the cancel it looks like at the store.
            "type": SignalType.cancel.value if kind is SignalType.duress else kind.value,
            "received_at": at.isoformat(),
            "server_time": int(at.timestamp()),
            **extra,
        },
        200,
    )


def _json(body: dict[str, Any], status_code: int) -> Response:
    return Response(orjson.dumps(body), status_code=status_code, media_type="application/json")
