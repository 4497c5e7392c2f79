"""The shipped worked example: its tables are what its script makes, and they fit as the guide says."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from plasticity_rl.cli import app

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_trial"


def test_the_example_tables_are_what_make_example_writes(tmp_path):
    copy = tmp_path / "own_trial"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("data", "fit-*"))
    subprocess.run([sys.executable, str(copy / "make_example.py")], check=True, capture_output=True)
    for shipped in sorted((EXAMPLE / "data").glob("*.csv")):
        pd.testing.assert_frame_equal(pd.read_csv(copy / "data" / shipped.name), pd.read_csv(shipped))


def test_the_example_fits_as_its_guide_says(tmp_path):
    guide = (EXAMPLE / "README.md").read_text()
    command = guide.split("```bash\n")[1].split("```")[0].replace("\\\n", " ")
    args = shlex.split(command)[1:]  # drop "plasticity-rl"
    assert args[0] == "fit"
    root = EXAMPLE.parents[1]
    args = [str(root / a) if a.startswith("examples/") else a for a in args]
    folder = tmp_path / "fit"
    res = CliRunner().invoke(app, [*args, "--method", "svi", "-o", str(folder)])
    assert res.exit_code == 0, res.output
    assert "used 12 patients" in res.output and "likelihood: marginal" in res.output
    used = json.loads((folder / "diagnostics.json").read_text())["data_used"]
    assert used["patients"] == 12 and used["sessions"]["missed"] > 0 and used["ema_ratings"]["missing"] > 0
