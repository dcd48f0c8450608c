"""`ansim places import` / `ansim districts import` through the typer apps the CLI mounts."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from app.geo.cli import districts_app, places_app
from tests.conftest import SEOUL, needs_seoul_data

# The CLI reaches the test database itself: ask for it, so that it is migrated and emptied.
pytestmark = [needs_seoul_data, pytest.mark.usefixtures("migrated")]

ansim = typer.Typer()
ansim.add_typer(places_app, name="places")
ansim.add_typer(districts_app, name="districts")
runner = CliRunner()


def test_places_import_guesses_the_preset_and_prints_a_json_summary():
    file = SEOUL / "seoul_police_stations_jigudae_pachulso_2020.csv"
    first = runner.invoke(ansim, ["places", "import", str(file), "--json"])
    assert first.exit_code == 0, first.output
    body = json.loads(first.stdout)
    assert (body["source"], body["inserted"], body["skipped"]) == ("seoul-police-2020", 274, [])
    again = runner.invoke(ansim, ["places", "import", str(file), "--json"])
    assert json.loads(again.stdout)["unchanged"] == 274


def test_places_import_with_a_mapping_reports_skipped_rows(tmp_path):
    file = tmp_path / "stores.csv"
    file.write_text("상호,위도,경도\n가게,37.5,127.0\n나쁜,abc,127.0\n", encoding="utf-8-sig")
    args = ["places", "import", str(file), "--map", "name=상호", "--map", "lat=위도"]
    args += ["--map", "lon=경도", "--kind", "convenience_store", "--source", "stores"]
    result = runner.invoke(ansim, args)
    assert result.exit_code == 0, result.output
    assert "inserted 1" in result.stdout
    assert "skipped row 3: latitude 'abc' is not a number" in result.stderr


def test_places_import_fails_clearly_on_an_unknown_layout(tmp_path):
    file = tmp_path / "what.csv"
    file.write_text("a,b\n1,2\n")
    result = runner.invoke(ansim, ["places", "import", str(file), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == "ImportFailed"
    bad_kind = runner.invoke(ansim, ["places", "import", str(file), "--kind", "spaceship"])
    assert bad_kind.exit_code == 2 and "unknown" in bad_kind.stderr


def test_districts_import_guesses_the_preset_and_reports_repairs():
    file = SEOUL / "seoul_gu_boundaries_juso2015.geojson"
    result = runner.invoke(ansim, ["districts", "import", str(file)])
    assert result.exit_code == 0, result.output
    assert "inserted 25" in result.stdout
    assert "repaired row 11" in result.stdout
    kostat = SEOUL / "seoul_gu_boundaries_kostat2013_simplified.geojson"
    result = runner.invoke(ansim, ["districts", "import", str(kostat), "--json", "--dry-run"])
    body = json.loads(result.stdout)
    assert (body["updated"], body["dry_run"]) == (25, True)
