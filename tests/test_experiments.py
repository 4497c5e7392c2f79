"""Each claim script runs end to end with tiny settings and writes its figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
PATIENTS = 4  # as tests/conftest.py and tests/test_plots.py: same array shapes, JAX compiles once per config

CASES = {
    "claim_rapid_onset_waning": ["rapid_onset_waning_V", "rapid_onset_waning_clinician"],
    "claim_repeated_doses": [
        "six_infusions_alpha",
        "six_infusions_beliefs",
        "six_infusions_clinician",
        "boosters_alpha",
        "boosters_beliefs",
        "boosters_clinician",
    ],
    "claim_therapy_in_window": ["therapy_in_window_beliefs", "therapy_in_window_alpha"],
    "claim_timing_curve": ["timing_curve"],
}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(CASES))
def test_claim_script_writes_its_figures(script, tmp_path, capsys):
    module = load_script(script)
    args = module.parse_args(["--patients", str(PATIENTS), "--out", str(tmp_path), "--formats", "png"])
    paths = module.main(args)
    for stem in CASES[script]:
        png = tmp_path / f"{stem}.png"
        assert png.is_file() and png.stat().st_size > 5000, png
        assert (tmp_path / f"{stem}.txt").read_text().strip(), "caption missing"
        assert png in paths
    assert list(tmp_path.glob("*_summary.txt"))
    assert capsys.readouterr().out.strip()


def test_every_script_is_tested():
    scripts = {p.stem for p in EXPERIMENTS.glob("claim_*.py")}
    assert scripts == set(CASES)
