"""Simulation throughput: the JAX simulator's hot path against a vectorised NumPy twin.

Measures agent-steps per second (patients x steps) for the default ``schema`` model on the
bundled flagship config, scaled to ``--patients`` patients across its five arms, outcome
sampling included:

- JAX: ``plasticity_rl.simulate.sample_experiences`` (everyday Bernoulli outcomes, corrective
  outcomes, attendance) followed by ``cohort_beliefs`` (the belief recurrence), exactly what
  ``plasticity_rl.simulate.simulate`` runs. The warm-up call (compile + first run) is timed
  separately; then the best and median of ``--repeats`` runs, each ended by
  ``block_until_ready()``.
- NumPy: the same equations vectorised over patients with a Python loop over the steps, drawing
  with ``numpy.random.Generator``. Sessions (attendance, then n_c corrective outcomes processed
  before the everyday event) are handled at the steps where some arm has one.

Both get the per-arm plasticity drive g(k_j) and gate (from ``arm_inputs``) and the initial
beliefs precomputed outside the timed region; both compute each patient's alpha_j inside it,
from the patient's own logit alpha0 and A, as a simulation must, and both return it.
A correctness check feeds the NumPy recurrence the JAX-sampled outcomes for a subset of patients
and asserts max |V_numpy - V_jax| < 1e-4.

Run: ``python benchmarks/simulate.py [--patients 10000] [--days 56] [--repeats 5]``.
Writes the table to ``benchmarks/results/simulate.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# One host device per core, as the CLI sets up (before JAX starts): the simulator then splits the
# belief recurrence's patients over the cores. --devices 1 measures a single device.
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--devices", type=int, default=os.cpu_count() or 1)
DEVICES = max(1, _pre.parse_known_args(sys.argv[1:])[0].devices)
import numpyro  # noqa: E402

numpyro.set_host_device_count(DEVICES)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from plasticity_rl.config import load_config
from plasticity_rl.models import get_model
from plasticity_rl.plasticity import arm_inputs, learning_rate
from plasticity_rl.schedule import build_schedules
from plasticity_rl.simulate import (
    arm_of_patients,
    cohort_beliefs_on_devices,
    sample_experiences,
    sample_params,
    stream_key,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "flagship.yaml"
RESULTS = Path(__file__).resolve().parent / "results" / "simulate.md"
TOLERANCE = 1e-4


# ----------------------------------------------------------------------------- setup


def build_case(patients: int, days: int):
    """Flagship config scaled to ``patients`` across its arms, and everything precomputed."""
    cfg = load_config(CONFIG)
    n_arms = len(cfg.all_arms())
    if patients % n_arms:
        raise SystemExit(f"--patients must be a multiple of the {n_arms} arms")
    experiment = cfg.experiment.model_copy(update={"patients_per_arm": patients // n_arms, "days": days})
    cfg = cfg.model_copy(update={"experiment": experiment})
    model = get_model(cfg.model.variant)
    sch = build_schedules(cfg)
    inputs = arm_inputs(cfg, sch)
    arm_index = arm_of_patients(cfg)
    N, seed = arm_index.shape[0], cfg.experiment.seed
    params = sample_params(stream_key(seed, "params"), cfg, model, N)
    env = cfg.environment
    jax_args = dict(
        keys=(stream_key(seed, "everyday"), stream_key(seed, "corrective"), stream_key(seed, "attendance")),
        arm_index=jnp.asarray(arm_index),
        inputs=inputs,
        p_everyday=env.p_env * (1.0 - env.bias),
        n_max=sch.n_c_max,
        params=params,
        model=model,
    )
    jax.block_until_ready(jax_args)

    # NumPy inputs: alpha_j per patient laid out (T, N) so that one step is a contiguous row.
    g_k, gate = np.asarray(inputs.g_k), np.asarray(inputs.gate)
    alpha = np.asarray(
        learning_rate(
            params["logit_alpha0"][None, :], params["A"][None, :], g_k[arm_index].T, gate[arm_index].T
        ),
        dtype=np.float64,
    )
    init = jax.vmap(model.initial)(params)
    sessions = []  # (step, patient indices, n_c, p_c, attendance) for every scheduled session
    session_steps = np.nonzero((sch.session_n > 0).any(axis=0))[0]
    for j in session_steps:
        for a in np.nonzero(sch.session_n[:, j] > 0)[0]:
            idx = np.nonzero(arm_index == a)[0]
            sessions.append(
                (
                    int(j),
                    idx,
                    int(sch.session_n[a, j]),
                    float(sch.session_p[a, j]),
                    float(sch.session_attend[a, j]),
                )
            )
    np_args = dict(
        alpha=np.ascontiguousarray(alpha),
        # What a simulation computes per step: alpha_j of each patient from its own parameters
        # and its arm's drive and gate (laid out (T, N) so a step is a contiguous row).
        g_k=np.ascontiguousarray(g_k[arm_index].T, dtype=np.float64),
        gate=np.ascontiguousarray(gate[arm_index].T, dtype=np.float64),
        logit_alpha0=np.asarray(params["logit_alpha0"], np.float64),
        A=np.asarray(params["A"], np.float64),
        V0=np.asarray(init.V, np.float64),
        S0=np.asarray(init.S, np.float64),
        kappa=cfg.population.kappa,
        epsilon=cfg.population.epsilon,
        omega=cfg.population.omega,
        p_everyday=env.p_env * (1.0 - env.bias),
        sessions=sessions,
        seed=seed,
    )
    return cfg, sch, jax_args, np_args


# ----------------------------------------------------------------------------- JAX


def run_jax(a):
    exp = sample_experiences(*a["keys"], a["arm_index"], a["inputs"], a["p_everyday"], n_max=a["n_max"])
    traj = cohort_beliefs_on_devices(a["model"], a["params"], a["arm_index"], a["inputs"], exp)
    return exp, jax.block_until_ready(traj)


# ----------------------------------------------------------------------------- NumPy


def numpy_recurrence(alpha, V0, S0, kappa, epsilon, omega, everyday, session_at, rates=None):
    """Schema beliefs over T steps for all patients; arrays are (T, N).

    ``alpha`` is (T, N), or with ``rates(j)`` given (computing step j's alpha, as a simulation
    must), only its shape is used. ``everyday(j)`` gives step j's outcomes (N,); ``session_at`` maps a step to a list of
    (patient indices, corrective outcomes (m, n_max), delivered counts (m,)), processed in order
    before the everyday event.
    """
    T, N = alpha.shape
    V, S = V0.copy(), S0.copy()
    V_out = np.empty((T, N))
    S_out = np.empty((T, N))
    for j in range(T):
        a = alpha[j] if rates is None else rates(j)
        for idx, cs, n in session_at.get(j, ()):
            aa = a[idx]
            v, s = V[idx], S[idx]
            for k in range(cs.shape[1]):
                live = n > k
                if not live.any():
                    break
                c = cs[:, k]
                v = np.where(live, v + aa * (c - v), v)
                s = np.where(live, s + omega * aa * (c - s), s)
            V[idx], S[idx] = v, s
        o = everyday(j)
        # V learns from the outcome, then relaxes toward the (pre-update) schema
        # (plasticity_rl.models.variants.relax_toward_schema).
        V_new = (1.0 - kappa) * (V + a * (o - V)) + kappa * S
        S += epsilon * a * (o - S)
        V = V_new
        V_out[j] = V
        S_out[j] = S
    return V_out, S_out


def run_numpy(a):
    """Sample everyday outcomes, attendance and corrective outcomes, then run the recurrence."""
    rng = np.random.default_rng(a["seed"])
    T, N = a["alpha"].shape
    everyday = rng.random((T, N)) < a["p_everyday"]  # (T, N) bool, one contiguous row per step
    session_at: dict[int, list] = {}
    for j, idx, n_c, p_c, p_attend in a["sessions"]:
        attended = rng.random(idx.shape[0]) < p_attend
        who = idx[attended]
        cs = (rng.random((who.shape[0], n_c)) < p_c).astype(np.float64)
        session_at.setdefault(j, []).append((who, cs, np.full(who.shape[0], n_c)))
    alpha_out = np.empty((T, N))

    def rates(j):  # alpha_j = (1 - gate_j) sigmoid(logit alpha0 + A g(k_j)), kept like JAX's
        alpha_out[j] = (1.0 - a["gate"][j]) / (1.0 + np.exp(-(a["logit_alpha0"] + a["A"] * a["g_k"][j])))
        return alpha_out[j]

    V, S = numpy_recurrence(
        a["alpha"],
        a["V0"],
        a["S0"],
        a["kappa"],
        a["epsilon"],
        a["omega"],
        lambda j: everyday[j],
        session_at,
        rates=rates,
    )
    return alpha_out, V, S


# ----------------------------------------------------------------------------- check


def check_agreement(jax_args, np_args, exp, traj, per_arm: int = 40) -> float:
    """Feed the NumPy recurrence the JAX-sampled outcomes of a subset; return max |V diff|."""
    arm_index = np.asarray(jax_args["arm_index"])
    subset = np.concatenate([np.nonzero(arm_index == a)[0][:per_arm] for a in np.unique(arm_index)])
    everyday = np.asarray(exp.everyday, np.float64)[subset].T
    corrective = np.asarray(exp.corrective, np.float64)[subset]
    n_corr = np.asarray(exp.n_corr)[subset]
    session_at = {}
    for j in np.nonzero((n_corr > 0).any(axis=0))[0]:
        who = np.nonzero(n_corr[:, j] > 0)[0]
        session_at[int(j)] = [(who, corrective[who, j], n_corr[who, j])]
    V, _ = numpy_recurrence(
        np_args["alpha"][:, subset],
        np_args["V0"][subset],
        np_args["S0"][subset],
        np_args["kappa"],
        np_args["epsilon"],
        np_args["omega"],
        lambda j: everyday[j],
        session_at,
    )
    return float(np.max(np.abs(V.T - np.asarray(traj.V)[subset])))


# ----------------------------------------------------------------------------- timing


def timed_interleaved(fns, repeats):
    """Best and median seconds of each function, alternating them so both see the same load."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [(min(ts), statistics.median(ts)) for ts in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=56)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--devices", type=int, default=DEVICES, help="host devices (default: one per core)")
    args = ap.parse_args(argv)

    cfg, sch, jax_args, np_args = build_case(args.patients, args.days)
    N, T = args.patients, sch.n_steps
    agent_steps = N * T

    t0 = time.perf_counter()
    exp, traj = run_jax(jax_args)
    warmup = time.perf_counter() - t0
    run_numpy(np_args)  # touch the code paths once
    (jax_best, jax_median), (np_best, np_median) = timed_interleaved(
        [lambda: run_jax(jax_args), lambda: run_numpy(np_args)], args.repeats
    )
    compile_s = max(warmup - jax_median, 0.0)

    diff = check_agreement(jax_args, np_args, exp, traj)
    # Sanity: the NumPy twin's own draws give the same cohort mean as the JAX ones.
    _, V_np, _ = run_numpy(np_args)
    mean_jax, mean_np = float(np.mean(np.asarray(traj.V))), float(V_np.mean())

    rows = [
        (
            f"JAX (sample_experiences + cohort_beliefs_on_devices, {jax.local_device_count()} device(s))",
            agent_steps / jax_best,
            jax_best,
            jax_median,
            f"{compile_s:.2f}",
        ),
        ("NumPy (vectorised over patients, loop over steps)", agent_steps / np_best, np_best, np_median, "-"),
    ]
    ratio = np_best / jax_best
    lines = [
        "# Simulation throughput",
        "",
        f"{N:,} patients x {args.days} days x {cfg.experiment.steps_per_day} steps = {agent_steps:,} agent-steps; "
        f"model `{cfg.model.variant}`, flagship config ({len(sch.arm_names)} arms), outcome sampling included. "
        f"Best and median of {args.repeats} runs, JAX and NumPy alternating; agent-steps/s from the best. "
        f"Load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the machine is shared).",
        "",
        "| implementation | agent-steps/s | seconds (best) | seconds (median) | compile seconds |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {rate:.3g} | {best:.4f} | {med:.4f} | {comp} |"
            for name, rate, best, med, comp in rows
        ),
        "",
        f"JAX / NumPy speed ratio: **{ratio:.2f}x** (NumPy seconds / JAX seconds, best of each).",
        "",
        f"Agreement: NumPy recurrence on JAX-sampled outcomes, {len(np.unique(np.asarray(jax_args['arm_index']))) * 40} "
        f"patients: max |V diff| = {diff:.2e} (must be < {TOLERANCE:g}). "
        f"Mean V over the cohort: JAX {mean_jax:.4f}, NumPy own draws {mean_np:.4f}.",
        "",
        f"Compile seconds = warm-up call ({warmup:.2f} s: compile + first run) minus the median run.",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"jax {jax.__version__}, numpy {np.__version__}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if diff >= TOLERANCE:
        raise SystemExit(f"NumPy and JAX disagree: max |V diff| = {diff:.3g} >= {TOLERANCE:g}")


if __name__ == "__main__":
    main()
