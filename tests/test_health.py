async def test_healthz_says_alive(client):
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_checks_postgis_and_redis(client):
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["redis"] == "ok"
    assert body["checks"]["postgis"].startswith("3.")


async def test_unknown_route_has_the_stable_error_body(client):
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"] == "NotFound"
    assert "detail" in r.json()
