"""The pages' own endpoints, through the app in-process (no browser)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.api.deps import get_settings_dep
from app.api.web import demo_credentials, web_config
from app.config import Settings
from app.dispatch import presence

A = (126.90, 37.50, 126.95, 37.55)
B = (126.95, 37.50, 127.00, 37.55)


async def test_pages_and_leaflet_are_served_locally(client: Any) -> None:
    for path, marker in (("/console", "dispatch console"), ("/demo/phone", "phone simulator")):
        r = await client.get(path)
        assert r.status_code == 200 and marker in r.text.lower()
        assert "/static/vendor/leaflet/leaflet.js" in r.text  # never a CDN
    js = await client.get("/static/vendor/leaflet/leaflet.js")
    assert js.status_code == 200 and "Leaflet" in js.text[:500]
    assert (await client.get("/static/web/console.js")).status_code == 200
    assert (await client.get("/static/web/../../api/web.py")).status_code == 404


async def test_map_reference_draws_districts_and_places_for_any_token(
    client: Any, make_district: Any, make_place: Any, make_member: Any, make_staff: Any
) -> None:
    a = await make_district("A", "District A", *A)
    await make_place("Store", 37.52, 126.92)
    await make_place("Box", 37.53, 126.93, kind="police_box")
    assert (await client.get("/v1/map/reference")).status_code == 401
    for creds in (await make_member(), await make_staff("dispatcher", district_ids=(a,))):
        r = await client.get("/v1/map/reference", headers=creds.headers)
        assert r.status_code == 200
        body = r.json()
        feature = body["districts"]["features"][0]
        assert feature["properties"] == {"id": str(a), "code": "A", "name": "District A"}
        assert feature["geometry"]["type"] == "MultiPolygon"
        ring = feature["geometry"]["coordinates"][0][0]
        assert [126.9, 37.5] in ring and [126.95, 37.55] in ring
        assert {(p["name"], p["police"]) for p in body["places"]} == {
            ("Store", False),
            ("Box", True),
        }
    only = await client.get(
        "/v1/map/reference?bbox=126.925,37.525,126.94,37.54", headers=creds.headers
    )
    assert [p["name"] for p in only.json()["places"]] == ["Box"]
    bad = await client.get("/v1/map/reference?bbox=1,2,3", headers=creds.headers)
    assert bad.status_code == 400 and bad.json()["error"] == "BadRequest"


async def test_incident_nearby_lists_places_police_and_volunteers_in_scope_only(
    client: Any,
    make_district: Any,
    make_place: Any,
    make_member: Any,
    make_staff: Any,
    redis: Any,
    settings: Any,
    pool: Any,
) -> None:
    a = await make_district("A", "District A", *A)
    b = await make_district("B", "District B", *B)
    await make_place("Near store", 37.5201, 126.9201)
    await make_place("Far store", 37.54, 126.94)
    await make_place("Box", 37.521, 126.921, kind="police_box")
    disp_a = await make_staff("dispatcher", district_ids=(a,))
    disp_b = await make_staff("dispatcher", district_ids=(b,))
    volunteer = await make_staff("volunteer", name="Vee", badge_number="SRS-1")
    await presence.report(redis, settings, volunteer_id=volunteer.id, lat=37.521, lon=126.92)
    member = await make_member()
    sos = await client.post(
        "/v1/alerts",
        headers=member.headers,
        json={
            "client_alert_id": "6f1c2d3e-0000-4000-8000-0000000000aa",
            "trigger": "button",
            "location": {"lat": 37.52, "lon": 126.92, "accuracy_m": 5},
        },
    )
    incident_id = sos.json()["incident_id"]

    r = await client.get(f"/v1/console/incidents/{incident_id}/nearby", headers=disp_a.headers)
    assert r.status_code == 200
    body = r.json()
    assert [p["name"] for p in body["safe_places"]] == ["Near store", "Far store"]
    assert [p["name"] for p in body["police"]] == ["Box"]
    [vee] = body["volunteers"]
    assert (vee["name"], vee["badge_number"], vee["assigned"]) == ("Vee", "SRS-1", False)
    assert vee["distance_m"] < 200 and abs(vee["lat"] - 37.521) < 1e-4
    logged = await pool.fetch(
        "SELECT staff_ids FROM location_access WHERE reason = 'console_nearby'"
    )
    assert [r["staff_ids"] for r in logged] == [[disp_a.id]]

    other = await client.get(f"/v1/console/incidents/{incident_id}/nearby", headers=disp_b.headers)
    assert other.status_code == 404  # not 403: its existence is not revealed
    not_dispatcher = await client.get(
        f"/v1/console/incidents/{incident_id}/nearby", headers=volunteer.headers
    )
    assert not_dispatcher.status_code == 403


async def test_web_config_offers_demo_credentials_only_in_development(
    client: Any, tmp_path: Path
) -> None:
    r = await client.get("/v1/web/config")
    assert r.status_code == 200 and r.json() == {
        "environment": "test",
        "demo": None,
        # No tile server unless one is configured: the maps stay offline.
        "map": {"tile_url": None, "tile_attribution": None, "dongs_url": "/v1/map/dongs"},
    }
    saved = tmp_path / "credentials.json"
    saved.write_text(
        json.dumps(
            {
                "member": {"token": "am_x", "pin": "1234", "duress_pin": "9999", "phone": "+82"},
                "dispatchers": [
                    {
                        "username": "dispatcher-gangnam",
                        "password": "pw",
                        "district": "11680",
                        "district_name": "강남구",
                        "district_name_en": "Gangnam-gu",
                        "token": "as_secret",
                    }
                ],
                "supervisor": {"username": "supervisor", "password": "pw", "token": "as_y"},
            }
        )
    )
    assert demo_credentials("test", saved) is None
    assert demo_credentials("production", saved) is None
    demo = demo_credentials("development", saved)
    assert demo is not None and demo["member"]["token"] == "am_x"
    assert demo["dispatchers"] == [
        {
            "username": "dispatcher-gangnam",
            "password": "pw",
            "district": "11680",
            "district_name": "강남구",
        }
    ]
    assert "as_secret" not in json.dumps(demo)  # staff sign in with a password, never a token
    assert demo_credentials("development", tmp_path / "missing.json") is None


async def test_web_config_passes_the_tile_server_and_can_turn_the_dongs_off() -> None:
    settings = Settings(
        environment="test",
        map_tile_url="https://tiles.example.go.kr/{z}/{x}/{y}.png",
        map_tile_attribution="© Example City",
        map_dongs=False,
    )
    assert (await web_config(settings))["map"] == {
        "tile_url": "https://tiles.example.go.kr/{z}/{x}/{y}.png",
        "tile_attribution": "© Example City",
        "dongs_url": None,
    }


async def test_the_dong_layer_is_public_cached_and_revalidated(client: Any) -> None:
    r = await client.get("/v1/map/dongs")  # no token: open data, the same for everyone
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    assert r.headers["cache-control"] == "public, max-age=86400"
    body = r.json()
    assert body["type"] == "FeatureCollection" and len(body["features"]) == 467
    names = {f["properties"]["EMD_KOR_NM"] for f in body["features"]}
    assert {"역삼동", "청운동"} <= names
    zipped = await client.get("/v1/map/dongs", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.json() == body
    etag = r.headers["etag"]
    again = await client.get("/v1/map/dongs", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = await client.get("/v1/map/dongs", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200


async def test_the_dong_layer_is_404_when_turned_off(app: Any, client: Any) -> None:
    off = Settings(environment="test", map_dongs=False)
    app.dependency_overrides[get_settings_dep] = lambda: off
    try:
        r = await client.get("/v1/map/dongs")
        config = await client.get("/v1/web/config")
    finally:
        app.dependency_overrides.pop(get_settings_dep)
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    assert config.json()["map"]["dongs_url"] is None
