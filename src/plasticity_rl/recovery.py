"""Trust before use: parameter recovery and simulation-based calibration (SBC).

Both are many independent simulate-then-fit jobs, run by :mod:`plasticity_rl.batch` on
dask.distributed with results streamed to disk (a rerun skips finished jobs).

- Recovery: K data sets simulated from the config's population; each fit's posterior is
  compared with the parameters that generated the data (correlation, bias, 90% coverage).
- SBC (Talts et al. 2018): each replicate draws every group parameter and every patient from the
  fit's own prior, simulates, fits, and records the rank of the true value among L posterior
  draws; if the fit is calibrated, ranks are uniform on 0..L.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plasticity_rl.batch import Job, run_jobs
from plasticity_rl.config import Config, config_from_dict
from plasticity_rl.inference.fit import FitSettings
from plasticity_rl.trust import expected_r, recovery_r, summarise_recovery  # noqa: F401 (re-exported)


def _fit_kwargs(fit: FitSettings) -> dict:
    """Settings for one job's fit; each job seeds its own fit."""
    return dict(
        method=fit.method,
        chains=fit.chains,
        warmup=fit.warmup,
        draws=fit.draws,
        target_accept=fit.target_accept,
    )


def _with_seed(cfg_dict: dict, seed: int) -> Config:
    data = json.loads(json.dumps(cfg_dict))
    data["experiment"]["seed"] = int(seed)
    return config_from_dict(data)


def _interval(x: np.ndarray, prob: float = 0.90) -> tuple[float, float]:
    lo, hi = np.quantile(x, [(1 - prob) / 2, (1 + prob) / 2])
    return float(lo), float(hi)


def group_truth(cfg: Config, variant: str) -> dict[str, float]:
    """Generating values of the group parameters a fit of ``variant`` estimates."""
    from plasticity_rl.models import get_model

    model, pop = get_model(variant), cfg.population
    out = {}
    for name in model.patient_params:
        out[f"mu_{name}"] = getattr(pop, name).mean
        out[f"tau_{name}"] = getattr(pop, name).sd
    for name in model.group_params:
        out[name] = float(getattr(pop, name))
    for name in window_spec(cfg).params:
        out[name] = float(getattr(cfg.plasticity, name))
    if cfg.observations.ema.enabled:
        out["phi"] = cfg.observations.ema.phi
    if cfg.observations.visits.enabled:
        out["sigma_baseline"] = cfg.observations.visits.noise_sd_baseline
        out["sigma_treated"] = cfg.observations.visits.noise_sd_treated
    return out


def window_spec(cfg: Config):
    """The fit's window (inference.model.WindowSpec): fitted whenever some arm is dosed."""
    from plasticity_rl.inference.model import WindowSpec
    from plasticity_rl.schedule import build_schedules

    return WindowSpec.from_config(cfg, fitted=bool((build_schedules(cfg).dose_amounts > 0).any()))


def recovery_job(cfg: dict, seed: int, fit: dict) -> dict:
    """Simulate one data set (config with ``seed``), fit it, compare with the truth."""
    from plasticity_rl.inference import diagnose
    from plasticity_rl.inference import fit as fit_model
    from plasticity_rl.simulate import simulate

    t0 = time.perf_counter()
    config = _with_seed(cfg, seed)
    sim = simulate(config)
    idata = fit_model(sim, seed=seed, **fit)
    post = idata.posterior
    rows = []
    for name, true in group_truth(config, config.model.variant).items():
        if name in post:
            x = np.asarray(post[name]).reshape(-1)
            rows.append(
                {
                    "level": "group",
                    "parameter": name,
                    "patient": -1,
                    "true": true,
                    "mean": float(x.mean()),
                    "low": _interval(x)[0],
                    "high": _interval(x)[1],
                }
            )
    for name in sim.model.patient_params:
        draws = np.asarray(post[name]).reshape(-1, sim.n_patients)
        for i in range(sim.n_patients):
            lo, hi = _interval(draws[:, i])
            rows.append(
                {
                    "level": "patient",
                    "parameter": name,
                    "patient": i,
                    "true": float(sim.params[name][i]),
                    "mean": float(draws[:, i].mean()),
                    "sd": float(draws[:, i].std()),
                    "low": lo,
                    "high": hi,
                }
            )
    diag = diagnose(idata)
    return {
        "seed": seed,
        "rows": rows,
        "diagnostics_passed": bool(diag.passed),
        "diagnostics_failures": diag.failures,
        "seconds": time.perf_counter() - t0,
    }


def recovery_seed(cfg: Config, k: int) -> int:
    """The seed of a recovery study's data set ``k`` (job ``recover-{k:03d}``): simulation and fit."""
    return cfg.experiment.seed + 1000 * (k + 1)


def recover(
    cfg: Config,
    n_datasets: int,
    out: Path,
    fit: FitSettings = FitSettings(),
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
):
    """Run (or resume) a recovery study; returns (per-estimate table, summary table)."""
    cfg_dict = cfg.model_dump(mode="json")
    jobs = [
        Job(
            f"recover-{k:03d}",
            recovery_job,
            {"cfg": cfg_dict, "seed": recovery_seed(cfg, k), "fit": _fit_kwargs(fit)},
        )
        for k in range(n_datasets)
    ]
    results = run_jobs(
        jobs,
        Path(out) / "jobs",
        scheduler=scheduler,
        n_workers=n_workers,
        progress=progress,
        description="recovery fits",
    )
    table = pd.DataFrame(
        [
            {**row, "dataset": name, "diagnostics_passed": bool(res.get("diagnostics_passed", True))}
            for name, res in results.items()
            for row in res["rows"]
        ]
    )
    return table, summarise_recovery(table)


