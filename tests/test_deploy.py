"""The image and the compose deployment, checked without docker (scripts/image-smoke.sh builds
and runs the image): the Dockerfile builds every stage from the BASE_IMAGE argument and runs
`ansim` as a user; compose.yaml's services run commands the CLI has, with options it takes, set
only settings that exist (enough of them to start in production), and mount files that exist;
deploy/prometheus/prometheus.yml passes promtool."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.core
import yaml

from app.cli import cli
from app.config import Settings
from tests.test_alert_rules import run_promtool

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments left out."""
    lines = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.startswith("#")
    ]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def cli_refuses(args: list[str]) -> str | None:
    """Why `ansim ARGS` would not parse (None: it does), through the CLI's own parser."""
    command = typer.main.get_command(cli)
    rest = list(args)
    path = ["ansim"]
    while isinstance(command, typer.core.TyperGroup):
        if not rest:
            return f"`{' '.join(path)}` needs a subcommand"
        name, rest = rest[0], rest[1:]
        sub = command.get_command(typer.Context(command), name)
        if sub is None:
            return f"`{' '.join(path)}` has no command {name!r}"
        command, path = sub, [*path, name]
    try:
        command.make_context(" ".join(path), rest)
    except typer.TyperException as exc:
        return f"`{' '.join(path)}`: {exc.format_message()}"
    return None


def test_the_cli_parser_check_can_refuse() -> None:
    assert cli_refuses(["serve", "--port", "8000"]) is None
    assert cli_refuses(["db", "upgrade"]) is None
    assert cli_refuses(["receive"]) is not None
    assert cli_refuses(["serve", "--listen", "0.0.0.0"]) is not None
    assert cli_refuses(["db"]) is not None


def test_every_stage_builds_from_the_base_image_argument() -> None:
    """A machine without a registry builds from a base it made (debootstrap + docker import)."""
    steps = dockerfile()
    first_from = next(i for i, (word, _) in enumerate(steps) if word == "FROM")
    args = [rest.split("=")[0] for word, rest in steps[:first_from] if word == "ARG"]
    assert "BASE_IMAGE" in args
    froms = [rest.split()[0] for word, rest in steps if word == "FROM"]
    assert froms and all(base == "${BASE_IMAGE}" for base in froms), froms


def test_the_image_runs_ansim_as_a_user_and_serves_by_default() -> None:
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    final = dict(steps[last_from:])
    assert final["USER"] not in ("root", "0", "")
    assert json.loads(final["ENTRYPOINT"]) == ["ansim"]
    cmd = json.loads(final["CMD"])
    assert cmd[0] == "serve" and cli_refuses(cmd) is None


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def ansim_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if str(service.get("image", "")).startswith("${ANSIM_IMAGE")
    }


def test_compose_services_run_commands_the_cli_has() -> None:
    services = ansim_services()
    for name, service in services.items():
        assert cli_refuses(service["command"]) is None, (name, cli_refuses(service["command"]))
    commands = {" ".join(s["command"][:2] if s["command"][0] == "db" else s["command"][:1])
                for s in services.values()}  # fmt: skip
    assert {"db upgrade", "serve", "dispatcher"} <= commands


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} and ${VAR:?message}, with a stand-in for what must be set."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{[A-Z_]+:\?[^}]*\}", "set-by-the-deployment", value)


def test_compose_sets_only_settings_that_exist_and_enough_for_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    known = {"DATABASE_URL", "REDIS_URL"} | {f"ANSIM_{f.upper()}" for f in Settings.model_fields}
    for name, service in ansim_services().items():
        env = service["environment"]
        unknown = set(env) - known
        assert not unknown, (name, unknown)
        for key in list(Settings.model_fields):
            monkeypatch.delenv(f"ANSIM_{key.upper()}", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, interpolate(str(value)))
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.environment == "production"
        assert settings.metrics_token, "production refuses scrapes without ANSIM_METRICS_TOKEN"
        assert settings.database_url.endswith("@postgres:5432/ansim")


def test_compose_mounts_files_that_exist_and_prometheus_reads_them() -> None:
    spec = compose()
    mounts: dict[str, Path] = {}
    for name, service in spec["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (ROOT / source).is_file(), (name, source)
                mounts[target] = ROOT / source
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS / "prometheus.yml"
    for rule_file in config["rule_files"]:
        assert rule_file in mounts, rule_file
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["ansim-api"]
    assert api["dns_sd_configs"][0]["names"] == ["api"] and "api" in spec["services"]
    secret = api["authorization"]["credentials_file"]
    assert secret.removeprefix("/run/secrets/") in spec["services"]["prometheus"]["secrets"]


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    text = (PROMETHEUS / "prometheus.yml").read_text()
    text = text.replace("/etc/prometheus/alerts.yml", str(PROMETHEUS / "alerts.yml"))
    text = text.replace("/run/secrets/ansim_metrics_token", str(token))
    (tmp_path / "prometheus.yml").write_text(text)
    run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
