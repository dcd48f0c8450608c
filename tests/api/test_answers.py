"""Every JSON answer has a documented schema in /openapi.json (issue 17 §6), and the answers built
by hand (the SOS, a button's signal, the map's reference layer) carry exactly the keys their
documented model names. The other answers are checked by every test that calls them: the suite
runs with ``ANSIM_ANSWERS_EXTRA=forbid`` (tests/conftest.py), so a key a model does not name is a
500 there."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from app.api import answers
from app.api.alerts import SOSResponse
from app.main import create_app
from tests.devices.helpers import make_device, send_signal

GANGNAM = ("11680", "강남구", 127.0, 37.45, 127.1, 37.55)
HERE = {"lat": 37.4979, "lon": 127.0276}


def _undocumented_answers(spec: dict[str, Any]) -> list[str]:
    """Each operation and 2xx status whose JSON answer has no named schema (a model's ``$ref``,
    or a choice of them; or another standard's schema named by ``x-standard-schema``, which the
    tests of that format validate against)."""
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                json_content = response.get("content", {}).get("application/json")
                if not status.startswith("2") or json_content is None:
                    continue
                schema = json_content.get("schema", {})
                if "x-standard-schema" in schema:
                    continue
                choices = schema.get("anyOf", [schema])
                if not choices or not all("$ref" in choice for choice in choices):
                    missing.append(f"{method.upper()} {path} {status}: {schema}")
    return missing


def test_every_json_answer_has_a_documented_schema() -> None:
    missing = _undocumented_answers(create_app().openapi())
    assert missing == [], "declare a response_model (app/api/answers.py):\n" + "\n".join(missing)


def test_the_walk_finds_an_answer_without_a_schema() -> None:
    """The check above can fail: a route answering a bare dict is found."""
    app = FastAPI()

    @app.get("/typed", response_model=answers.Alive)
    async def typed() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bare")
    async def bare() -> dict[str, Any]:
        return {}

    assert [m.split(":")[0] for m in _undocumented_answers(app.openapi())] == ["GET /bare 200"]


def _undocumented_keys(model: type[BaseModel], body: Any) -> list[str]:
    """The keys of ``body`` that ``model`` does not name, at any depth (``body`` must also be
    valid for ``model``: its required fields present, its types right)."""
    dumped = model.model_validate(body).model_dump(mode="json")

    def walk(value: Any, documented: Any, where: str) -> list[str]:
        if isinstance(value, dict) and isinstance(documented, dict):
            out = [f"{where}.{k}" for k in value if k not in documented]
            for k in value.keys() & documented.keys():
                out += walk(value[k], documented[k], f"{where}.{k}")
            return out
        if isinstance(value, list) and isinstance(documented, list):
            return [x for i, pair in enumerate(zip(value, documented, strict=True))
                    for x in walk(*pair, f"{where}[{i}]")]  # fmt: skip
        return []

    return walk(body, dumped, "")


def test_the_checks_can_fail() -> None:
    """A key the model does not name is found in a hand-built answer, and refused in the
    answers FastAPI validates (the suite's ``forbid``)."""
    assert _undocumented_keys(SOSResponse, {**_SOS_BODY, "x": 1}) == [".x"]
    assert _undocumented_keys(SOSResponse, _SOS_BODY) == []
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        answers.Revoked.model_validate({"revoked": 1, "x": 1})


_SOS_BODY = {
    "incident_id": str(uuid.uuid4()),
    "status": "new",
    "received_at": "2026-12-07T21:00:00+00:00",
    "district": None,
    "nearest_safe_places": [],
    "flags": [],
    "warnings": [],
}


def _documented(app: FastAPI, path: str, method: str, status: int) -> dict[str, Any]:
    content = app.openapi()["paths"][path][method]["responses"][str(status)]["content"]
    schema: dict[str, Any] = content["application/json"]["schema"]
    return schema


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


async def test_the_sos_bytes_agree_with_their_documented_schema(
    app, client, make_member, make_district, make_place
) -> None:
    await make_district(*GANGNAM)
    await make_place("GS25 Gangnam", 37.4981, 127.0279)
    member = await make_member()
    body = {
        "client_alert_id": str(uuid.uuid4()),
        "trigger": "no-such-trigger",  # a warning, so the warnings' shape is checked too
        "location": {**HERE, "accuracy_m": 8.0},
    }
    created = await client.post("/v1/alerts", json=body, headers=member.headers)
    replay = await client.post("/v1/alerts", json=body, headers=member.headers)
    other = await make_member()  # (hers would fold into her open alert)
    unlocated = await client.post(
        "/v1/alerts", json={"client_alert_id": str(uuid.uuid4())}, headers=other.headers
    )
    assert [created.status_code, replay.status_code, unlocated.status_code] == [201, 200, 201]
    assert created.json()["district"] and created.json()["nearest_safe_places"]
    assert created.json()["warnings"]
    for r in (created, replay, unlocated):
        assert _undocumented_keys(SOSResponse, r.json()) == []
    assert _documented(app, "/v1/alerts", "post", 201) == _ref(SOSResponse)
    assert _documented(app, "/v1/alerts", "post", 200) == _ref(SOSResponse)


async def test_a_buttons_answers_agree_with_their_documented_schemas(
    app, client, pool, make_district, make_place
) -> None:
    await make_district(*GANGNAM)
    store = await make_place("GS25 Gangnam", 37.4981, 127.0279, address="Gangnam-daero")
    await make_place("Yeoksam police box", 37.4995, 127.0290, kind="police_box")
    device = await make_device(pool, store)
    panic = {"type": "panic", "signal_id": str(uuid.uuid4()), "battery_pct": 80, "extra": 1}
    created = await send_signal(client, device, panic)
    replay = await send_signal(client, device, panic)
    test = await send_signal(client, device, {"type": "test"})
    heartbeat = await send_signal(client, device, {"type": "heartbeat", "battery_pct": 70})
    assert [created.status_code, replay.status_code] == [201, 200]
    assert [test.status_code, heartbeat.status_code] == [200, 200], test.text
    assert created.json()["nearest_police"] and created.json()["warnings"]
    for r in (created, replay):
        assert _undocumented_keys(answers.PanicOut, r.json()) == []
    for r in (test, heartbeat):
        assert _undocumented_keys(answers.SignalAck, r.json()) == []
    assert "store" in test.json()
    path = "/v1/devices/{device_id}/signals"
    assert _documented(app, path, "post", 201) == _ref(answers.PanicOut)
    assert _documented(app, path, "post", 200)["anyOf"] == [
        _ref(answers.SignalAck),
        _ref(answers.PanicOut),
    ]


@pytest.mark.parametrize("bbox", [None, "126.9,37.4,127.2,37.6"])
async def test_the_map_reference_agrees_with_its_documented_schema(
    app, client, make_member, make_district, make_place, bbox
) -> None:
    await make_district(*GANGNAM)
    await make_place("GS25 Gangnam", 37.4981, 127.0279)
    member = await make_member()
    r = await client.get(
        "/v1/map/reference", params={"bbox": bbox} if bbox else {}, headers=member.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["places"] and r.json()["districts"]["features"]
    assert _undocumented_keys(answers.MapReference, r.json()) == []
    assert _documented(app, "/v1/map/reference", "get", 200) == _ref(answers.MapReference)
