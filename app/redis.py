"""Redis client factory (named, so `CLIENT LIST` shows who is who)."""

from __future__ import annotations

from redis.asyncio import Redis

from app.config import Settings


def create_redis(settings: Settings, *, client_name: str = "ansim") -> Redis:
    return Redis.from_url(
        settings.redis_url,
        client_name=client_name,
        decode_responses=False,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=15,
        retry_on_timeout=True,
    )
