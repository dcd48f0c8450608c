"""Start-up refuses a production configuration that would lose messages or use placeholders."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import PLACEHOLDER, Settings
from app.dispatch.gateways import LogGateway, build_gateways

PRODUCTION = {
    "environment": "production",
    "secret_key": "s3cret-key-of-production",
    "gateway_hmac_key": "hmac-key-of-production",
    "push_gateway_url": "https://push.example/send",
    "sms_gateway_url": "https://sms.example/send",
}


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_a_complete_production_configuration_starts():
    assert _settings(**PRODUCTION).environment == "production"


@pytest.mark.parametrize(
    ("missing", "value", "named"),
    [
        ("secret_key", PLACEHOLDER, "ANSIM_SECRET_KEY"),
        ("gateway_hmac_key", PLACEHOLDER, "ANSIM_GATEWAY_HMAC_KEY"),
        ("push_gateway_url", "", "ANSIM_PUSH_GATEWAY_URL"),
        ("sms_gateway_url", "", "ANSIM_SMS_GATEWAY_URL"),
    ],
)
def test_production_refuses_placeholders_and_missing_gateways(missing, value, named):
    with pytest.raises(ValidationError, match=named):
        _settings(**{**PRODUCTION, missing: value})


@pytest.mark.parametrize("environment", ["development", "test"])
def test_development_and_test_log_messages_without_a_gateway(environment):
    s = _settings(environment=environment)
    assert s.secret_key == PLACEHOLDER and s.push_gateway_url == ""
    gateways = build_gateways(s, http=None)  # type: ignore[arg-type]
    assert all(isinstance(g, LogGateway) for g in gateways.values())


def test_the_default_deadline_outlasts_a_ten_minute_outage():
    assert _settings().notify_deadline_s >= 3 * 600


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"stream_retention_s": 30 * 24 * 3600}, "ANSIM_STREAM_RETENTION_S"),
        ({"console_retention_s": 31 * 24 * 3600}, "ANSIM_CONSOLE_RETENTION_S"),
        ({"dead_letter_retention_s": 30 * 24 * 3600}, "ANSIM_DEAD_LETTER_RETENTION_S"),
        # A console replays from its cursor at least once a lifetime.
        ({"console_retention_s": 600, "console_max_lifetime_s": 3600}, "CONSOLE_MAX_LIFETIME"),
    ],
)
def test_redis_keeps_her_position_for_less_than_the_trail(values, named):
    with pytest.raises(ValidationError, match=named):
        _settings(**values)
    defaults = _settings()
    assert max(defaults.stream_retention_s, defaults.console_retention_s) <= 24 * 3600


@pytest.mark.parametrize(
    "url",
    [
        "tiles.example/{z}/{x}/{y}.png",  # no scheme
        "ftp://tiles.example/{z}/{x}/{y}.png",
        "https://tiles.example/{z}/{x}.png",  # no {y}
        "javascript:alert(1)//{z}{x}{y}",
    ],
)
def test_a_tile_url_must_be_an_http_template_with_z_x_and_y(url: str) -> None:
    with pytest.raises(ValidationError, match="ANSIM_MAP_TILE_URL"):
        Settings(map_tile_url=url)


def test_no_tile_url_by_default_and_a_template_is_kept() -> None:
    assert Settings().map_tile_url == ""
    url = "https://{s}.tiles.example/{z}/{x}/{y}.png"
    assert Settings(map_tile_url=f" {url} ").map_tile_url == url


@pytest.mark.parametrize("url", ["http://consoles.example/v1/console/stream", "consoles:8001"])
def test_the_console_stream_url_must_be_a_websocket_url(url: str) -> None:
    with pytest.raises(ValidationError, match="ANSIM_CONSOLE_STREAM_URL"):
        Settings(console_stream_url=url)


def test_the_console_page_uses_its_own_origin_unless_told_where_the_consoles_are() -> None:
    assert Settings().console_stream_url == ""
    url = "wss://consoles.example/v1/console/stream"
    assert Settings(console_stream_url=f" {url} ").console_stream_url == url
