"""The `segloop` console command: subcommands go to the engine CLI, anything else to the GUI."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from desktop_app import launcher

ROOT = Path(__file__).resolve().parent.parent
SCAN = ROOT / "tests" / "data" / "hippocampus" / "imagesTr" / "hippocampus_001.nii.gz"


def test_console_script_points_at_the_launcher() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["segloop"] == "desktop_app.launcher:main"


def test_subcommand_runs_headless(capsys: pytest.CaptureFixture[str]) -> None:
    assert launcher.main(["info", str(SCAN), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"shape_kji"' in out and "51" in out


def test_bad_file_gives_exit_code_2_and_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "empty.nii.gz"
    bad.write_bytes(b"")
    assert launcher.main(["info", str(bad)]) == 2
    assert "empty.nii.gz" in capsys.readouterr().err


def test_scan_argument_goes_to_the_gui(monkeypatch: pytest.MonkeyPatch) -> None:
    import desktop_app.app as app

    calls: list[tuple] = []
    monkeypatch.setattr(app, "run_gui", lambda scan, mask, model: calls.append((scan, mask, model)) or 0)
    assert launcher.main([str(SCAN), "--model", "default"]) == 0
    assert calls == [(str(SCAN), None, "default")]
