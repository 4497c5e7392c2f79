"""Time per likelihood gradient: conditional (outcomes logged) against marginal (integrated out).

Both through the fit's own function, ``plasticity_rl.inference.model.patient_log_lik``, summed
over patients and differentiated by ``jax.value_and_grad`` under one ``jit`` on one device, at
the simulated truth of the bundled flagship config (scaled to ``--patients`` per arm). The
compile + first call is timed apart; then the best and median of ``--repeats`` calls, each ended
by ``block_until_ready()``. The CPU is named in the table, since XLA:CPU's speed differs between
CPU kinds.

Run: ``python benchmarks/likelihood.py [--patients 20] [--repeats 30]``.
Writes the table to ``benchmarks/results/likelihood.md``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from _machine import cpu_name  # benchmarks/_machine.py (scripts run from here)

from plasticity_rl import bundled_config_path, load_config, simulate
from plasticity_rl.config import config_from_dict
from plasticity_rl.inference.model import ModelSpec, patient_log_lik, true_theta
from plasticity_rl.inference.prepare import prepare


def _time(fun, theta, repeats: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    jax.block_until_ready(fun(theta))
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fun(theta))
        runs.append(time.perf_counter() - t0)
    return first, min(runs), statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20, help="patients per arm (flagship: 20)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    raw = load_config(bundled_config_path("flagship")).model_dump(mode="json")
    raw["experiment"]["patients_per_arm"] = args.patients
    sim = simulate(config_from_dict(raw))
    data = prepare(sim)
    x = data.inputs()
    theta = true_theta(data, sim.params)
    rows = []
    for likelihood in ("conditional", "marginal"):
        spec = ModelSpec.from_data(data, likelihood=likelihood)
        fun = jax.jit(jax.value_and_grad(lambda th, spec=spec: patient_log_lik(spec, th, x).sum()))
        first, best, median = _time(fun, theta, args.repeats)
        value = float(fun(theta)[0])
        rows.append((likelihood, first, best, median, value))
    cond_best = rows[0][2]
    lines = [
        f"Likelihood value + gradient, flagship design, {data.n_patients} patients x "
        f"{data.n_steps} steps, one device; {cpu_name()}, jax {jax.__version__}.",
        "",
        "| likelihood | compile + first call (s) | best (ms) | median (ms) | vs conditional | log-likelihood at the truth |",
        "|---|---|---|---|---|---|",
    ]
    for name, first, best, median, value in rows:
        lines.append(
            f"| {name} | {first:.2f} | {best * 1e3:.2f} | {median * 1e3:.2f} | "
            f"{best / cond_best:.1f}x | {value:.1f} |"
        )
    out = Path(__file__).parent / "results" / "likelihood.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: {out}")
    assert np.isfinite(rows[1][4])


if __name__ == "__main__":
    main()
