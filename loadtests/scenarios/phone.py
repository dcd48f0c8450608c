"""A woman's phone: SOS (sometimes retried with the same id), a live trail, her own view, and
often a cancel with her PIN (most alerts are false alarms or resolved by themselves)."""

from __future__ import annotations

import random
import uuid

from locust import FastHttpUser, between, task

from loadtests.scenarios.common import creds, point, take


class PhoneUser(FastHttpUser):
    weight = 10
    wait_time = between(2, 8)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {take('member_tokens')}"}
        self.pin = creds().get("member_pin", "1234")

    @task
    def sos_with_trail(self) -> None:
        lat, lon = point()
        body = {
            "client_alert_id": str(uuid.uuid4()),
            "trigger": random.choice(["button", "button", "shake", "wearable"]),
            "silent": random.random() < 0.3,
            "location": {"lat": lat, "lon": lon, "accuracy_m": random.uniform(5, 60)},
            "battery_pct": random.randint(5, 100),
        }
        with self.client.post(
            "/v1/alerts", json=body, headers=self.headers, name="SOS", catch_response=True
        ) as r:
            # 200: her earlier alert is still open and this report was folded into it.
            if r.status_code not in (200, 201):
                r.failure(f"SOS answered {r.status_code}")
                return
            incident = r.json()["incident_id"]
        if random.random() < 0.1:  # a flaky network: the app retries with the same id
            self.client.post(
                "/v1/alerts", json=body, headers=self.headers, name="SOS retry (same id)"
            )
        for _ in range(random.randint(1, 5)):
            lat += random.uniform(-0.0003, 0.0003)
            lon += random.uniform(-0.0003, 0.0003)
            self.client.post(
                f"/v1/alerts/{incident}/locations",
                json={"points": [{"lat": lat, "lon": lon, "accuracy_m": 10.0}]},
                headers=self.headers,
                name="trail",
            )
        self.client.get(f"/v1/alerts/{incident}", headers=self.headers, name="her view")
        if random.random() < 0.6:
            self.client.post(
                f"/v1/alerts/{incident}/cancel",
                json={"pin": self.pin},
                headers=self.headers,
                name="cancel",
            )
