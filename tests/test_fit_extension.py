"""A NUTS fit whose draws fail R-hat or ESS keeps sampling, up to a stated budget, and says so."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from plasticity_rl.config import config_from_dict
from plasticity_rl.inference import fit
from plasticity_rl.simulate import simulate

fit_module = importlib.import_module("plasticity_rl.inference.fit")  # the module, not the function


@pytest.fixture(scope="module")
def tiny_sim(tiny_study):
    data, _ = tiny_study
    return simulate(config_from_dict(data))


def _chains(n_chains: int, n_draws: int, spread: float, seed: int = 0) -> dict:
    """Well-mixed draws of two group parameters (chains shifted apart by ``spread``) and a patient one."""
    rng = np.random.default_rng(seed)
    shift = spread * np.arange(n_chains)[:, None]
    return {
        "kappa": rng.normal(size=(n_chains, n_draws)) + shift,
        "mu_A": rng.normal(size=(n_chains, n_draws)),
        "z_A": rng.normal(size=(n_chains, n_draws, 5)),  # per patient: never gates
    }


def test_the_policy_extends_only_what_more_draws_can_fix():
    calm = {"diverging": np.zeros((4, 1000), bool)}
    info: dict = {}
    assert fit_module._needs_more_draws(4, 1000, info)(_chains(4, 1000, 0.0), calm) is False
    assert info == {
        "extension": "after 1000 draws per chain: R-hat and ESS pass on all of them",
        "discarded_draws": 0,
    }

    info = {}
    needs_more = fit_module._needs_more_draws(4, 1000, info)
    assert needs_more(_chains(4, 1000, 1.0), calm) is True  # chains apart: R-hat fails
    assert info["extension"].startswith("after 1000 draws per chain: R-hat") and "kappa" in info["extension"]
    assert "mu_A" not in info["extension"] and "z_A" not in info["extension"]

    # A chain still settling: its first round is off, the second is not. All 2000 draws still
    # fail; the last 1000 pass, and the first 1000 count as warm-up.
    settling = _chains(4, 2000, 0.0, seed=1)
    settling["kappa"][2, :1000] += 1.5
    assert needs_more(settling, {"diverging": np.zeros((4, 2000), bool)}) is False
    assert info["discarded_draws"] == 1000
    assert info["extension"].endswith("R-hat and ESS pass on the last 1000 (the first 1000 count as warm-up)")

    diverged = {"diverging": np.zeros((4, 1000), bool)}
    diverged["diverging"][2, 10] = True  # more draws do not cure divergences
    info = {}
    assert fit_module._needs_more_draws(4, 1000, info)(_chains(4, 1000, 1.0), diverged) is False
    assert info["extension"] == "after 1000 draws per chain: divergent transitions, not extended"

    # one chain: R-hat cannot be computed at any length; only a too-small ESS extends
    one = {"diverging": np.zeros((1, 1000), bool)}
    assert fit_module._needs_more_draws(1, 1000, {})(_chains(1, 1000, 0.0), one) is False
    assert fit_module._needs_more_draws(1, 50, {})(_chains(1, 50, 0.0), one) is True


@pytest.mark.parametrize("chains", [1, 2])  # 1: NumPyro's MCMC continued; 2: the package's parallel chains
def test_an_extended_fit_continues_its_chains_and_keeps_every_draw(tiny_sim, chains, monkeypatch):
    plain = fit(tiny_sim, chains=chains, warmup=20, draws=20, seed=3)
    assert plain.posterior.sizes["draw"] == 20 and "extension" not in plain.posterior.attrs
    assert plain.posterior.attrs["extra_draws"] == 0

    def always(n_chains, round_draws, info):  # a fit that never passes: the budget decides
        def needs_more(samples, stats):
            info["extension"] = f"forced after {next(iter(samples.values())).shape[1]} draws"
            return True

        return needs_more

    monkeypatch.setattr(fit_module, "_needs_more_draws", always)
    idata = fit(tiny_sim, chains=chains, warmup=20, draws=20, seed=3, extend_draws=40)
    attrs = idata.posterior.attrs
    assert idata.posterior.sizes["draw"] == 60 == attrs["draws"]  # two more rounds of 20
    assert attrs["draws_requested"] == 20 and attrs["extend_draws"] == 40 and attrs["extra_draws"] == 40
    assert attrs["extension"] == "forced after 60 draws"  # asked after the last round too
    assert idata.sample_stats.sizes["draw"] == 60 and idata.log_likelihood.sizes["draw"] == 60
    # the first 20 draws are the plain fit's own: the chains were continued, not restarted
    np.testing.assert_array_equal(idata.posterior["kappa"].values[:, :20], plain.posterior["kappa"].values)
    assert not np.array_equal(idata.posterior["kappa"].values[:, 20:40], plain.posterior["kappa"].values)


def test_a_negative_budget_is_refused(tiny_sim):
    with pytest.raises(ValueError, match="extend_draws must be a whole number >= 0, got -1"):
        fit(tiny_sim, chains=1, warmup=20, draws=20, extend_draws=-1)
