"""Model recovery: is data simulated from each variant attributed to its own model by `compare`?

For each generating variant (``schema``: therapy learns at the plasticity-gated rate;
``schema_ungated``: at a constant rate, whenever it happens), simulate the flagship design, fit
both variants with NUTS, and rank them by integrated PSIS-LOO
(:func:`plasticity_rl.inference.marginal.marginal_loo_data`, what ``plasticity-rl compare``
uses). Writes ``results/model_recovery.md``. Fits are cached in ``--workdir`` (rerun to resume).

Run: ``python benchmarks/model_recovery.py [--patients-per-arm 8] [--chains 4] [--warmup 300] [--draws 300]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpyro

numpyro.set_host_device_count(4)

import arviz as az  # noqa: E402

from plasticity_rl import bundled_config_path, load_config, simulate  # noqa: E402
from plasticity_rl.config import config_from_dict  # noqa: E402
from plasticity_rl.inference import fit  # noqa: E402
from plasticity_rl.inference.marginal import marginal_loo_data  # noqa: E402

VARIANTS = ("schema", "schema_ungated")
HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients-per-arm", type=int, default=8)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--seed", type=int, default=None, help="data seed (default: the flagship config's)")
    ap.add_argument("--fit-seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=HERE / "data" / "model_recovery")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "model_recovery.md")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for truth in VARIANTS:
        raw = load_config(bundled_config_path("flagship")).model_dump(mode="json")
        raw["experiment"]["patients_per_arm"] = a.patients_per_arm
        if a.seed is not None:
            raw["experiment"]["seed"] = a.seed
        seed = raw["experiment"]["seed"]
        raw["model"]["variant"] = truth
        sim = simulate(config_from_dict(raw))
        marginals = {}
        for variant in VARIANTS:
            path = a.workdir / f"{truth}_data__{variant}_fit.nc"
            t0 = time.perf_counter()
            if path.is_file():
                idata = az.from_netcdf(str(path))
            else:
                idata = fit(
                    sim, variant=variant, chains=a.chains, warmup=a.warmup, draws=a.draws, seed=a.fit_seed
                )
                idata.to_netcdf(str(path))
            t1 = time.perf_counter()
            m = marginal_loo_data(idata, sim, variant=variant)
            print(
                f"data from {truth}, fit {variant}: fit {t1 - t0:.0f} s, integrated LOO {time.perf_counter() - t1:.0f} s",
                flush=True,
            )
            marginals[variant] = m
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = az.compare(marginals, ic="loo", var_name="obs")
            k_max = {v: float(az.loo(m, pointwise=True).pareto_k.max()) for v, m in marginals.items()}
        best = str(table.index[0])
        other = str(table.index[1])
        rows.append(
            (truth, best, float(table.loc[other, "elpd_diff"]), float(table.loc[other, "dse"]), k_max)
        )
    lines = [
        "# Model recovery (integrated PSIS-LOO)",
        "",
        f"Flagship design, {a.patients_per_arm} patients per arm, data seed {seed}, fit seed {a.fit_seed}; NUTS {a.chains} chains x "
        f"({a.warmup} + {a.draws}). `elpd_diff` is how far the losing model is behind (nats), `dse` its SE.",
        "",
        "| simulated from | ranked first | elpd_diff of the other | dse | max Pareto k (schema / ungated) |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for truth, best, diff, dse, k in rows:
        lines.append(
            f"| {truth} | {best} | {diff:.1f} | {dse:.1f} | {k['schema']:.2f} / {k['schema_ungated']:.2f} |"
        )
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
