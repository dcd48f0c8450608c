"""deploy/grafana/ansim-pipeline.json: a dashboard Grafana can import, whose every query is valid
PromQL (promtool checks it as a rule) and reads only metrics GET /metrics exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.api.test_alerts import GANGNAM
from tests.test_alert_rules import exposed_metrics, promtool, run_promtool

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "ansim-pipeline.json"


def _queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["panels"]
    queries = []
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        queries += [target["expr"] for target in panel["targets"]]
    return queries


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{n}", "expr": q} for n, q in enumerate(_queries())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.yml").write_text(json.dumps(rules))  # JSON is YAML
    promtool()
    run_promtool("check", "rules", "dashboard.yml", cwd=tmp_path)


async def test_every_metric_the_dashboard_reads_is_exposed(
    client, pool, redis, settings, make_district
) -> None:
    await make_district(*GANGNAM)  # (a gauge by district has a sample only with one)
    used = {m for q in _queries() for m in re.findall(r"\bansim_[a-z_]+", q)}
    exposed = await exposed_metrics(client, pool, redis, settings)
    assert used and used <= exposed, used - exposed
