"""One list of transient errors for the API (503), the consoles (stay open) and the
dispatchers (retry, keep the entry): an outage is in it, a bug is not."""

from __future__ import annotations

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.errors import transient


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.AdminShutdownError(
            "terminating connection due to administrator command"
        ),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.InternalClientError("protocol is in an unexpected state"),
        RedisConnectionError("Connection refused"),
        RedisTimeoutError("Timeout reading from socket"),
    ],
    ids=type,
)
def test_an_outage_is_transient(exc: BaseException) -> None:
    assert transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.DataError("invalid input for query argument $1"),  # an InterfaceError subclass
        asyncpg.UniqueViolationError("duplicate key"),
        ValueError("bad"),
    ],
    ids=type,
)
def test_a_bug_is_not(exc: BaseException) -> None:
    assert not transient(exc)


async def test_a_data_error_is_a_500_not_a_503(app, client) -> None:
    @app.get("/boom-data-error")
    async def _boom() -> None:
        raise asyncpg.DataError("invalid input for query argument $1")

    @app.get("/boom-outage")
    async def _down() -> None:
        raise asyncpg.InterfaceError("connection is closed")

    import httpx

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        bug = await c.get("/boom-data-error")
        down = await c.get("/boom-outage")
    assert bug.status_code == 500
    assert down.status_code == 503 and down.json()["error"] == "ServiceUnavailable"
