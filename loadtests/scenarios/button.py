"""A store's panic button (docs/devices.md): HMAC-signed heartbeats, and now and then a panic
retried with the same signal_id. Active only when the service has the devices API."""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import time
import uuid
from collections.abc import Mapping

import orjson
from locust import FastHttpUser, between, task

from loadtests.scenarios.common import take


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    nonce = secrets.token_urlsafe(24)
    sig = hmac.new(secret.encode(), f"{ts}.{nonce}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Ansim-Timestamp": ts,
        "X-Ansim-Nonce": nonce,
        "X-Ansim-Signature": sig,
    }


class ButtonUser(FastHttpUser):
    weight = 2
    wait_time = between(5, 15)
    #: Switched on by the locustfile when /openapi.json lists the devices endpoint.
    enabled = False

    def on_start(self) -> None:
        device = take("devices")
        self.device_id, self.secret = device["id"], device["secret"]
        self.path = f"/v1/devices/{self.device_id}/signals"

    def _send(self, body: Mapping[str, object], name: str) -> None:
        raw = orjson.dumps(body)
        # A retry is a new request: new timestamp, nonce and signature, same body.
        # FastHttpSession sends bytes as they are (its annotation says str or dict): the signature
        # is over these exact bytes.
        self.client.post(self.path, data=raw, headers=signed_headers(self.secret, raw), name=name)  # type: ignore[arg-type]

    @task(20)
    def heartbeat(self) -> None:
        self._send(
            {"type": "heartbeat", "battery_pct": random.randint(40, 100)}, "button heartbeat"
        )

    @task(1)
    def panic(self) -> None:
        body = {"type": "panic", "signal_id": str(uuid.uuid4())}
        self._send(body, "button panic")
        if random.random() < 0.3:
            self._send(body, "button panic retry (same signal_id)")
