"""The SOS path's own Redis connection (app/redis_line.py), against the real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from app.redis_line import RedisLine, encode
from tests.e2e.harness import free_port


@pytest.fixture
async def line(redis: Redis):
    line = RedisLine.like(redis, role="t")
    yield line
    await line.aclose()


def _key() -> str:
    return f"test:line:{uuid.uuid4().hex}"


def test_arguments_are_encoded_as_redis_py_encodes_them() -> None:
    assert encode((b"SET", "k\u00e9", 7, 1.5)) == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$1\r\n7\r\n$3\r\n1.5\r\n"
    )
    with pytest.raises(TypeError):
        encode((b"SET", True))


async def test_it_uses_the_clients_database_and_is_named_after_it(line, redis) -> None:
    key = _key()
    assert await line.execute("SET", key, "v") == b"OK"
    assert await redis.get(key) == b"v"  # the same database as the tests' client
    assert await line.execute("CLIENT", "GETNAME") == b"ansim-tests-t"


async def test_concurrent_callers_pipeline_on_one_connection_each_getting_its_reply(
    line, redis
) -> None:
    words = [f"w{i}-{uuid.uuid4().hex}" for i in range(300)]
    replies = await asyncio.gather(*(line.execute("ECHO", w) for w in words))
    assert replies == [w.encode() for w in words]
    clients = await redis.client_list()
    assert [c["name"] for c in clients].count("ansim-tests-t") == 1


async def test_an_error_reply_raises_and_the_connection_goes_on(line) -> None:
    key = _key()
    await line.execute("LPUSH", key, "x")
    first = await line.execute("CLIENT", "ID")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await line.execute("INCR", key)
    assert await line.execute("PING") == b"PONG"
    assert await line.execute("CLIENT", "ID") == first


async def test_a_script_the_server_does_not_know_is_loaded_and_run(line, redis) -> None:
    sha = line.script("return {KEYS[1], ARGV[1]}")
    await redis.script_flush()
    assert await line.evalsha(sha, ["k"], [b"a"]) == [b"k", b"a"]
    await redis.script_flush()
    assert await line.evalsha(sha, ["k"], [2]) == [b"k", b"2"]


async def test_a_killed_connection_fails_its_callers_and_the_next_command_reconnects(
    line, redis
) -> None:
    first = await line.execute("CLIENT", "ID")
    blocked = asyncio.create_task(line.execute("BLPOP", _key(), 10, block_s=10))
    await asyncio.sleep(0.2)
    await redis.client_kill_filter(_id=first)
    async with asyncio.timeout(5):
        with pytest.raises(ConnectionError):
            await blocked
    assert await line.execute("PING") == b"PONG"
    assert await line.execute("CLIENT", "ID") != first


async def test_a_reply_not_in_time_is_a_timeout_and_the_next_command_reconnects(
    redis,
) -> None:
    line = RedisLine.like(redis, role="t")
    line.timeout = 0.3
    try:
        first = await line.execute("CLIENT", "ID")
        async with asyncio.timeout(5):  # the check runs every second
            with pytest.raises(TimeoutError):
                await line.execute("BLPOP", _key(), 4)
        assert await line.execute("CLIENT", "ID") != first
    finally:
        await line.aclose()


async def test_no_server_is_a_connection_error() -> None:
    line = RedisLine(port=free_port(), connect_timeout=0.5)  # nobody listens there
    with pytest.raises(ConnectionError):
        await line.execute("PING")
    with pytest.raises(ConnectionError):  # and again: nothing is left half-open
        await line.execute("PING")
