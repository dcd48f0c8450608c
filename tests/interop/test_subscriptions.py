"""The operators' side of agencies' subscriptions: the API and the CLI."""

from __future__ import annotations

import json
import uuid

import pytest

from app.interop import subscriptions
from tests.test_cli import ansim


@pytest.fixture
async def operator(make_staff):
    return await make_staff("operator")


@pytest.fixture
async def districts(make_district):
    return (
        await make_district("11110", "Jongno-gu", 126.90, 37.50, 126.95, 37.55),
        await make_district("11140", "Jung-gu", 126.95, 37.50, 127.00, 37.55),
    )


async def test_an_operator_registers_an_agency_and_sees_its_secret_once(
    client, operator, districts, pool
):
    body = {
        "name": "Jongno CAD",
        "url": "https://cad.example.kr/ansim",
        "format": "eido",
        "districts": ["11110"],
    }
    r = await client.post("/v1/admin/agency-subscriptions", json=body, headers=operator.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert len(created["secret"]) >= 32 and created["districts"] == ["11110"]
    assert created["enabled"] and created["pending"] == 0
    listed = (await client.get("/v1/admin/agency-subscriptions", headers=operator.headers)).json()
    [row] = listed["subscriptions"]
    assert row["id"] == created["id"] and "secret" not in row
    assert created["secret"] not in str(listed)
    event = await pool.fetchrow(
        "SELECT kind, detail FROM security_event WHERE kind = 'admin_agency_subscription_created'"
    )
    assert event["detail"]["agency_subscription_id"] == created["id"]


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"districts": ["99999"]}, 400, "unknown district codes: 99999"),
        ({"url": "ftp://cad.example.kr/x"}, 400, "http:// or https://"),
        ({"url": "http://[::1/x"}, 400, "not a valid URL"),
        ({"url": "https://user:pw@cad.example.kr/x"}, 400, "credentials"),
        ({"format": "xml"}, 422, "format"),
        ({"secret": "short"}, 422, "secret"),
    ],
)
async def test_a_bad_registration_is_a_clear_4xx(client, operator, districts, change, status, says):
    body = {"name": "CAD", "url": "https://cad.example.kr/x", "format": "cap", **change}
    r = await client.post("/v1/admin/agency-subscriptions", json=body, headers=operator.headers)
    assert r.status_code == status, r.text
    assert set(r.json()) >= {"error", "detail"} and says in r.text


async def test_disabling_gives_up_what_is_waiting_and_queues_nothing_more(
    client, operator, districts, pool, make_member
):
    async with pool.acquire() as conn:
        sub = await subscriptions.create(
            conn, name="CAD", url="http://127.0.0.1:9/x", format="cap", district_codes=["11110"]
        )
    member = await make_member()
    r = await client.post(
        "/v1/alerts",
        json={
            "client_alert_id": str(uuid.uuid4()),
            "trigger": "button",
            "location": {"lat": 37.52, "lon": 126.92},
        },
        headers={"Authorization": f"Bearer {member.token}"},
    )
    incident_id = uuid.UUID(r.json()["incident_id"])
    async with pool.acquire() as conn, conn.transaction():
        queued = await subscriptions.enqueue(
            conn, incident_id=incident_id, outbox_id=1, kind="reported", deadline_s=60
        )
        again = await subscriptions.enqueue(
            conn, incident_id=incident_id, outbox_id=1, kind="reported", deadline_s=60
        )
        ours = await subscriptions.enqueue(
            conn, incident_id=incident_id, outbox_id=2, kind="notify_failed", deadline_s=60
        )
    assert (queued, again, ours) == (1, 0, 0)  # once per change; our own failures never
    path = f"/v1/admin/agency-subscriptions/{sub['id']}"
    r = await client.post(f"{path}/disable", headers=operator.headers)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert r.json()["failed"] == 1 and r.json()["pending"] == 0
    async with pool.acquire() as conn, conn.transaction():
        assert await subscriptions.enqueue(
            conn, incident_id=incident_id, outbox_id=3, kind="acknowledged", deadline_s=60
        ) == 0  # fmt: skip
    r = await client.post(f"{path}/enable", headers=operator.headers)
    assert r.json()["enabled"] is True
    r = await client.get(f"{path}/deliveries", headers=operator.headers)
    assert r.status_code == 200 and r.json() == {"deliveries": []}
    missing = f"/v1/admin/agency-subscriptions/{uuid.uuid4()}"
    for call in ("disable", "enable"):
        assert (await client.post(f"{missing}/{call}", headers=operator.headers)).status_code == 404
    assert (await client.get(f"{missing}/deliveries", headers=operator.headers)).status_code == 404


async def test_the_cli_registers_lists_and_disables_an_agency(migrated, districts):
    done = ansim(
        "agencies", "create", "--name", "112 centre", "--url", "https://112.example.kr/cap",
        "--format", "CAP", "--district", "11110", "--district", "11140", "--json",
    )  # fmt: skip
    created = json.loads(done.stdout)
    assert created["format"] == "cap" and created["districts"] == ["11110", "11140"]
    assert "shown only this once" in done.stderr and len(created["secret"]) >= 32
    listed = json.loads(ansim("agencies", "list", "--json").stdout)
    assert [s["id"] for s in listed] == [created["id"]] and created["secret"] not in str(listed)
    ansim("agencies", "disable", created["id"])
    assert json.loads(ansim("agencies", "list", "--json").stdout)[0]["enabled"] is False
    refused = ansim("agencies", "create", "--name", "x", "--url", "mailto:x", "--format", "cap",
                    check=False)  # fmt: skip
    assert refused.returncode == 1 and "http:// or https://" in refused.stderr
