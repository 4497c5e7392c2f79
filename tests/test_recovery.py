"""Recovery and SBC as a user runs them: real simulate-then-fit jobs on a dask LocalCluster."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from plasticity_rl.cli import app
from plasticity_rl.config import config_from_dict
from plasticity_rl.recovery import sbc_job


@pytest.fixture
def tiny_config(tmp_path, tiny_study):
    """The shared tiny study (conftest.py) as a config file: (path, dict)."""
    data, _ = tiny_study
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, data


@pytest.fixture
def tiny_fit(tiny_study):
    return list(tiny_study[1])


def test_two_fit_recovery_on_a_local_cluster_completes_and_a_rerun_skips_both(
    tmp_path, tiny_config, tiny_fit
):
    cfg, _ = tiny_config
    out = tmp_path / "rec"
    argv = ["recover", str(cfg), "--datasets", "2", "--workers", "2", "--out", str(out), "--quiet", *tiny_fit]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    jobs = sorted((out / "jobs").glob("recover-*.json"))
    assert [p.name for p in jobs] == ["recover-000.json", "recover-001.json"]
    summary = (out / "recovery_summary.csv").read_text()
    for name in ("logit_alpha0", "A", "logit_S0", "mu_A", "kappa", "tau_k_hours"):
        assert name in summary
    assert (out / "figures" / "recovery_patient.png").is_file()
    stamps = [p.stat().st_mtime_ns for p in jobs]

    res = CliRunner().invoke(app, argv)  # a rerun finds both fits done and fits nothing
    assert res.exit_code == 0, res.output
    assert [p.stat().st_mtime_ns for p in jobs] == stamps


def test_sbc_command_writes_ranks_uniformity_and_says_which_fits_failed(tmp_path, tiny_config, tiny_fit):
    import pandas as pd

    cfg, _ = tiny_config
    out = tmp_path / "sbc"
    argv = ["sbc", str(cfg), "--reps", "2", "--workers", "2", "--out", str(out), "--quiet", *tiny_fit]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    ranks = pd.read_csv(out / "sbc_ranks.csv")
    assert set(ranks["replicate"]) == {"sbc-0000", "sbc-0001"}
    assert not ranks["diagnostics_passed"].any()  # 1 chain x 20 draws: every fit fails, and says so
    uniformity = pd.read_csv(out / "sbc_uniformity.csv")
    assert (uniformity["failed_diagnostics"] == 2).all()
    assert (out / "figures" / "sbc_ranks.png").is_file() and (out / "figures" / "sbc_ecdf.png").is_file()


def test_sbc_job_ranks_every_group_parameter_drawn_from_the_prior(tiny_config):
    _, data = tiny_config
    cfg = config_from_dict(data).model_dump(mode="json")
    res = sbc_job(cfg, seed=3, fit={"method": "nuts", "chains": 1, "warmup": 20, "draws": 20}, thin_to=19)
    expected = {
        "mu_logit_alpha0",
        "mu_A",
        "mu_logit_S0",
        "tau_A",
        "kappa",
        "epsilon",
        "omega",
        "phi",
        "sigma_baseline",
        "sigma_treated",
        "tau_k_hours",
    }
    assert expected <= set(res["ranks"])
    ranks = np.array(list(res["ranks"].values()))
    assert ranks.min() >= 0 and ranks.max() <= 19 and res["n_draws"] == 19
    # 1 chain x 20 draws cannot pass the ESS thresholds: the replicate says so, and is kept
    assert res["diagnostics_passed"] is False and res["diagnostics_failures"]


def test_coverage_of_a_true_value_on_its_supports_bound_is_undefined_not_zero():
    import pandas as pd

    from plasticity_rl.recovery import summarise_recovery

    rows = []
    for k in range(4):  # omega = 1 (flagship) can never be inside a central interval; kappa can
        rows.append(
            {
                "level": "group",
                "parameter": "omega",
                "patient": -1,
                "true": 1.0,
                "mean": 0.93,
                "low": 0.85,
                "high": 0.99,
            }
        )
        rows.append(
            {
                "level": "group",
                "parameter": "kappa",
                "patient": -1,
                "true": 0.3,
                "mean": 0.31,
                "low": 0.2,
                "high": 0.4,
            }
        )
        # a truth fixed in the config but derived with round-off (spread ~1e-17): no correlation
        rows.append(
            {
                "level": "group",
                "parameter": "epsilon",
                "patient": -1,
                "true": 0.05 + k * 1e-17,
                "mean": 0.05 + 0.01 * k,
                "low": 0.0,
                "high": 0.1,
            }
        )
    summary = summarise_recovery(pd.DataFrame(rows)).set_index("parameter")
    assert np.isnan(summary.loc["omega", "coverage_90"])
    assert "bound" in summary.loc["omega", "note"]
    assert abs(summary.loc["omega", "bias"] - (-0.07)) < 1e-9
    assert summary.loc["kappa", "coverage_90"] == 1.0 and summary.loc["kappa", "note"] == ""
    assert np.isnan(summary.loc["epsilon", "r"]) and np.isnan(summary.loc["kappa", "r"])


def test_sbc_simulates_prior_draws_beyond_the_bounds_a_user_config_accepts(tiny_config):
    """SBC must simulate from the fit's prior as it is: a draw of sigma_treated above the config's
    30-point bound (LogNormal(log 10, 0.5): ~1 % of draws) once stopped a whole study."""
    from plasticity_rl.recovery import simulation_config
    from plasticity_rl.simulate import simulate

    _, data = tiny_config
    base = config_from_dict(data)
    truth = {"tau_k_hours": 20.0, "phi": 12.0, "sigma_baseline": 6.0, "sigma_treated": 37.6}
    cfg = simulation_config(base, truth)
    assert cfg.plasticity.tau_k_hours == 20.0 and cfg.observations.ema.phi == 12.0
    assert (
        cfg.observations.visits.noise_sd_treated == 37.6 and base.observations.visits.noise_sd_treated == 10.0
    )
    sim = simulate(cfg)  # the simulator takes the drawn kernel: its window peaks 40 h after the dose
    g = np.asarray(sim.inputs.g_k)[int(np.argmax(np.asarray(sim.inputs.g_k).max(axis=1)))]
    dose_h = float(sim.schedules.dose_hours.max())
    assert float(sim.schedules.t_hours[int(np.argmax(g))]) - dose_h == pytest.approx(40.0, abs=3.0)


def test_expected_r_matches_the_correlation_an_exact_posterior_reaches():
    """Normal-normal model: theta ~ N(0, 1), y ~ N(theta, s^2); the exact posterior is
    N(y / (1 + s^2), s^2 / (1 + s^2)). The posterior means' correlation with theta must match
    expected_r computed from the posterior SDs alone, for an informative and an uninformative design."""
    from plasticity_rl.recovery import expected_r

    rng = np.random.default_rng(0)
    theta = rng.normal(size=20_000)
    for s in (0.3, 2.0):
        y = theta + s * rng.normal(size=theta.size)
        post_mean, post_sd = y / (1 + s**2), np.full(theta.size, np.sqrt(s**2 / (1 + s**2)))
        observed = np.corrcoef(theta, post_mean)[0, 1]
        assert abs(expected_r(theta, post_sd) - observed) < 0.01, (s, observed)
    assert np.isnan(expected_r(np.ones(5), np.full(5, 0.1)))  # no spread in the truth: undefined
