"""Bad-input campaign: Schemathesis generates requests from our own OpenAPI (valid and invalid)
against a real uvicorn process. No request may get a 5xx; every 4xx has the stable error body."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from app.main import create_app
from tests.e2e.harness import free_port, start_api

ROOT = Path(__file__).resolve().parent.parent
schema = schemathesis.openapi.from_dict(create_app().openapi())
STATS: Counter[str] = Counter()


def cli_json(*args: str) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data: dict[str, str] = json.loads(out.stdout)
    return data


@dataclass
class LiveAPI:
    url: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def live_api(migrated) -> Iterator[LiveAPI]:
    suffix = str(time.time_ns())[-8:]
    tokens = {
        "member": cli_json(
            "members",
            "create",
            "--phone",
            f"+8210{suffix}",
            "--name",
            "Fuzz",
            "--pin",
            "1234",
            "--duress-pin",
            "9999",
        )["token"],
        "dispatcher": cli_json(
            "dispatchers",
            "create",
            "--username",
            f"fz-d-{suffix}",
            "--name",
            "D",
            "--password",
            "pw-fuzz",
            "--city-wide",
        )["token"],
        "volunteer": cli_json(
            "volunteers",
            "create",
            "--username",
            f"fz-v-{suffix}",
            "--name",
            "V",
            "--password",
            "pw-fuzz",
            "--badge-number",
            "SRS-1",
        )["token"],
        "operator": cli_json(
            "operators",
            "create",
            "--username",
            f"fz-o-{suffix}",
            "--name",
            "O",
            "--password",
            "pw-fuzz",
        )["token"],
    }
    port = free_port()
    env = {
        **os.environ,
        "ANSIM_RATE_LIMIT_PER_CREDENTIAL_PER_MIN": "1000000",
        "ANSIM_RATE_LIMIT_PER_IP_PER_MIN": "1000000",
        "ANSIM_RATE_LIMIT_LOGIN_PER_IP_PER_MIN": "1000000",
    }
    api = start_api(port, env)
    try:
        yield LiveAPI(f"http://127.0.0.1:{port}", tokens)
    finally:
        api.stop()
        artifacts = ROOT / "artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "openapi_fuzz.json").write_text(json.dumps(dict(STATS), indent=2))


def token_for(path: str, tokens: dict[str, str]) -> str:
    for prefix, role in (
        ("/v1/console", "dispatcher"),
        ("/v1/volunteers", "volunteer"),
        ("/v1/admin", "operator"),
        ("/v1/auth/logout", "dispatcher"),
    ):
        if path.startswith(prefix):
            return tokens[role]
    return tokens["member"]


@pytest.mark.keep_db
@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("ANSIM_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_no_input_gets_a_5xx_and_every_error_has_the_stable_body(case, live_api):
    headers = {"Authorization": f"Bearer {token_for(case.path, live_api.tokens)}"}
    response = case.call(base_url=live_api.url, headers=headers, timeout=15)
    STATS["requests"] += 1
    STATS[f"{response.status_code // 100}xx"] += 1
    assert response.status_code < 500, case.as_curl_command()
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("detail"), str), body
