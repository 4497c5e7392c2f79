"""Grid sweeps: parameters named as in the table, points simulated on Dask, a rerun resumes."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from plasticity_rl.cli import app
from plasticity_rl.config import ConfigError, as_config
from plasticity_rl.sweep import grid_points, parse_grid, point_config

runner = CliRunner()


def test_the_grid_is_read_from_names_of_the_parameter_table():
    assert parse_grid(["A=1,2,3", "tau_k_hours=12,36"]) == {"A": [1.0, 2.0, 3.0], "tau_k_hours": [12.0, 36.0]}
    for bad, words in (
        (["tau_k=12"], "unknown parameter 'tau_k'"),
        (["A"], "allowed: NAME=V1,V2"),
        (["A=1,x"], "numbers separated by commas"),
        (["A=1", "A=2"], "given twice"),
        ([], "at least one"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_grid(bad)


def test_a_point_sets_a_population_mean_or_a_value_and_the_config_checks_it():
    cfg = as_config("flagship")
    point = point_config(cfg, {"A": 4.5, "kappa": 0.02, "tau_k_hours": 30.0})
    assert point.population.A.mean == 4.5 and point.population.A.sd == cfg.population.A.sd
    assert point.population.kappa == 0.02 and point.plasticity.tau_k_hours == 30.0
    with pytest.raises(ConfigError, match="kappa"):  # the config's own check, before anything runs
        grid_points(cfg, {"kappa": [0.01, 2.0]})


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, tiny_study):
    data, _ = tiny_study
    path = tmp_path_factory.mktemp("sweep") / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_sweep_command_tabulates_every_point_and_a_rerun_resumes(tiny_config, tmp_path):
    out = tmp_path / "sweep"
    argv = ["sweep", str(tiny_config), "--param", "A=0,4", "--workers", "1", "-o", str(out), "--quiet"]
    res = runner.invoke(app, argv)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "sweep.csv")
    arms = list(dict.fromkeys(table["arm"]))
    assert len(table) == 2 * len(arms) and set(table["A"]) == {0.0, 4.0}
    V = table.pivot(index="arm", columns="A", values="V_followup")
    # A larger boost moves the dosed arm's beliefs further in its window; a placebo's not at all
    # (the same seed at both points: the draws are the same)
    assert V.loc["ketamine", 4.0] > V.loc["ketamine", 0.0] + 0.003  # measured: +0.0053
    assert V.loc["placebo", 4.0] == pytest.approx(V.loc["placebo", 0.0], abs=1e-6)
    assert (out / "figures" / "sweep_curves.png").is_file() and (
        out / "figures" / "sweep_curves.svg"
    ).is_file()
    jobs = sorted((out / "jobs").glob("point-*.json"))
    stamps = [p.stat().st_mtime_ns for p in jobs]
    assert len(jobs) == 2

    res = runner.invoke(app, argv)  # the same command: every point is already done
    assert res.exit_code == 0, res.output
    assert [p.stat().st_mtime_ns for p in jobs] == stamps
    res = runner.invoke(app, ["sweep", str(tiny_config), "-p", "A=1", "--workers", "1", "-o", str(out)])
    assert res.exit_code == 2 and "another config or grid" in res.output


def test_a_sweep_with_fit_fits_every_point_and_reports_the_swept_parameter(tiny_config, tmp_path, tiny_study):
    out = tmp_path / "fitted"
    fit = list(tiny_study[1])  # the suite's tiny fit settings (1 chain x 20 + 20): compiled once
    argv = ["sweep", str(tiny_config), "-p", "A=0,4", "--fit", *fit, "--workers", "1", "-o", str(out), "-q"]
    res = runner.invoke(app, argv)
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith("sweep_fits.csv")
    fits = pd.read_csv(out / "sweep_fits.csv")
    assert list(fits["A"]) == [0.0, 4.0] and set(fits["variant"]) == {"schema"}
    # too short to pass, and it says so; the boost is estimated at each point
    assert not fits["fit_passed"].any() and (fits["failures"] > 0).all()
    assert (fits["mu_A_hdi_low"] <= fits["mu_A_mean"]).all() and (
        fits["mu_A_mean"] <= fits["mu_A_hdi_high"]
    ).all()
    assert (out / "sweep.csv").is_file()  # the simulations' table as without --fit
