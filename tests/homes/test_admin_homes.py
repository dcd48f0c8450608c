"""Operators register, list and correct homes and their sensors over HTTP
(``/v1/admin/homes``): secrets shown once and working, the district following the position,
every action audited, bad input a 4xx with the stable body."""

from __future__ import annotations

import uuid

from tests.homes.helpers import ADDRESS, DISTRICT, HOME_LAT, HOME_LON, Sensor, signal

ELSEWHERE = ("11110", "Jongno-gu", 126.95, 37.56, 127.02, 37.60)


async def test_an_operator_registers_a_home_and_its_sensors_work(
    client, pool, make_district, make_member, make_staff
):
    await make_district(*DISTRICT)
    await make_district(*ELSEWHERE)
    her = await make_member()
    operator = await make_staff("operator")
    body = {
        "member_id": str(her.id),
        "address": ADDRESS,
        "lat": HOME_LAT,
        "lon": HOME_LON,
        "label": "flat 302",
        "keypad": True,
    }
    r = await client.post("/v1/admin/homes", json=body, headers=operator.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["district"] == {"code": DISTRICT[0], "name": DISTRICT[1]}
    assert [d["kind"] for d in created["devices"]] == ["door", "home_button", "keypad"]
    home_id = created["home_id"]
    # The secret shown is the one the sensor signs with.
    door = next(d for d in created["devices"] if d["kind"] == "door")
    sensor = Sensor(uuid.UUID(door["device_id"]), door["secret"], "door")
    assert (await signal(client, sensor, {"type": "test"})).status_code == 200
    # She sees it as hers.
    mine = (await client.get("/v1/me/homes", headers=her.headers)).json()["homes"]
    assert [h["id"] for h in mine] == [home_id]

    # Listed and read back without any secret (nor the position).
    listed = await client.get(
        "/v1/admin/homes", params={"member_id": str(her.id)}, headers=operator.headers
    )
    assert listed.status_code == 200
    (home,) = listed.json()["homes"]
    assert home["id"] == home_id and home["address"] == ADDRESS and home["state"] == "disarmed"
    assert {d["kind"] for d in home["devices"]} == {"door", "home_button", "keypad"}
    assert door["secret"] not in listed.text and "lat" not in home
    other_district = await client.get(
        "/v1/admin/homes", params={"district_code": ELSEWHERE[0]}, headers=operator.headers
    )
    assert other_district.json() == {"homes": []}
    one = await client.get(f"/v1/admin/homes/{home_id}", headers=operator.headers)
    assert one.json() == home

    # Corrected: a new address and position, in another district.
    r = await client.patch(
        f"/v1/admin/homes/{home_id}",
        json={"address": "3 Jong-ro, flat 1", "lat": 37.58, "lon": 126.99},
        headers=operator.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["address"] == "3 Jong-ro, flat 1"
    assert r.json()["district"] == {"code": ELSEWHERE[0], "name": ELSEWHERE[1]}
    assert r.json()["label"] == "flat 302"  # untouched
    lat, lon = await pool.fetchrow(
        "SELECT ST_Y(geog::geometry), ST_X(geog::geometry) FROM home WHERE id = $1::uuid",
        home_id,
    )
    assert (round(lat, 6), round(lon, 6)) == (37.58, 126.99)

    # Another sensor, its secret shown once.
    r = await client.post(
        f"/v1/admin/homes/{home_id}/devices",
        json={"kind": "motion", "label": "living room"},
        headers=operator.headers,
    )
    assert r.status_code == 201, r.text
    motion = r.json()
    assert motion["kind"] == "motion"
    sensor = Sensor(uuid.UUID(motion["device_id"]), motion["secret"], "motion")
    assert (await signal(client, sensor, {"type": "heartbeat"})).status_code == 200
    audits = await pool.fetch(
        "SELECT kind FROM security_event WHERE kind LIKE 'admin_home%' ORDER BY id"
    )
    assert [a["kind"] for a in audits] == [
        "admin_home_created",
        "admin_home_updated",
        "admin_home_device_created",
    ]


async def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    client, pool, make_district, make_member, make_staff
):
    await make_district(*DISTRICT)
    her = await make_member()
    operator = await make_staff("operator")
    good = {"member_id": str(her.id), "address": ADDRESS, "lat": HOME_LAT, "lon": HOME_LON}
    for payload, status in [
        ({**good, "member_id": str(uuid.uuid4())}, 404),
        ({**good, "address": ""}, 422),
        ({**good, "address": "   "}, 400),
        ({**good, "lat": 91}, 422),
        ({**good, "extra": 1}, 422),
        ({k: v for k, v in good.items() if k != "lon"}, 422),
    ]:
        r = await client.post("/v1/admin/homes", json=payload, headers=operator.headers)
        assert r.status_code == status, (payload, r.text)
        assert {"error", "detail"} <= set(r.json())
    assert await pool.fetchval("SELECT count(*) FROM home") == 0
    assert await pool.fetchval("SELECT count(*) FROM device") == 0

    home_id = (await client.post("/v1/admin/homes", json=good, headers=operator.headers)).json()[
        "home_id"
    ]
    for payload, status in [
        ({}, 400),
        ({"lat": 37.5}, 400),
        ({"address": "x", "state": "away"}, 422),
    ]:
        r = await client.patch(f"/v1/admin/homes/{home_id}", json=payload, headers=operator.headers)
        assert r.status_code == status, (payload, r.text)
        assert {"error", "detail"} <= set(r.json())
    for kind in ("panel", "button", "siren"):
        r = await client.post(
            f"/v1/admin/homes/{home_id}/devices", json={"kind": kind}, headers=operator.headers
        )
        assert r.status_code == 422, (kind, r.text)
    missing = uuid.uuid4()
    for method, path, body in [
        ("GET", f"/v1/admin/homes/{missing}", None),
        ("PATCH", f"/v1/admin/homes/{missing}", {"label": "x"}),
        ("POST", f"/v1/admin/homes/{missing}/devices", {"kind": "door"}),
    ]:
        r = await client.request(method, path, json=body, headers=operator.headers)
        assert (r.status_code, r.json()["error"]) == (404, "NotFound"), (method, path)
    # An erased home is not corrected any more.
    await pool.execute("UPDATE home SET enabled = false")
    r = await client.patch(
        f"/v1/admin/homes/{home_id}", json={"label": "x"}, headers=operator.headers
    )
    assert r.status_code == 404
    r = await client.post(
        f"/v1/admin/homes/{home_id}/devices", json={"kind": "door"}, headers=operator.headers
    )
    assert r.status_code == 404
    assert await pool.fetchval("SELECT count(*) FROM device") == 2


async def test_only_operators_reach_the_homes_api(client, make_member, make_staff, make_district):
    district = await make_district(*DISTRICT)
    her = await make_member()
    dispatcher = await make_staff(district_ids=(district,))
    for headers, status in [({}, 401), (her.headers, 401), (dispatcher.headers, 403)]:
        r = await client.get("/v1/admin/homes", headers=headers)
        assert r.status_code == status
        assert {"error", "detail"} <= set(r.json())
