"""A police console: the live WebSocket stream (resuming from its cursor when told to) and
acknowledging what arrives over REST. Reports "SOS->console" as a Locust request whose time is
from the incident's commit to the message arriving here."""

from __future__ import annotations

import time
from typing import Any

import gevent
import orjson
from locust import FastHttpUser, between, task
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from loadtests.scenarios.common import take


class ConsoleUser(FastHttpUser):
    weight = 1
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.token = take("console_tokens")
        self.headers = {"Authorization": f"Bearer {self.token}"}
        self.cursor: str | None = None
        self.to_ack: list[str] = []
        self.reader = gevent.spawn(self._read_forever)

    def on_stop(self) -> None:
        self.reader.kill(block=False)

    def _url(self) -> str:
        base = (self.host or "").replace("http://", "ws://").replace("https://", "wss://")
        url = f"{base}/v1/console/stream?token={self.token}&batch=true"
        return f"{url}&cursor={self.cursor}" if self.cursor else url

    def _read_forever(self) -> None:
        while True:
            try:
                with connect(self._url(), max_size=None, open_timeout=10) as ws:
                    for raw in ws:
                        msg = orjson.loads(raw)
                        for one in msg["messages"] if msg.get("type") == "batch" else [msg]:
                            self._on_message(one)
                        self.cursor = msg.get("cursor") or self.cursor
            except ConnectionClosed:
                pass  # 4000 / 4008: reconnect with the cursor, as the protocol asks
            except Exception as exc:
                self._fire("WS connect", 0.0, exc)
            gevent.sleep(0.5)

    def _on_message(self, msg: dict[str, Any]) -> None:
        self.cursor = msg.get("cursor") or self.cursor
        if msg.get("type") != "incident":
            return
        committed = msg.get("data", {}).get("committed_at")
        if msg.get("event") == "reported":
            if committed:
                self._fire("SOS->console (from commit)", (time.time() - committed) * 1000, None)
            if msg["incident"]["status"] == "new":
                self.to_ack.append(msg["incident"]["id"])

    def _fire(self, name: str, ms: float, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=ms,
            response_length=0,
            exception=exc,
            context={},
        )

    @task
    def acknowledge(self) -> None:
        while self.to_ack:
            incident = self.to_ack.pop(0)
            with self.client.post(
                f"/v1/console/incidents/{incident}/ack",
                json={},
                headers=self.headers,
                name="console ack",
                catch_response=True,
            ) as r:
                # Another console (or a cancel) got there first: that is not an error.
                if r.status_code in (200, 404, 409):
                    r.success()
