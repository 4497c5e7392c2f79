"""Grid sweeps: the same trial simulated at every combination of a few parameters' values.

``plasticity-rl sweep CONFIG --param A=1,2,3 --param tau_k_hours=12,24,36`` simulates the config
once per grid point, each point a job on dask.distributed (a LocalCluster by default), and
tabulates every arm's mean beliefs at follow-up. A parameter is named as in the parameter table
(``plasticity-rl params``); a patient-level one (A, logit_alpha0, ...) sets its population
mean, the others their config value. Every point keeps the config's seed, so points differ by
the parameters, not by the draws (common random numbers). Each finished point is written as it
finishes, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from plasticity_rl.batch import Job, run_jobs
from plasticity_rl.config import Config, ConfigError, config_from_dict, config_to_yaml
from plasticity_rl.params import PARAMS

OUTCOMES = ("V_followup", "S_followup", "V_baseline")


def parse_grid(items: list[str]) -> dict[str, list[float]]:
    """``["A=1,2,3", "tau_k_hours=12,24"]`` as ``{"A": [1, 2, 3], ...}``, with errors that say what is allowed."""
    grid: dict[str, list[float]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not values.strip():
            raise ConfigError([f"--param: got {item!r}; allowed: NAME=V1,V2,... (e.g. A=1,2,3)"])
        if name not in PARAMS:
            raise ConfigError(
                [f"--param: unknown parameter {name!r}; allowed (plasticity-rl params): {', '.join(PARAMS)}"]
            )
        if name in grid:
            raise ConfigError([f"--param: {name!r} is given twice; give all its values in one --param"])
        try:
            grid[name] = [float(v) for v in values.split(",")]
        except ValueError:
            raise ConfigError(
                [f"--param {name}: got {values!r}; allowed: numbers separated by commas"]
            ) from None
    if not grid:
        raise ConfigError(["--param: give at least one, e.g. --param A=1,2,3"])
    return grid


def point_config(cfg: Config, point: dict[str, float]) -> Config:
    """``cfg`` with each parameter of ``point`` set (a patient-level one's population mean)."""
    data = cfg.model_dump(mode="json")
    for name, value in point.items():
        *parents, leaf = PARAMS[name].config.split(".")
        node = data
        for part in parents:
            node = node[part]
        if PARAMS[name].level == "patient":
            node[leaf]["mean"] = value
        else:
            node[leaf] = value
    label = ", ".join(f"{k}={v:g}" for k, v in point.items())
    return config_from_dict(data, source=f"sweep point {label}")


def grid_points(cfg: Config, grid: dict[str, list[float]]) -> list[dict[str, float]]:
    """Every combination of the grid's values, each checked as a config before anything runs."""
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    for p in points:
        point_config(cfg, p)  # a value the config refuses stops the sweep here, naming it
    return points


def simulate_point(config_yaml: str, point: dict[str, float]) -> dict:
    """One grid point (a Dask job): each arm's mean V and S at follow-up and V at the start."""
    from plasticity_rl.config import config_from_yaml
    from plasticity_rl.simulate import simulate

    cfg = point_config(config_from_yaml(config_yaml), point)
    sim = simulate(cfg)
    V, S = np.asarray(sim.trajectory.V, np.float64), np.asarray(sim.trajectory.S, np.float64)
    step = cfg.followup_step
    rows = []
    for i, arm in enumerate(cfg.all_arms()):
        idx = sim.arm_index == i
        rows.append(
            {
                **point,
                "arm": arm.name,
                "n_patients": int(idx.sum()),
                "V_followup": float(V[idx, step].mean()),
                "S_followup": float(S[idx, step].mean()),
                "V_baseline": float(V[idx, 0].mean()),
                "followup_day": cfg.followup_day,
            }
        )
    return {"rows": rows}


def posterior_name(name: str) -> str:
    """The posterior variable that estimates a swept parameter (a patient-level one: its mean)."""
    return f"mu_{name}" if PARAMS[name].level == "patient" else name


def fit_point(config_yaml: str, point: dict[str, float], fit: dict) -> dict:
    """One grid point fitted (a Dask job): the data simulated at the point, then the config's
    variant fitted to it (``fit``: :class:`~plasticity_rl.inference.fit.FitSettings` fields).

    Returns the fit's verdict, each swept parameter's posterior mean and 94 % HDI where the fit
    estimates it (against the value simulated), and the synergy of drug and in-window therapy on
    the last day where the design has its 2 x 2 of arms.
    """
    import arviz as az

    from plasticity_rl.analysis import synergy, synergy_roles
    from plasticity_rl.config import config_from_yaml
    from plasticity_rl.data import tables
    from plasticity_rl.inference.diagnostics import diagnose
    from plasticity_rl.inference.fit import FitSettings
    from plasticity_rl.simulate import simulate
    from plasticity_rl.workflow import fit_posterior

    cfg = point_config(config_from_yaml(config_yaml), point)
    settings = FitSettings(**fit, seed=cfg.experiment.seed)
    idata = fit_posterior(tables(simulate(cfg)), cfg, cfg.model.variant, settings)
    diag = diagnose(idata)
    row = {
        **point,
        "variant": cfg.model.variant,
        "fit_passed": bool(diag.passed),
        "failures": len(diag.failures),
    }
    for name in point:
        var = posterior_name(name)
        if var in idata.posterior:
            draws = idata.posterior[var].values.reshape(-1)
            low, high = az.hdi(draws, hdi_prob=0.94)
            row |= {
                f"{var}_mean": float(draws.mean()),
                f"{var}_hdi_low": float(low),
                f"{var}_hdi_high": float(high),
            }
    roles, _ = synergy_roles(cfg)
    syn = synergy(idata, cfg.experiment.days, roles) if roles else pd.DataFrame()
    if len(syn):
        s_row = syn[syn["belief"] == "S"].iloc[0]
        row |= {
            "synergy_S_mean": float(s_row["mean"]),
            "synergy_S_hdi_low": float(s_row["hdi_94%_low"]),
            "synergy_S_hdi_high": float(s_row["hdi_94%_high"]),
            "synergy_S_p_gt_0": float(s_row["p_gt_0"]),
        }
    return {"row": row}


def job_name(point: dict[str, float]) -> str:
    return "point-" + "-".join(f"{k}{v:g}" for k, v in point.items()).replace(".", "p")


def run_sweep(
    cfg: Config,
    grid: dict[str, list[float]],
    out: Path,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    fit: dict | None = None,
) -> pd.DataFrame:
    """Simulate every grid point (resuming the ones in ``out/jobs``); writes ``out/sweep.csv``.

    Rows: one per (point, arm), with the swept values, ``n_patients``, ``V_followup`` and
    ``S_followup`` (means at the end of the follow-up day), ``V_baseline`` and ``followup_day``.
    With ``fit`` (FitSettings fields), every point's data are also fitted
    (:func:`fit_point`, jobs of their own) into ``out/sweep_fits.csv``, one row per point;
    ``table.attrs["fits"]`` holds that table.
    """
    out = Path(out)
    points = grid_points(cfg, grid)
    text = config_to_yaml(cfg)
    jobs_dir = out / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    stamp = jobs_dir / "sweep.json"
    key = {"config": text, "grid": grid}
    if stamp.is_file() and json.loads(stamp.read_text()) != key:
        raise ConfigError(
            [
                f"{out}: holds a sweep of another config or grid; choose another --out, or delete it to start again"
            ]
        )
    stamp.write_text(json.dumps(key))
    jobs = [Job(job_name(p), simulate_point, {"config_yaml": text, "point": p}) for p in points]
    results = run_jobs(jobs, jobs_dir, scheduler, n_workers, progress, f"sweep ({len(points)} points)")
    table = pd.DataFrame([row for j in jobs for row in results[j.name]["rows"]])
    _write_csv(table, out / "sweep.csv")
    if fit is not None:
        # a fit of other settings is another job: its name carries them
        tag = "fit-" + "-".join(f"{k}{v}" for k, v in sorted(fit.items())).replace(".", "p")
        fits = [
            Job(f"{tag}-{job_name(p)}", fit_point, {"config_yaml": text, "point": p, "fit": fit})
            for p in points
        ]
        done = run_jobs(fits, jobs_dir, scheduler, n_workers, progress, f"sweep fits ({len(points)} points)")
        table.attrs["fits"] = pd.DataFrame([done[j.name]["row"] for j in fits])
        _write_csv(table.attrs["fits"], out / "sweep_fits.csv")
    return table


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