# ----------------------------------------------------------------------------- SBC


def prior_draw(cfg: Config, variant: str, n_patients: int, seed: int) -> dict[str, np.ndarray]:
    """One draw of every latent of the fit's prior (group parameters and per-patient values)."""
    import jax
    from numpyro import handlers

    from plasticity_rl.inference.model import ModelSpec, Priors, sample_params
    from plasticity_rl.models import get_model
    from plasticity_rl.params import belief_values

    obs = cfg.observations
    values = belief_values(cfg)
    spec = ModelSpec(
        variant=variant,
        priors=Priors.from_config(cfg, get_model(variant)),
        has_ema=obs.ema.enabled,
        has_visits=obs.visits.enabled and bool(obs.visits.days),
        m_max=obs.visits.m_max,
        mu_o=values["mu_o"],
        V0_offset=values["V0_offset"],
        window=window_spec(cfg),
    )
    with handlers.seed(rng_seed=jax.random.key(seed)):
        trace = handlers.trace(sample_params).get_trace(spec, n_patients)
    return {k: np.asarray(v["value"]) for k, v in trace.items() if v["type"] in ("sample", "deterministic")}


def simulation_config(base: Config, truth: dict) -> Config:
    """``base`` with a prior draw's kernel time constants and observation noise, for simulating.

    Not validated again, on purpose: the values come from the fit's own prior, which SBC must
    sample as it is, and its tails reach past the bounds a config accepts from a user (a draw of
    sigma_treated ~ LogNormal(log 10, 0.5) exceeds the config's 30 score points ~1 % of the time).
    """
    pl = base.plasticity.model_copy(update={n: float(truth[n]) for n in window_spec(base).params})
    ema, visits = base.observations.ema, base.observations.visits
    if "phi" in truth:
        ema = ema.model_copy(update={"phi": float(truth["phi"])})
    if "sigma_baseline" in truth:
        visits = visits.model_copy(
            update={
                "noise_sd_baseline": float(truth["sigma_baseline"]),
                "noise_sd_treated": float(truth["sigma_treated"]),
            }
        )
    observations = base.observations.model_copy(update={"ema": ema, "visits": visits})
    return base.model_copy(update={"plasticity": pl, "observations": observations})


def sbc_job(cfg: dict, seed: int, fit: dict, thin_to: int) -> dict:
    """Draw from the prior, simulate with it, fit, and rank each true group parameter."""
    from plasticity_rl.data import tables
    from plasticity_rl.inference import diagnose
    from plasticity_rl.inference import fit as fit_model
    from plasticity_rl.models import get_model
    from plasticity_rl.simulate import arm_of_patients, simulate

    t0 = time.perf_counter()
    base = _with_seed(cfg, seed)
    variant = base.model.variant
    n = int(arm_of_patients(base).shape[0])
    truth = prior_draw(base, variant, n, seed)
    model = get_model(variant)
    override = {name: truth[name] for name in model.patient_params}
    override.update({name: float(truth[name]) for name in model.group_params})
    sim = simulate(simulation_config(base, truth), override)
    # Fit the simulated tables against the BASE config: its priors are the ones drawn from.
    idata = fit_model(tables(sim), base, seed=seed, **fit)
    ranks = {}
    for name, value in truth.items():
        if np.ndim(value) != 0 or name not in idata.posterior:
            continue
        draws = np.asarray(idata.posterior[name]).reshape(-1)
        draws = draws[np.linspace(0, draws.size - 1, thin_to).round().astype(int)]
        ranks[name] = int(np.sum(draws < float(value)))
    diag = diagnose(
        idata
    )  # a replicate whose fit failed is kept (dropping it would bias the ranks), but said
    return {
        "seed": seed,
        "ranks": ranks,
        "n_draws": thin_to,
        "seconds": time.perf_counter() - t0,
        "diagnostics_passed": bool(diag.passed),
        "diagnostics_failures": diag.failures,
    }


def sbc(
    cfg: Config,
    n_reps: int,
    out: Path,
    fit: FitSettings = FitSettings(),
    thin_to: int = 99,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
):
    """Run (or resume) SBC; returns (ranks table, per-parameter uniformity table)."""
    from scipy.stats import chisquare

    cfg_dict = cfg.model_dump(mode="json")
    jobs = [
        Job(
            f"sbc-{k:04d}",
            sbc_job,
            {
                "cfg": cfg_dict,
                "seed": cfg.experiment.seed + 7919 * (k + 1),
                "fit": _fit_kwargs(fit),
                "thin_to": thin_to,
            },
        )
        for k in range(n_reps)
    ]
    results = run_jobs(
        jobs,
        Path(out) / "jobs",
        scheduler=scheduler,
        n_workers=n_workers,
        progress=progress,
        description="SBC fits",
    )
    ranks = pd.DataFrame(
        [
            {
                "parameter": p,
                "replicate": name,
                "rank": r,
                "n_draws": res["n_draws"],
                "diagnostics_passed": bool(res.get("diagnostics_passed", True)),
            }
            for name, res in results.items()
            for p, r in res["ranks"].items()
        ]
    )
    rows = []
    for name, g in ranks.groupby("parameter", sort=False):
        bins = max(2, min(20, len(g) // 5))
        counts, _ = np.histogram(g["rank"], bins=bins, range=(0, thin_to + 1))
        rows.append(
            {
                "parameter": name,
                "replicates": len(g),
                "bins": bins,
                "chi2_p": float(chisquare(counts).pvalue),
                "failed_diagnostics": int((~g["diagnostics_passed"]).sum()),
            }
        )
    return ranks, pd.DataFrame(rows)
