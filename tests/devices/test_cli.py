"""``ansim devices ...``: credentials printed once, rotation with a grace period, disable."""

from __future__ import annotations

import asyncio
import json
import uuid

from typer.testing import CliRunner

from app.devices.cli import devices_app

runner = CliRunner()


async def _run(*args: str):
    # The CLI runs its own event loop (asyncio.run); keep it off the test's loop.
    return await asyncio.to_thread(runner.invoke, devices_app, list(args))


async def _invoke(*args: str):
    result = await _run(*args)
    assert result.exit_code == 0, result.output
    return result


async def test_create_prints_id_and_secret_once_as_json(pool, make_place):
    place_id = await make_place("CU Sinchon", 37.5551, 126.9369)
    out = json.loads(
        (
            await _invoke("create", "--place-id", str(place_id), "--label", "counter", "--json")
        ).stdout
    )
    assert set(out) == {"device_id", "secret"}
    row = await pool.fetchrow("SELECT * FROM device WHERE id = $1", uuid.UUID(out["device_id"]))
    assert row["safe_place_id"] == place_id
    assert row["label"] == "counter"
    assert row["enabled"] is True
    assert row["secret"] == out["secret"]
    assert len(out["secret"]) == 64


async def test_create_for_an_unknown_place_fails_cleanly(pool):
    result = await _run(*["create", "--place-id", str(uuid.uuid4()), "--json"])
    assert result.exit_code == 1
    assert "no safe place" in result.output
    assert await pool.fetchval("SELECT count(*) FROM device") == 0


async def test_rotate_keeps_the_old_secret_for_the_grace_period_then_disable(pool, make_place):
    place_id = await make_place("CU Sinchon", 37.5551, 126.9369)
    created = json.loads((await _invoke("create", "--place-id", str(place_id), "--json")).stdout)
    device_id = created["device_id"]
    rotated = json.loads(
        (await _invoke("rotate-secret", device_id, "--grace-seconds", "600", "--json")).stdout
    )
    assert rotated["secret"] != created["secret"]
    row = await pool.fetchrow(
        "SELECT *, previous_secret_until - now() AS left FROM device WHERE id = $1",
        uuid.UUID(device_id),
    )
    assert row["secret"] == rotated["secret"]
    assert row["previous_secret"] == created["secret"]
    assert 590 < row["left"].total_seconds() <= 600

    await _invoke("disable", device_id)
    assert await pool.fetchval("SELECT enabled FROM device") is False
    await _invoke("enable", device_id)
    assert await pool.fetchval("SELECT enabled FROM device") is True


async def test_unknown_device_id_is_reported(pool):
    result = await _run(*["disable", str(uuid.uuid4())])
    assert result.exit_code == 1
    assert "no device" in result.output


async def test_create_with_the_double_cancel_duress_and_turn_it_off(pool, make_place):
    place_id = await make_place("CU Hapjeong", 37.549, 126.913)
    out = json.loads(
        (
            await _invoke("create", "--place-id", str(place_id), "--duress-double-cancel", "--json")
        ).stdout
    )
    assert out["duress_double_cancel_s"] == 5.0  # the default window
    device_id = uuid.UUID(out["device_id"])
    sql = "SELECT duress_double_cancel_s FROM device WHERE id = $1"
    assert await pool.fetchval(sql, device_id) == 5.0
    await _invoke("duress", str(device_id), "--double-cancel-s", "3")
    assert await pool.fetchval(sql, device_id) == 3.0
    await _invoke("duress", str(device_id), "--off")
    assert await pool.fetchval(sql, device_id) is None
    assert (await _run("duress", str(device_id))).exit_code == 2
    assert (await _run("duress", str(uuid.uuid4()), "--off")).exit_code == 1
