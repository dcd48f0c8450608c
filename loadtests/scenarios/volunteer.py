"""An escort volunteer on duty: goes on duty near a point, then reports her position."""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from loadtests.scenarios.common import point, take


class VolunteerUser(FastHttpUser):
    weight = 2
    wait_time = between(3, 6)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {take('volunteer_tokens')}"}
        self.lat, self.lon = point()
        self.client.post(
            "/v1/volunteers/duty",
            json={"on_duty": True, "lat": self.lat, "lon": self.lon},
            headers=self.headers,
            name="volunteer duty",
        )

    def on_stop(self) -> None:
        self.client.post(
            "/v1/volunteers/duty",
            json={"on_duty": False},
            headers=self.headers,
            name="volunteer duty",
        )

    @task(5)
    def position(self) -> None:
        self.lat += random.uniform(-0.0005, 0.0005)
        self.lon += random.uniform(-0.0005, 0.0005)
        self.client.post(
            "/v1/volunteers/location",
            json={"lat": self.lat, "lon": self.lon, "accuracy_m": 15.0},
            headers=self.headers,
            name="volunteer position",
        )

    @task(1)
    def offers(self) -> None:
        self.client.get("/v1/volunteers/offers", headers=self.headers, name="volunteer offers")
