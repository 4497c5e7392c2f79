"""Exact per-patient posteriors on a grid: is a recovery fit's per-patient coverage the fit's doing?

Run on demand (not in CI). Given the group-level parameters, each patient's posterior over its
three own parameters (logit alpha0, A, logit S0) is a 3-D problem: prior N(mu, tau) per
coordinate times that patient's likelihood (``inference.model.patient_log_lik``, the fit's own).
This script evaluates it on a grid, refined twice around each patient's posterior (final grid
35^3, +-7 posterior SDs, 90% intervals from the marginal CDFs), so no sampler is involved.

Two uses:

1. Given the TRUE group values (default): patients drawn from N(mu, tau), exactly as the fit
   assumes, make this exact posterior calibrated, so its 90% intervals hold the truth for ~90%
   of patients on average over data sets (binomial SD 0.03 per 100 patients). A shortfall here
   would mean the likelihood and the simulator disagree; a data set's own shortfall here is the
   data's, not any fit's.
2. ``--fits DIR`` (a ``plasticity-rl recover`` study folder): also evaluate each data set given
   its fit's group-level posterior means, and compare the fit's per-patient means, SDs and
   coverage with the exact ones (NUTS integrates over the group values too, so close, not equal).

    python benchmarks/exact_patient_posterior.py configs/recovery_design.yaml --datasets 0-19
    python benchmarks/exact_patient_posterior.py configs/recovery_design.yaml --datasets 2 --fits design

Data set k is the one ``recover`` simulates as its job k (``recovery.recovery_seed``).
About a minute per 100-patient data set on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from plasticity_rl.config import load_config
from plasticity_rl.inference.model import ModelSpec, patient_log_lik, true_theta
from plasticity_rl.inference.prepare import from_simulation
from plasticity_rl.recovery import _with_seed, recovery_seed
from plasticity_rl.simulate import simulate

NAMES = ("logit_alpha0", "A", "logit_S0")
FITTED_GROUP = ("kappa", "epsilon", "omega", "tau_k_hours", "phi", "sigma_baseline", "sigma_treated")
HALF_WIDTH, POINTS = 7.0, 35  # final grid: +-7 posterior SDs, 35 points a side (0.41 SD apart)


def cube(half_width: float, points: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(-half_width, half_width, points)
    return g, np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)


@partial(jax.jit, static_argnums=0)
def _log_post(spec, x, theta, mu, tau, centre, scale, z_batch):
    """(B, N) log posterior of every patient at centre + scale * z, for each z of the batch.

    One compilation for all calls with the same shapes (the spec is static, everything else an
    argument), so a study of many data sets compiles once.
    """

    def one(z):
        p = centre + scale * z
        th = {**theta, **{n: p[:, j] for j, n in enumerate(NAMES)}}
        return patient_log_lik(spec, th, x) - 0.5 * jnp.sum(((p - mu) / tau) ** 2, axis=1)

    return jax.vmap(one)(z_batch)


def grid_weights(spec, x, theta, mu, tau, centre, scale, offsets, batch=256):
    """Normalised posterior weights (G, N) of every patient at centre + scale * offset."""
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    args = (spec, x, theta, f32(mu), f32(tau), f32(centre), f32(scale))
    pad = (-len(offsets)) % batch  # every call the same shape: one compilation
    z = np.concatenate([offsets, np.zeros((pad, 3))])
    lp = np.concatenate(
        [np.asarray(_log_post(*args, f32(z[i : i + batch]))) for i in range(0, len(z), batch)]
    )
    lp = lp[: len(offsets)]
    w = np.exp(lp - lp.max(0))
    return w / w.sum(0)


def moments(w, centre, scale, offsets):
    p = centre[None] + scale[None] * offsets[:, None, :]  # (G, N, 3)
    mean = np.einsum("gn,gnj->nj", w, p)
    return mean, np.sqrt(np.einsum("gn,gnj->nj", w, (p - mean) ** 2))


def exact_posteriors(spec, x, theta, mu, tau, n: int) -> pd.DataFrame:
    """Per patient and parameter: exact posterior mean, SD and 90% interval (and the grid's edge mass)."""
    centre, scale = np.tile(mu, (n, 1)), np.tile(tau, (n, 1))
    _, offsets = cube(5.0, 25)  # first pass over the prior, then twice around the posterior
    for _ in range(2):
        w = grid_weights(spec, x, theta, mu, tau, centre, scale, offsets)
        centre, scale = moments(w, centre, scale, offsets)
        scale = np.maximum(scale, 1e-3)
        g, offsets = cube(HALF_WIDTH, POINTS)
    w = grid_weights(spec, x, theta, mu, tau, centre, scale, offsets)
    mean, sd = moments(w, centre, scale, offsets)
    edge = w[np.any(np.abs(offsets) >= HALF_WIDTH - 1e-9, axis=1)].sum(0)
    cells = w.reshape(POINTS, POINTS, POINTS, n)
    rows = []
    for j, name in enumerate(NAMES):
        marginal = cells.sum(axis=tuple(a for a in range(3) if a != j))  # (points, N)
        cdf = np.cumsum(marginal, 0) - marginal / 2
        for i in range(n):
            lo, hi = np.interp([0.05, 0.95], cdf[:, i], centre[i, j] + scale[i, j] * g)
            rows.append(
                {
                    "patient": i,
                    "parameter": name,
                    "mean": mean[i, j],
                    "sd": sd[i, j],
                    "low": lo,
                    "high": hi,
                    "edge_mass": edge[i],
                }
            )
    return pd.DataFrame(rows)


def covered(df: pd.DataFrame) -> pd.Series:
    return (df["true"] >= df["low"]) & (df["true"] <= df["high"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--datasets", default="0-9", help="data set numbers: '0-19' or '0,2,5'")
    ap.add_argument("--fits", type=Path, help="a `plasticity-rl recover` folder to compare with")
    ap.add_argument("--out", type=Path, default=Path("exact_patient_posterior.csv"))
    args = ap.parse_args()
    lo_hi = args.datasets.split("-")
    ks = (
        range(int(lo_hi[0]), int(lo_hi[1]) + 1)
        if len(lo_hi) == 2
        else [int(v) for v in args.datasets.split(",")]
    )
    cfg = load_config(args.config)
    pop = cfg.population
    mu_true = np.array([getattr(pop, n).mean for n in NAMES])
    tau_true = np.array([getattr(pop, n).sd for n in NAMES])
    tables = []
    for k in ks:
        t0 = time.perf_counter()
        seed = recovery_seed(cfg, k)
        sim = simulate(_with_seed(cfg.model_dump(mode="json"), seed))
        data = from_simulation(sim)
        spec, x, n = ModelSpec.from_data(data), data.inputs(), sim.n_patients
        truth = true_theta(data, sim.params)
        true_values = {name: np.asarray(sim.params[name]) for name in NAMES}
        settings = [("true group values", truth, mu_true, tau_true)]
        fit_rows = None
        if args.fits is not None:
            fit_rows = pd.DataFrame(
                json.loads((args.fits / "jobs" / f"recover-{k:03d}.json").read_text())["rows"]
            )
            group = fit_rows.query("level == 'group'").set_index("parameter")["mean"]
            fitted = dict(truth, **{g: jnp.float32(group[g]) for g in FITTED_GROUP if g in group})
            settings.append(
                (
                    "fitted group means",
                    fitted,
                    np.array([group[f"mu_{n}"] for n in NAMES]),
                    np.array([group[f"tau_{n}"] for n in NAMES]),
                )
            )
        line = [f"data set {k}:"]
        for label, theta, mu, tau in settings:
            df = exact_posteriors(spec, x, theta, mu, tau, n).assign(dataset=k, given=label)
            df["true"] = [true_values[p][i] for p, i in zip(df["parameter"], df["patient"])]
            df["covered"] = covered(df)
            tables.append(df)
            cov = df.groupby("parameter")["covered"].mean()
            line.append(
                f"[{label}] "
                + " ".join(f"{p} {cov[p]:.2f}" for p in NAMES)
                + f" (edge mass <= {df['edge_mass'].max():.0e})"
            )
        if fit_rows is not None:  # df: the exact posterior given the fit's group means, as the fit had
            nuts = fit_rows.query("level == 'patient'").assign(covered=lambda d: covered(d))
            m = df.merge(nuts, on=["patient", "parameter"], suffixes=("", "_fit"))
            for p, g in m.groupby("parameter"):
                line.append(
                    f"\n  {p}: fit coverage {g['covered_fit'].mean():.2f}; |mean - exact| / SD median "
                    f"{np.median(np.abs(g['mean_fit'] - g['mean']) / g['sd']):.3f}, max "
                    f"{np.max(np.abs(g['mean_fit'] - g['mean']) / g['sd']):.3f}; SD fit / exact median "
                    f"{np.median(g['sd_fit'] / g['sd']):.3f}"
                )
        print(" ".join(line), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    out = pd.concat(tables)
    out.to_csv(args.out, index=False)
    summary = out.groupby(["given", "parameter"])["covered"].agg(["mean", "count"])
    per_set = out.groupby(["given", "parameter", "dataset"])["covered"].mean().groupby(["given", "parameter"])
    summary["sd_across_datasets"] = per_set.std()
    summary["min_dataset"], summary["max_dataset"] = per_set.min(), per_set.max()
    print("\n90% interval coverage (mean over patients of all data sets):")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
