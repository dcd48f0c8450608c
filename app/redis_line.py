"""A lean, pipelined Redis connection for the few commands on the SOS path.

redis-py's asyncio client spends ~150 µs of CPU on a command on the machine we measure on (its
stream reader and writer, connection pool, retry and observability layers), about four times
a round trip's floor; an SOS costs two such commands (the publish script, and the console
hub's read). ``RedisLine`` is one connection, driven as an ``asyncio.Protocol``, with replies
parsed by hiredis (the parser redis-py uses too) and matched to callers in order, so that
concurrent callers pipeline on it. Everything else keeps using redis-py.

Errors are redis-py's: a reply error raises ``ResponseError`` (``NoScriptError`` for NOSCRIPT)
and leaves the connection usable; a lost connection raises ``ConnectionError`` in every caller
waiting on it; a reply later than ``timeout`` raises ``TimeoutError`` in every caller waiting
(the connection is dropped: what it would still deliver is unknown). The next command opens a
new connection. A blocking command must have a line of its own (``ConsoleHub`` does).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
import time
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = bytes | str | int | float


def encode(args: tuple[Arg, ...]) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bool):
            raise TypeError("a bool is not a Redis argument")
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = repr(float(arg)).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, line: RedisLine) -> None:
        self.line = line
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.transport: asyncio.Transport | None = None
        #: (reply future, deadline) of each command sent and not answered yet, in order
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # (uvloop's is not a subclass)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiting:
                self.fail(RedisConnectionError("a Redis reply nobody asked for"))
                return
            future, _ = waiting.popleft()
            if not future.done():  # (its caller may have been cancelled)
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Redis connection lost ({exc or 'closed'})"))

    def fail(self, exc: BaseException) -> None:
        """The connection is done for: every caller waiting on it gets ``exc``."""
        if self.transport is not None:
            self.transport.abort()
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(exc)
        if self.line._proto is self:
            self.line._proto = None

    def send(self, data: bytes, timeout: float) -> asyncio.Future[Any]:
        assert self.transport is not None
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((future, time.monotonic() + timeout))
        self.transport.write(data)
        return future


class RedisLine:
    """One pipelined connection; commands are sent as they come and answered in order."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        client_name: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
    ) -> None:
        self.host, self.port, self.path, self.db = host, port, path, db
        self.username, self.password = username, password
        self.client_name = client_name
        self.ssl_context = ssl_context
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self._proto: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._scripts: dict[bytes, bytes] = {}  # sha1 -> body, for NOSCRIPT

    @classmethod
    def like(cls, redis: Redis, *, role: str) -> RedisLine:
        """A line to the server, database and credentials of a redis-py client, named after
        it with ``role`` appended (``CLIENT LIST`` shows who is who)."""
        pool = redis.connection_pool
        kw = pool.connection_kwargs
        context = None
        if issubclass(pool.connection_class, SSLConnection):
            context = ssl.create_default_context(cafile=kw.get("ssl_ca_certs"))
            if kw.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        unix = issubclass(pool.connection_class, UnixDomainSocketConnection)
        return cls(
            host=kw.get("host", "127.0.0.1"),
            port=int(kw.get("port", 6379)),
            path=kw.get("path") if unix else None,
            db=int(kw.get("db", 0)),
            username=kw.get("username"),
            password=kw.get("password"),
            client_name=f"{kw['client_name']}-{role}" if kw.get("client_name") else role,
            ssl_context=context,
            connect_timeout=kw.get("socket_connect_timeout") or 2.0,
            timeout=kw.get("socket_timeout") or 5.0,
        )

    async def execute(self, *args: Arg, block_s: float = 0.0) -> Any:
        """Send one command and return its reply. ``block_s``: how long the command may
        block in Redis by design (``XREAD BLOCK``), on top of the timeout."""
        proto = self._proto or await self._connect()
        future = proto.send(encode(args), self.timeout + block_s)
        self._arm_watchdog()
        reply = await future
        if isinstance(reply, ResponseError):
            if str(reply).startswith("NOSCRIPT"):
                raise NoScriptError(str(reply))
            raise reply
        return reply

    def script(self, body: str) -> bytes:
        """Register a Lua script; returns its SHA1 for ``evalsha``."""
        data = body.encode()
        sha = hashlib.sha1(data, usedforsecurity=False).hexdigest().encode()
        self._scripts[sha] = data
        return sha

    async def evalsha(self, sha: bytes, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run a registered script, loading it first if this server does not know it."""
        try:
            return await self.execute(b"EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await self.execute(b"SCRIPT", b"LOAD", self._scripts[sha])
            return await self.execute(b"EVALSHA", sha, len(keys), *keys, *args)

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._proto is not None:
            self._proto.fail(RedisConnectionError("Redis line closed"))

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None:
                return self._proto
            loop = asyncio.get_running_loop()
            proto = _Protocol(self)
            setup: list[tuple[Arg, ...]] = []
            if self.password is not None:
                auth: tuple[Arg, ...] = (self.username,) if self.username else ()
                setup.append((b"AUTH", *auth, self.password))
            if self.db:
                setup.append((b"SELECT", self.db))
            if self.client_name:
                setup.append((b"CLIENT", b"SETNAME", self.client_name))
            try:
                async with asyncio.timeout(self.connect_timeout):
                    if self.path is not None:
                        await loop.create_unix_connection(lambda: proto, self.path)
                    else:
                        await loop.create_connection(
                            lambda: proto, self.host, self.port, ssl=self.ssl_context
                        )
                    replies = await asyncio.gather(
                        *(proto.send(encode(cmd), self.connect_timeout) for cmd in setup)
                    )
            except OSError as exc:  # (TimeoutError is one)
                proto.fail(RedisConnectionError("cannot connect to Redis"))
                raise RedisConnectionError(f"cannot connect to Redis: {exc!r}") from exc
            for reply in replies:
                if isinstance(reply, ResponseError):
                    proto.fail(reply)
                    raise reply
            self._proto = proto
            return proto

    def _arm_watchdog(self) -> None:
        """One timer per line, not per command: every second at most, while replies are
        awaited, it checks the oldest one's deadline."""
        if self._watchdog is None and self._proto is not None and self._proto.waiting:
            self._watchdog = asyncio.get_running_loop().call_later(1.0, self._check)

    def _check(self) -> None:
        self._watchdog = None
        proto = self._proto
        if proto is None or not proto.waiting:
            return
        if proto.waiting[0][1] < time.monotonic():
            proto.fail(RedisTimeoutError("no reply from Redis in time"))
            return
        self._arm_watchdog()
