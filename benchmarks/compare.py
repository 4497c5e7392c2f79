"""Fitting speed against Stan and PyMC: the same hierarchical model, the same data, four samplers.

One run of this driver:

1. simulates data sets with plasticity_rl's own simulator from the bundled flagship config at the
   requested sizes (small: 20 patients x 28 days; medium: 100 x 56; large: 400 x 56; 8 steps a
   day, five arms) and saves the model inputs under ``--workdir`` (default ``benchmarks/data/``,
   gitignored): ``inputs.npz`` (the arrays the NumPyro model reads), ``peer.npz`` (the same data
   flattened for the peers: recorded ratings only, sessions as rows, D + E per visit) and
   ``meta.json`` (priors, fixed constants, the initial point), so every engine reads identical data;
2. fits the default ``schema`` model (the window's length tau_k sampled, as ``plasticity-rl fit``
   does) with each engine, each fit in its own subprocess (so its
   peak memory is its own ``rusage``):

   - ``plasticity_rl``: ``plasticity_rl.inference.fit`` (NumPyro NUTS), as the CLI's ``fit`` runs
     it: one host device per chain, chains in parallel;
   - ``stan``: ``peers/schema.stan`` with PyStan 3 (httpstan, chains in worker processes);
   - ``nutpie``: ``peers/pymc_model.py`` compiled by nutpie (numba backend), ``cores=2``;
   - ``pymc``: the same PyMC model with PyMC's own NUTS (``cores=2``), small size only unless
     ``--pymc-all-sizes``;

3. reports per engine and size: compile seconds, sampling seconds, min bulk / tail ESS over the
   thirteen group parameters (tau_k among them), min bulk ESS per sampling second, divergences, max R-hat (group
   parameters), peak memory, and whether the posterior means of the group parameters agree with
   plasticity_rl's within Monte-Carlo error (|diff| < 4 sqrt(mcse_a^2 + mcse_b^2) for all thirteen);
   then the ratio of plasticity_rl's ESS/s to the best peer's at each size. Results are merged
   (by engine and size) into ``results/latest.json`` and rendered to ``results/compare.md``.

``--check`` first: at three fixed points of the unconstrained parameter space, every peer's log
density (Jacobian included, constants kept) and its gradient must equal NumPyro's (minus the
potential energy, in float64) to 1e-6 relative.

What each engine is timed on:

- compile_s: plasticity_rl, the JAX trace + lowering + XLA compile time reported by JAX's
  monitoring events during the fit; Stan, ``stan.build`` with an empty httpstan cache; nutpie,
  building the PyMC model and ``nutpie.compile_pymc_model`` with empty pytensor/numba caches;
  PyMC, building the model and compiling its logp and gradient functions (empty compiledir);
- sampling_s: wall time of warm-up plus draws (plasticity_rl: the sampler's wall time, ``sampling_seconds``, minus compile_s).

Run: ``python benchmarks/compare.py --check --sizes small`` then
``python benchmarks/compare.py --sizes small,medium --engines plasticity_rl,stan,nutpie,pymc``.
Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # benchmarks/_machine.py (scripts run from here)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_WORKDIR = HERE / "data"
SIZES = {"small": (20, 28), "medium": (100, 56), "large": (400, 56)}  # patients, days
ENGINES = ("plasticity_rl", "stan", "nutpie", "pymc")
PEERS = ("stan", "nutpie", "pymc")
PATIENT_PARAMS = ("logit_alpha0", "A", "logit_S0")
GROUP = (
    "mu_logit_alpha0",
    "mu_A",
    "mu_logit_S0",
    "tau_logit_alpha0",
    "tau_A",
    "tau_logit_S0",
    "kappa",
    "epsilon",
    "omega",
    "phi",
    "sigma_baseline",
    "sigma_treated",
    "tau_k_hours",
)
CHECK_RTOL = 1e-6
AGREE_Z = 4.0


# ----------------------------------------------------------------------------- data


def size_config(size: str):
    """The bundled flagship config at ``size``: patients split over its arms, days shortened."""
    import yaml

    from plasticity_rl.config import bundled_config_path, config_from_dict

    patients, days = SIZES[size]
    raw = yaml.safe_load(bundled_config_path("flagship").read_text())
    n_arms = len(raw["arms"])
    if patients % n_arms:
        raise SystemExit(f"{size}: {patients} patients do not split over {n_arms} arms")
    raw["experiment"].update({"patients_per_arm": patients // n_arms, "days": days})
    visits = raw.get("observations", {}).get("visits", {})
    if "days" in visits:  # keep the visits inside the shortened trial
        visits["days"] = [d for d in visits["days"] if d <= days]
    return config_from_dict(raw, source=f"flagship ({size})")


def fit_data(size: str):
    from plasticity_rl.inference import from_simulation
    from plasticity_rl.simulate import simulate

    return from_simulation(simulate(size_config(size)))


def unconstrained_layout(n: int) -> list[tuple[str, int, str]]:
    """(name, length, transform) in Stan's parameter order: the canonical unconstrained vector."""
    out = []
    for p in PATIENT_PARAMS:
        out += [(f"mu_{p}", 1, "identity"), (f"tau_{p}", 1, "log"), (f"z_{p}", n, "identity")]
    out += [
        ("kappa", 1, "logit"),
        ("epsilon", 1, "logit"),
        ("omega", 1, "logit"),
        ("phi", 1, "log"),
        ("sigma_baseline", 1, "log"),
        ("sigma_treated", 1, "log"),
        ("tau_k_hours", 1, "log"),
    ]
    return out


def split_unconstrained(vec, n: int) -> dict[str, np.ndarray]:
    out, i = {}, 0
    for name, length, _ in unconstrained_layout(n):
        out[name] = (
            np.asarray(vec[i : i + length], np.float64)
            if length > 1 or name.startswith("z_")
            else np.float64(vec[i])
        )
        i += length
    return out


def unconstrain(name_transform: str, x):
    return {"identity": lambda v: v, "log": np.log, "logit": lambda v: np.log(v / (1.0 - v))}[name_transform](
        x
    )


def peer_arrays(x, n_arms: int) -> dict[str, np.ndarray]:
    """The model inputs flattened for the peers (0-based indices; Stan adds 1).

    Values are the float32 numbers the NumPyro model reads, widened to float64 exactly.
    """
    f64 = lambda a: np.asarray(a, np.float32).astype(np.float64)  # noqa: E731
    arm = np.asarray(x.arm_index, np.int64)
    N, T = np.asarray(x.everyday).shape
    n_max = np.asarray(x.corrective).shape[2]
    n_corr = np.asarray(x.n_corr, np.int64)
    sess_i, sess_t = np.nonzero(n_corr > 0)
    ema_mask = np.asarray(x.ema_mask)
    ema_i, ema_d = np.nonzero(ema_mask)
    ema_step = np.asarray(x.ema_step, np.int64)
    vm = np.asarray(x.visit_mask)
    score = f64(x.visit_score)
    cens = np.where(score <= 0.0, -1, np.where(score >= 60.0, 1, 0))
    vi, vk = np.nonzero(vm & (cens == 0))
    ci, ck = np.nonzero(vm & (cens != 0))
    vstep = np.asarray(x.visit_step, np.int64)
    offset = f64(x.visit_D) + f64(x.visit_E)  # the model subtracts D then E; same number to ~1 ulp
    treated = np.asarray(x.visit_treated, np.int64)
    return {
        "N": np.int64(N),
        "T": np.int64(T),
        "n_arms": np.int64(n_arms),
        "n_max": np.int64(n_max),
        "arm": arm,
        "gate": f64(x.gate),
        "t_hours": f64(x.t_hours),
        "dose_hours": f64(x.dose_hours),
        "dose_amounts": f64(x.dose_amounts),
        "everyday": np.asarray(x.everyday).astype(np.int64),
        "sess_i": sess_i.astype(np.int64),
        "sess_t": sess_t.astype(np.int64),
        "sess_n": n_corr[sess_i, sess_t],
        "sess_c": f64(np.asarray(x.corrective)[sess_i, sess_t]),
        "ema_i": ema_i.astype(np.int64),
        "ema_s": ema_step[ema_d] + 1,
        "ema_y": f64(x.ema)[ema_i, ema_d],
        "vis_i": vi.astype(np.int64),
        "vis_s": vstep[vi, vk],
        "vis_y": score[vi, vk],
        "vis_offset": offset[vi, vk],
        "vis_treated": treated[vi, vk],
        "cens_i": ci.astype(np.int64),
        "cens_s": vstep[ci, ck],
        "cens_side": cens[ci, ck].astype(np.int64),
        "cens_offset": offset[ci, ck],
        "cens_treated": treated[ci, ck],
    }


def make_data(size: str, workdir: Path) -> Path:
    """Simulate ``size`` and save inputs.npz, peer.npz and meta.json; returns the folder."""
    from plasticity_rl.inference.model import ModelSpec, init_values
    from plasticity_rl.observe import EPS, SCORE_RANGE
    from plasticity_rl.params import PARAMS
    from plasticity_rl.plasticity import ALPHA_MAX

    folder = workdir / size
    folder.mkdir(parents=True, exist_ok=True)
    fd = fit_data(size)
    spec = ModelSpec.from_data(fd)
    if spec.variant != "schema" or not (spec.has_ema and spec.has_visits):
        raise SystemExit(f"expected the schema model with EMA and visits, got {spec}")
    if not (spec.window.fitted and spec.window.kernel == "gamma"):
        raise SystemExit(f"the peers implement the fitted gamma-kernel window, got {spec.window}")
    x = fd.inputs()
    np.savez_compressed(folder / "inputs.npz", **{k: np.asarray(v) for k, v in x._asdict().items()})
    peer = peer_arrays(x, len(fd.arm_names))
    np.savez_compressed(folder / "peer.npz", **peer)
    pr = spec.priors
    mu_loc = {p: pr.centre(p) for p in PATIENT_PARAMS}
    group_loc = {p: pr.centre(p) for p in ("kappa", "epsilon")}
    MU_SD = {p: PARAMS[p].prior[1] for p in PATIENT_PARAMS}
    TAU_SCALE = PARAMS[PATIENT_PARAMS[0]].prior[2]
    LOGIT_SD = PARAMS["kappa"].prior[1]
    OMEGA_BETA = PARAMS["omega"].prior[1:]
    LOG_SD_PHI, LOG_SD_SIGMA = PARAMS["phi"].prior[1], PARAMS["sigma_baseline"].prior[1]
    LOG_SD_WINDOW = PARAMS["tau_k_hours"].prior[1]
    logit = lambda v: math.log(v / (1.0 - v))  # noqa: E731
    init = {k: np.asarray(v).tolist() for k, v in init_values(spec, fd.n_patients).items()}
    meta = {
        "size": size,
        "n_patients": fd.n_patients,
        "days": fd.days,
        "steps_per_day": fd.steps_per_day,
        "n_steps": fd.n_steps,
        "arms": list(fd.arm_names),
        "n_ema": int(peer["ema_i"].size),
        "n_visits": int(peer["vis_i"].size),
        "n_censored": int(peer["cens_i"].size),
        "n_session_rows": int(peer["sess_i"].size),
        "m_max": float(spec.m_max),
        "mu_o": float(spec.mu_o),
        "V0_offset": float(spec.V0_offset),
        "eps_v": float(EPS),
        "alpha_max": float(ALPHA_MAX),
        "score_range": list(SCORE_RANGE),
        "gamma_shape": spec.window.gamma_shape,
        "k_max": spec.window.saturation,
        "priors": {
            "mu_loc": [mu_loc[p] for p in PATIENT_PARAMS],
            "mu_sd": [MU_SD[p] for p in PATIENT_PARAMS],
            "tau_scale": TAU_SCALE,
            "logit_sd": LOGIT_SD,
            "logit_kappa_loc": logit(group_loc["kappa"]),
            "logit_epsilon_loc": logit(group_loc["epsilon"]),
            "omega_a": OMEGA_BETA[0],
            "omega_b": OMEGA_BETA[1],
            "log_phi_loc": math.log(pr.centre("phi")),
            "log_sd_phi": LOG_SD_PHI,
            "log_sb_loc": math.log(pr.centre("sigma_baseline")),
            "log_st_loc": math.log(pr.centre("sigma_treated")),
            "log_sd_sigma": LOG_SD_SIGMA,
            "log_tau_k_loc": math.log(spec.window.tau_k_hours),
            "log_sd_window": LOG_SD_WINDOW,
        },
        "init": init,
        "config_source": "plasticity_rl bundled flagship.yaml",
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def load(folder: Path):
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "peer.npz") as z:
        peer = {k: z[k] for k in z.files}
    return peer, meta


def stan_data(peer: dict, meta: dict) -> dict:
    pr = meta["priors"]
    N, T = int(peer["N"]), int(peer["T"])
    sess_id = np.zeros((N, T), np.int64)
    sess_id[peer["sess_i"], peer["sess_t"]] = np.arange(1, peer["sess_i"].size + 1)
    lo, hi = meta["score_range"]
    return {
        "N": N,
        "T": T,
        "n_arms": int(peer["n_arms"]),
        "n_max": int(peer["n_max"]),
        "arm": (peer["arm"] + 1).tolist(),
        "gate": peer["gate"].tolist(),
        "n_dose": int(peer["dose_hours"].shape[1]),
        "t_hours": peer["t_hours"].tolist(),
        "dose_hours": peer["dose_hours"].tolist(),
        "dose_amounts": peer["dose_amounts"].tolist(),
        "gamma_shape": meta["gamma_shape"],
        "k_max": meta["k_max"],
        "everyday": peer["everyday"].tolist(),
        "n_sess": int(peer["sess_i"].size),
        "sess_id": sess_id.tolist(),
        "sess_n": peer["sess_n"].tolist(),
        "sess_c": peer["sess_c"].reshape(-1, int(peer["n_max"])).tolist(),
        "n_ema": int(peer["ema_i"].size),
        "ema_i": (peer["ema_i"] + 1).tolist(),
        "ema_s": (peer["ema_s"] + 1).tolist(),
        "ema_y": peer["ema_y"].tolist(),
        "n_vis": int(peer["vis_i"].size),
        "vis_i": (peer["vis_i"] + 1).tolist(),
        "vis_s": (peer["vis_s"] + 1).tolist(),
        "vis_y": peer["vis_y"].tolist(),
        "vis_offset": peer["vis_offset"].tolist(),
        "vis_treated": peer["vis_treated"].tolist(),
        "n_cens": int(peer["cens_i"].size),
        "cens_i": (peer["cens_i"] + 1).tolist(),
        "cens_s": (peer["cens_s"] + 1).tolist(),
        "cens_side": peer["cens_side"].tolist(),
        "cens_offset": peer["cens_offset"].tolist(),
        "cens_treated": peer["cens_treated"].tolist(),
        "score_lo": float(lo),
        "score_hi": float(hi),
        "m_max": meta["m_max"],
        "mu_o": meta["mu_o"],
        "V0_offset": meta["V0_offset"],
        "mu_loc": pr["mu_loc"],
        "mu_sd": pr["mu_sd"],
        "tau_scale": pr["tau_scale"],
        "logit_kappa_loc": pr["logit_kappa_loc"],
        "logit_epsilon_loc": pr["logit_epsilon_loc"],
        "logit_sd": pr["logit_sd"],
        "omega_a": pr["omega_a"],
        "omega_b": pr["omega_b"],
        "log_phi_loc": pr["log_phi_loc"],
        "log_sd_phi": pr["log_sd_phi"],
        "log_sb_loc": pr["log_sb_loc"],
        "log_st_loc": pr["log_st_loc"],
        "log_sd_sigma": pr["log_sd_sigma"],
        "log_tau_k_loc": pr["log_tau_k_loc"],
        "log_sd_window": pr["log_sd_window"],
        "eps_v": meta["eps_v"],
        "alpha_max": meta["alpha_max"],
    }


def init_unconstrained(meta: dict) -> np.ndarray:
    n = meta["n_patients"]
    parts = []
    for name, _length, tr in unconstrained_layout(n):
        parts.append(np.atleast_1d(unconstrain(tr, np.asarray(meta["init"][name], np.float64))))
    return np.concatenate(parts)


def check_points(meta: dict, k: int = 3) -> np.ndarray:
    """The init point and two perturbed points (fixed seed) of the unconstrained space."""
    base = init_unconstrained(meta)
    rng = np.random.default_rng(7)
    pts = [base]
    for scale in (0.3, 0.8)[: k - 1]:
        pts.append(base + scale * rng.standard_normal(base.size))
    return np.stack(pts)


# ----------------------------------------------------------------------------- summaries


def _scalar(v) -> float:
    return float(np.ravel(np.asarray(v))[0])


def save_draws(folder: Path, engine: str, draws: dict[str, np.ndarray]) -> None:
    """Group-parameter draws (chain, draw) of a fit, kept next to its JSON for later analysis."""
    np.savez_compressed(folder / f"draws-{engine}.npz", **{k: np.asarray(v) for k, v in draws.items()})


def summarise(draws: dict[str, np.ndarray]) -> dict:
    """Mean, sd, mcse of the mean, bulk/tail ESS and R-hat of each group parameter; draws (chain, draw)."""
    import arviz as az

    out = {}
    for name in GROUP:
        a = np.asarray(draws[name], np.float64)
        out[name] = {
            "mean": float(a.mean()),
            "sd": float(a.std(ddof=1)),
            "mcse_mean": _scalar(az.mcse(a, method="mean")),
            "ess_bulk": _scalar(az.ess(a, method="bulk")),
            "ess_tail": _scalar(az.ess(a, method="tail")),
            "r_hat": _scalar(az.rhat(a)),
        }
    return out


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "plasticity-rl",
        "jax",
        "jaxlib",
        "numpyro",
        "numpy",
        "arviz",
        "pystan",
        "httpstan",
        "pymc",
        "pytensor",
        "nutpie",
        "numba",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------- workers (one engine, one fit)


def worker_plasticity_rl(folder: Path, a) -> dict:
    import numpyro

    numpyro.set_host_device_count(a.chains)  # as the CLI does: one host device per chain
    import jax
    import jax.monitoring as monitoring

    compile_events = []
    names = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def listen(event, duration, **kw):
        if event in names:
            compile_events.append((time.perf_counter(), event, duration))

    monitoring.register_event_duration_secs_listener(listen)
    from plasticity_rl.inference import fit

    fd = fit_data(folder.name)
    x = fd.inputs()
    with np.load(folder / "inputs.npz") as saved:  # the data the peers read
        for k, v in x._asdict().items():
            if k in saved.files and not np.array_equal(np.asarray(v), saved[k]):
                raise SystemExit(f"re-simulated input {k} differs from {folder / 'inputs.npz'}")
    t0 = time.perf_counter()
    # The default model: the window's length sampled, as `plasticity-rl fit` does (and the peers).
    idata = fit(fd, chains=a.chains, warmup=a.warmup, draws=a.draws, seed=a.seed)
    mcmc_s = float(idata.posterior.attrs["sampling_seconds"])
    t_end = t0 + mcmc_s
    compile_s = sum(d for t, _, d in compile_events if t <= t_end + 1e-3)
    post = idata.posterior
    draws = {n: post[n].values for n in GROUP}
    save_draws(folder, "plasticity_rl", draws)
    return {
        "compile_s": compile_s,
        "sampling_s": mcmc_s - compile_s,
        "mcmc_run_s": mcmc_s,
        "divergences": int(idata.sample_stats["diverging"].values.sum()),
        "summary": summarise(draws),
        "chain_method": post.attrs.get("chain_method"),
        "devices": jax.local_device_count(),
        "dtype": "float32",
    }


def worker_stan(folder: Path, a) -> dict:
    import stan

    peer, meta = load(folder)
    code = (HERE / "peers" / "schema.stan").read_text()
    data = stan_data(peer, meta)
    t0 = time.perf_counter()
    posterior = stan.build(code, data=data, random_seed=a.seed)
    compile_s = time.perf_counter() - t0
    init = {k: v for k, v in meta["init"].items()}
    t1 = time.perf_counter()
    fit = posterior.sample(
        num_chains=a.chains, num_warmup=a.warmup, num_samples=a.draws, init=[init] * a.chains
    )
    sampling_s = time.perf_counter() - t1
    # fit[name]: (..., draws * chains), chains one after another
    # fit[name] of a scalar: (1, draws * chains), draw-major with the chain index fastest
    # (PyStan 3 flattens its (params, draws, chains) array in C order)
    draws = {n: np.asarray(fit[n]).reshape(a.draws, a.chains).T for n in GROUP}
    save_draws(folder, "stan", draws)
    div = int(np.asarray(fit["divergent__"]).sum())
    return {
        "compile_s": compile_s,
        "sampling_s": sampling_s,
        "divergences": div,
        "summary": summarise(draws),
        "dtype": "float64",
    }


def _pymc_model(folder: Path):
    sys.path.insert(0, str(HERE))
    from peers.pymc_model import build_model

    peer, meta = load(folder)
    return build_model(peer, meta)


def worker_nutpie(folder: Path, a) -> dict:
    import nutpie

    t0 = time.perf_counter()
    model = _pymc_model(folder)
    compiled = nutpie.compile_pymc_model(model)
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    trace = nutpie.sample(
        compiled,
        draws=a.draws,
        tune=a.warmup,
        chains=a.chains,
        cores=a.cores,
        seed=a.seed,
        progress_bar=False,
    )
    sampling_s = time.perf_counter() - t1
    return _pymc_trace_result(folder, "nutpie", trace, compile_s, sampling_s, backend="numba")


def worker_pymc(folder: Path, a) -> dict:
    import pymc as pm

    t0 = time.perf_counter()
    model = _pymc_model(folder)
    model.compile_logp()
    model.compile_dlogp()
    model.logp_dlogp_function()  # the joint function NUTS uses (C backend); later calls hit the cache
    compile_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    with model:
        trace = pm.sample(
            draws=a.draws,
            tune=a.warmup,
            chains=a.chains,
            cores=a.cores,
            random_seed=a.seed,
            progressbar=False,
            compute_convergence_checks=False,
        )
    sampling_s = time.perf_counter() - t1
    return _pymc_trace_result(folder, "pymc", trace, compile_s, sampling_s, backend="C")


def _pymc_trace_result(
    folder: Path, engine: str, trace, compile_s: float, sampling_s: float, backend: str
) -> dict:
    """Save an ArviZ trace's group draws and return the worker's record (nutpie and PyMC)."""
    draws = {n: trace.posterior[n].values for n in GROUP}
    save_draws(folder, engine, draws)
    div = int(trace.sample_stats["diverging"].values.sum())
    return {
        "compile_s": compile_s,
        "sampling_s": sampling_s,
        "divergences": div,
        "summary": summarise(draws),
        "dtype": "float64",
        "backend": backend,
    }


# ----------------------------------------------------------------------------- check workers


def check_numpyro(folder: Path, x64: bool) -> dict:
    import jax

    jax.config.update("jax_enable_x64", x64)
    import jax.numpy as jnp
    from numpyro.infer.util import potential_energy

    from plasticity_rl.inference.model import build
    from plasticity_rl.inference.prepare import ModelInputs

    # The model (priors, constants) comes from the config; the data from inputs.npz: simulating
    # under x64 would draw other data.
    model, spec, _ = build(fit_data(folder.name))
    with np.load(folder / "inputs.npz") as z:
        x = ModelInputs(**{k: jnp.asarray(z[k]) for k in ModelInputs._fields})
    _, meta = load(folder)
    n = meta["n_patients"]
    dtype = jnp.float64 if x64 else jnp.float32

    def neg_pe(vec):
        parts, i = {}, 0
        for name, length, _ in unconstrained_layout(n):
            parts[name] = vec[i : i + length] if name.startswith("z_") else vec[i]
            i += length
        return -potential_energy(model, (x,), {}, parts)

    f = jax.jit(jax.value_and_grad(neg_pe))
    out = []
    for p in check_points(meta):
        v, g = f(jnp.asarray(p, dtype))
        out.append({"logp": float(v), "grad": np.asarray(g, np.float64).tolist()})
    return {"points": out}


def check_stan(folder: Path) -> dict:
    import stan

    peer, meta = load(folder)
    posterior = stan.build(
        (HERE / "peers" / "schema.stan").read_text(), data=stan_data(peer, meta), random_seed=1
    )
    out = []
    for p in check_points(meta):
        out.append(
            {
                "logp": float(posterior.log_prob(p.tolist(), adjust_transform=True)),
                "grad": list(map(float, posterior.grad_log_prob(p.tolist()))),
            }
        )
    return {"points": out}


def check_pymc(folder: Path, mode: str | None) -> dict:
    """PyMC's log density (Jacobian included) in the C backend (pymc) or numba (what nutpie compiles)."""
    model = _pymc_model(folder)
    _, meta = load(folder)
    n = meta["n_patients"]
    value_name = {}
    for rv in model.free_RVs:
        value_name[rv.name] = model.rvs_to_values[rv].name
    logp = model.compile_logp(jacobian=True, mode=mode)
    dlogp = model.compile_dlogp(jacobian=True, mode=mode)
    out = []
    for p in check_points(meta):
        parts = split_unconstrained(p, n)
        point = {value_name[k]: np.asarray(v) for k, v in parts.items()}
        g = dlogp(point)  # ordered as model.value_vars
        by_name = {}
        i = 0
        for vv in model.value_vars:
            size = int(np.asarray(point[vv.name]).size)
            by_name[vv.name] = np.asarray(g[i : i + size])
            i += size
        grad = np.concatenate([np.atleast_1d(by_name[value_name[k]]) for k, _, _ in unconstrained_layout(n)])
        out.append({"logp": float(logp(point)), "grad": grad.tolist()})
    return {"points": out}


# ----------------------------------------------------------------------------- running subprocesses


def run_subprocess(
    cmd: list[str], log: Path, env: dict | None, timeout: float
) -> tuple[int, float, float, float]:
    """Run ``cmd``; returns (exit code, wall s, peak RSS MB of the largest process from wait4's
    rusage, peak summed RSS MB of the whole process tree, sampled every 0.5 s)."""
    import psutil

    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    tree_peak = 0.0
    ps = psutil.Process(proc.pid)
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        try:
            total = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            tree_peak = max(tree_peak, total / 2**20)
        except psutil.Error:
            pass
        if time.perf_counter() - t0 > timeout:
            os.killpg(proc.pid, 9)  # the process group this driver started for the fit
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.5)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, ru.ru_maxrss / 1024.0, tree_peak


def engine_env(engine: str, cache: Path) -> dict:
    """Fresh compile caches per fit, so compile_s is a cold compile."""
    env = dict(os.environ)
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    env["XDG_CACHE_HOME"] = str(cache)  # httpstan's model cache
    env["PYTENSOR_FLAGS"] = f"compiledir={cache / 'pytensor'}"
    env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    return env


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def fit_engine(engine: str, size: str, folder: Path, a) -> dict:
    cache = folder / f"cache-{engine}"
    out = folder / f"fit-{engine}.json"
    if out.exists():
        out.unlink()
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        engine,
        "--workdir",
        str(a.workdir),
        "--sizes",
        size,
        "--chains",
        str(a.chains),
        "--warmup",
        str(a.warmup),
        "--draws",
        str(a.draws),
        "--cores",
        str(a.cores),
        "--seed",
        str(a.seed),
    ]
    load0 = loadavg()
    print(
        f"[{time.strftime('%H:%M:%S')}] {engine} {size}: fitting ({a.chains} chains x {a.warmup} + {a.draws}), "
        f"load {load0}",
        flush=True,
    )
    code, wall, maxrss, tree = run_subprocess(
        cmd, folder / f"fit-{engine}.log", engine_env(engine, cache), a.timeout
    )
    shutil.rmtree(cache, ignore_errors=True)
    rec = {
        "engine": engine,
        "size": size,
        "chains": a.chains,
        "warmup": a.warmup,
        "draws": a.draws,
        "wall_s": round(wall, 1),
        "peak_mem_mb": round(maxrss, 1),
        "tree_peak_mem_mb": round(tree, 1),
        "load_before": load0,
        "load_after": loadavg(),
        "exit_code": code,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "window": "fitted",
    }  # tau_k sampled; records without this key held it fixed
    if code != 0 or not out.exists():
        if wall > a.timeout:
            rec["status"] = f"timeout after {wall / 60:.0f} min"
        elif code < 0:
            rec["status"] = f"killed (signal {-code}) after {wall / 60:.0f} min, unfinished"
        else:
            rec["status"] = f"failed (exit {code}); see {folder / f'fit-{engine}.log'}"
        print(f"    {engine} {size}: {rec['status']}", flush=True)
        return rec
    res = json.loads(out.read_text())
    rec.update(res)
    rec["status"] = "ok"
    print(
        f"    {engine} {size}: compile {res['compile_s']:.1f} s, sampling {res['sampling_s']:.1f} s, "
        f"min bulk ESS {min(s['ess_bulk'] for s in res['summary'].values()):.0f}, "
        f"divergences {res['divergences']}, peak {maxrss:.0f} MB",
        flush=True,
    )
    return rec


# ----------------------------------------------------------------------------- records and report


def agreement(rec: dict, ref: dict) -> tuple[bool, list[str]]:
    bad = []
    for name in GROUP:
        if (
            name not in rec["summary"] or name not in ref["summary"]
        ):  # a record of the older, fixed-window model
            bad.append(f"{name}: not in both fits (one is of the fixed-window model)")
            continue
        s, r = rec["summary"][name], ref["summary"][name]
        tol = AGREE_Z * math.sqrt(s["mcse_mean"] ** 2 + r["mcse_mean"] ** 2)
        if not abs(s["mean"] - r["mean"]) < tol:
            bad.append(f"{name}: {s['mean']:.4g} vs {r['mean']:.4g} (tol {tol:.2g})")
    return not bad, bad


def record(rec: dict) -> dict:
    """The public row of latest.json (plus context fields) from a fit record."""
    out = {k: rec.get(k) for k in ("engine", "size")}
    if rec.get("status") == "ok":
        summ = rec["summary"]
        bulk = min(s["ess_bulk"] for s in summ.values())
        out.update(
            {
                "compile_s": round(rec["compile_s"], 2),
                "sampling_s": round(rec["sampling_s"], 2),
                "min_bulk_ess": round(bulk, 1),
                "min_tail_ess": round(min(s["ess_tail"] for s in summ.values()), 1),
                "ess_per_s": round(bulk / rec["sampling_s"], 4),
                "divergences": rec["divergences"],
                "max_rhat": round(max(s["r_hat"] for s in summ.values()), 4),
            }
        )
    else:
        out.update(
            {
                k: None
                for k in (
                    "compile_s",
                    "sampling_s",
                    "min_bulk_ess",
                    "min_tail_ess",
                    "ess_per_s",
                    "divergences",
                    "max_rhat",
                )
            }
        )
    out["peak_mem_mb"] = rec.get("peak_mem_mb")
    out["agrees"] = rec.get("agrees")
    for k in (
        "status",
        "disagreements",
        "tree_peak_mem_mb",
        "chains",
        "warmup",
        "draws",
        "load_before",
        "load_after",
        "wall_s",
        "finished",
        "dtype",
        "window",
        "summary",
    ):
        if k in rec:
            out[k] = rec[k]
    return out


def merge_results(new: list[dict], path: Path) -> list[dict]:
    old = json.loads(path.read_text()) if path.exists() else []
    keyed = {(r["engine"], r["size"]): r for r in old}
    for r in new:
        keyed[(r["engine"], r["size"])] = r
    order = {s: i for i, s in enumerate(SIZES)}
    eng = {e: i for i, e in enumerate(ENGINES)}
    return sorted(keyed.values(), key=lambda r: (order.get(r["size"], 9), eng.get(r["engine"], 9)))


def ratios(records: list[dict]) -> dict[str, dict]:
    out = {}
    for size in SIZES:
        rows = [r for r in records if r["size"] == size and r.get("ess_per_s")]
        ours = next((r for r in rows if r["engine"] == "plasticity_rl"), None)
        if ours is None:
            continue
        # only fits of the same model: a record with the window fixed is not a peer of one with it fitted
        window = ours.get("window", "fixed")
        peers = [r for r in rows if r["engine"] != "plasticity_rl" and r.get("window", "fixed") == window]
        if peers:
            best = max(peers, key=lambda r: r["ess_per_s"])
            out[size] = {
                "ratio": ours["ess_per_s"] / best["ess_per_s"],
                "best_peer": best["engine"],
                "window": window,
            }
    return out


def time_to_posterior(records: list[dict]) -> dict[str, dict]:
    """Per size: plasticity_rl's compile + sampling seconds against each peer's.

    A peer stopped at ``--timeout`` (or killed) has no posterior, but its wall time is a lower
    bound on its time to one, which is enough to show it would have come in later than ours.
    """
    out = {}
    for size in SIZES:
        rows = [r for r in records if r["size"] == size]
        ours = next((r for r in rows if r["engine"] == "plasticity_rl" and r.get("status") == "ok"), None)
        if ours is None:
            continue
        window = ours.get("window", "fixed")
        peers = []
        for r in rows:
            if r["engine"] == "plasticity_rl" or r.get("window", "fixed") != window:
                continue
            if r.get("status") == "ok":
                peers.append(
                    {"engine": r["engine"], "total_s": r["compile_s"] + r["sampling_s"], "lower_bound": False}
                )
            elif any(w in (r.get("status") or "") for w in ("timeout", "killed")) and r.get("wall_s"):
                peers.append({"engine": r["engine"], "total_s": r["wall_s"], "lower_bound": True})
        if peers:
            total = ours["compile_s"] + ours["sampling_s"]
            out[size] = {
                "ours_s": total,
                "peers": peers,
                "below_all": all(total < p["total_s"] for p in peers),
            }
    return out


def _fmt(v, spec=""):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return format(v, spec)


def render_markdown(records: list[dict], versions: dict, results: Path = RESULTS) -> str:
    lines = [
        "# Fitting speed: plasticity_rl against Stan and PyMC",
        "",
        'Written by `python benchmarks/compare.py` (see `benchmarks/README.md`, section "Fitting speed against '
        'Stan and PyMC"). The `schema` model with the same priors and likelihood in every engine, fitted to the '
        "same simulated flagship data (small: 20 patients x 28 days, medium: 100 x 56, large: 400 x 56; "
        "8 steps a day). ESS and R-hat over the group parameters (13 with the window's length tau_k "
        "sampled; 12 in records whose window column says fixed, from before the default model fitted it); ESS/s = min bulk ESS / sampling seconds. "
        "`agrees`: every group parameter's posterior mean is within 4 sqrt(mcse^2 + mcse_ref^2) of "
        "plasticity_rl's. Peak memory: max RSS of the largest process of the fit (rusage); the tree column "
        "sums all its processes (sampled every 0.5 s).",
        "",
        "| size | engine | window | chains x (warm-up + draws) | compile s | sampling s | min bulk ESS | min tail ESS | "
        "bulk ESS/s | divergences | max R-hat | peak MB | tree peak MB | agrees | load avg (before → after) | finished |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for r in records:
        agrees = (
            "(reference)"
            if r["engine"] == "plasticity_rl" and r.get("status") == "ok"
            else _fmt(r.get("agrees"))
        )
        st = r.get("status")
        status = (
            ""
            if st in (None, "ok")
            else (
                " (not finished, see notes)"
                if ("killed" in st or "timeout" in st)
                else " (failed, see notes)"
            )
        )
        lb, la = r.get("load_before") or [None], r.get("load_after") or [None]
        lines.append(
            f"| {r['size']} | {r['engine']}{status} | {r.get('window', 'fixed')} | {r.get('chains')} x ({r.get('warmup')} + {r.get('draws')}) | "
            f"{_fmt(r.get('compile_s'), '.1f')} | {_fmt(r.get('sampling_s'), '.1f')} | "
            f"{_fmt(r.get('min_bulk_ess'), '.0f')} | {_fmt(r.get('min_tail_ess'), '.0f')} | "
            f"{_fmt(r.get('ess_per_s'), '.3g')} | {_fmt(r.get('divergences'))} | {_fmt(r.get('max_rhat'), '.3f')} | "
            f"{_fmt(r.get('peak_mem_mb'), '.0f')} | {_fmt(r.get('tree_peak_mem_mb'), '.0f')} | {agrees} | "
            f"{_fmt(lb[0], '.1f')} → {_fmt(la[0], '.1f')} | {r.get('finished', '')} |"
        )
    notes = [r for r in records if r.get("status") not in (None, "ok")]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {r['size']} {r['engine']}: {r['status']}." for r in notes]
    lines += ["", "## plasticity_rl ESS/s over the best peer's", ""]
    rat = ratios(records)
    if not rat:
        lines.append("(no size with both plasticity_rl and a peer)")
    for size, v in rat.items():
        # the target counts only with trustworthy fits: every engine's R-hat <= 1.01, no divergence, agreeing means
        same = [
            r
            for r in records
            if r["size"] == size and r.get("ess_per_s") and r.get("window", "fixed") == v["window"]
        ]
        bad = [f"{r['engine']} R-hat {r['max_rhat']:.3f}" for r in same if r["max_rhat"] > 1.01]
        bad += [f"{r['engine']} {r['divergences']} divergences" for r in same if r["divergences"]]
        bad += [
            f"{r['engine']} disagrees"
            for r in same
            if r["engine"] != "plasticity_rl" and r.get("agrees") is False
        ]
        if v["ratio"] < 3:
            verdict = "does NOT meet the 3x target"
        elif bad:
            verdict = "above 3x, but does NOT meet the target's conditions (" + "; ".join(bad) + ")"
        else:
            verdict = "meets the 3x target"
        lines.append(f"- {size}: **{v['ratio']:.2f}x** (best peer: {v['best_peer']}); {verdict}")
    lines += ["", "## Total time to posterior (compile + sampling)", ""]
    ttp = time_to_posterior(records)
    if not ttp:
        lines.append("(no size with both plasticity_rl and a peer)")
    for size, v in ttp.items():
        peers = "; ".join(
            f"{p['engine']} {'> ' if p['lower_bound'] else ''}{p['total_s']:.0f} s"
            + (" (stopped unfinished: a lower bound)" if p["lower_bound"] else "")
            for p in v["peers"]
        )
        verdict = "below every peer's" if v["below_all"] else "NOT below every peer's"
        lines.append(f"- {size}: plasticity_rl **{v['ours_s']:.0f} s**; {peers}: {verdict}")
    dis = [r for r in records if r.get("disagreements")]
    if dis:
        lines += ["", "## Disagreements with plasticity_rl's posterior means", ""]
        for r in dis:
            lines.append(f"- {r['size']} {r['engine']}: " + "; ".join(r["disagreements"]))
    check = results / "check.json"
    if check.exists():
        rows = json.loads(check.read_text())
        lines += [
            "",
            "## Log-density check (`--check`)",
            "",
            f"At 3 fixed points of the unconstrained space, each engine's log density (Jacobian included, "
            f"constants kept) against NumPyro's minus potential energy in float64; pass: < {CHECK_RTOL:g} "
            "relative for the value and for the largest gradient component. NumPyro in float32 (as it fits) "
            "is shown for information.",
            "",
            "| size | engine | point | log density | NumPyro (float64) | rel. diff | grad max rel. diff | pass |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in rows:
            lines.append(
                f"| {r['size']} | {r['engine']} | {r['point']} | {r['logp']:.10g} | {r['numpyro_logp']:.10g} | "
                f"{r['rel_diff']:.2e} | {r['grad_max_rel_diff']:.2e} | "
                f"{'(info)' if r['engine'] == 'numpyro-f32' else _fmt(r['passed'])} |"
            )
    cpu = cpu_name()
    lines += [
        "",
        "## Machine",
        "",
        f"{platform.machine()}, {cpu or 'unknown CPU'}, {os.cpu_count()} cores (shared with other workers), "
        f"{_mem_gb():.0f} GB; load average when this file was written: {loadavg()}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def _mem_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


# ----------------------------------------------------------------------------- check driver


def run_check(sizes, engines, a) -> bool:
    ok = True
    for size in sizes:
        folder = a.workdir / size
        jobs = [("numpyro-x64", "numpyro (float64)"), ("numpyro-f32", "numpyro (float32, as fitted)")]
        if "stan" in engines:
            jobs.append(("stan", "stan"))
        if "pymc" in engines:
            jobs.append(("pymc", "pymc (C backend)"))
        if "nutpie" in engines:
            jobs.append(("nutpie", "nutpie (pytensor numba backend)"))
        results = {}
        for job, label in jobs:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--check-worker",
                job,
                "--workdir",
                str(a.workdir),
                "--sizes",
                size,
            ]
            log = folder / f"check-{job}.log"
            code, wall, _, _ = run_subprocess(
                cmd, log, engine_env(job, folder / f"cache-check-{job}"), a.timeout
            )
            shutil.rmtree(folder / f"cache-check-{job}", ignore_errors=True)
            path = folder / f"check-{job}.json"
            if code != 0 or not path.exists():
                print(f"{size} {label}: FAILED (exit {code}); see {log}")
                ok = False
                continue
            results[job] = json.loads(path.read_text())["points"]
            print(f"{size} {label}: evaluated in {wall:.0f} s", flush=True)
        ref = results.get("numpyro-x64")
        if ref is None:
            return False
        lines = [
            f"\n--check, size {size}: log density at {len(ref)} points vs NumPyro float64 "
            f"(-potential energy); tolerance {CHECK_RTOL:g} relative",
            "| engine | point | log density | NumPyro | rel. diff | grad max rel. diff |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        table = []
        for job, label in jobs:
            if job not in results or job == "numpyro-x64":
                continue
            for i, (p, r) in enumerate(zip(results[job], ref)):
                rel = abs(p["logp"] - r["logp"]) / abs(r["logp"])
                g, gr = np.asarray(p["grad"]), np.asarray(r["grad"])
                grel = float(np.max(np.abs(g - gr)) / np.max(np.abs(gr)))
                passed = rel < CHECK_RTOL and grel < CHECK_RTOL
                # float32 NumPyro is reported for information: its rounding is larger than 1e-6
                if job != "numpyro-f32":
                    ok &= passed
                lines.append(
                    f"| {label} | {i} | {p['logp']:.10g} | {r['logp']:.10g} | {rel:.2e} | {grel:.2e} |"
                )
                table.append(
                    {
                        "engine": job,
                        "size": size,
                        "point": i,
                        "logp": p["logp"],
                        "numpyro_logp": r["logp"],
                        "rel_diff": rel,
                        "grad_max_rel_diff": grel,
                        "passed": passed,
                    }
                )
        print("\n".join(lines), flush=True)
        (folder / "check.json").write_text(json.dumps(table, indent=2) + "\n")
        (folder / "check.md").write_text("\n".join(lines) + "\n")
        if not a.no_write:  # kept beside the timings, rendered into compare.md
            a.results.mkdir(parents=True, exist_ok=True)
            path = a.results / "check.json"
            redone = {t["engine"] for t in table}  # rows of the engines not rerun are kept
            old = [
                r
                for r in (json.loads(path.read_text()) if path.exists() else [])
                if r["size"] != size or r["engine"] not in redone
            ]
            path.write_text(json.dumps(old + table, indent=2) + "\n")
    print("\ncheck:", "PASSED" if ok else "FAILED", flush=True)
    return ok


# ----------------------------------------------------------------------------- main


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="small", help="comma-separated: small, medium, large")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated: {', '.join(ENGINES)}")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument(
        "--cores",
        type=int,
        default=2,
        help="parallel chains for nutpie and PyMC (PyStan's httpstan uses one process per CPU)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="simulated data and fit logs")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder for latest.json and compare.md")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds before a fit is killed")
    ap.add_argument("--check", action="store_true", help="only compare log densities with NumPyro's")
    ap.add_argument("--pymc-all-sizes", action="store_true", help="run PyMC's NUTS beyond the small size")
    ap.add_argument(
        "--no-write", action="store_true", help="do not update results/latest.json and compare.md"
    )
    ap.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument(
        "--check-worker",
        choices=("numpyro-x64", "numpyro-f32", "stan", "pymc", "nutpie"),
        help=argparse.SUPPRESS,
    )
    return ap.parse_args(argv)


def main(argv=None):
    a = parse(argv)
    a.workdir = a.workdir.resolve()
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    for s in sizes:
        if s not in SIZES:
            raise SystemExit(f"unknown size {s!r}; allowed: {', '.join(SIZES)}")
    for e in engines:
        if e not in ENGINES:
            raise SystemExit(f"unknown engine {e!r}; allowed: {', '.join(ENGINES)}")

    if a.worker or a.check_worker:  # inside a subprocess: one job, result as JSON next to the data
        folder = a.workdir / sizes[0]
        if a.worker:
            res = globals()[f"worker_{a.worker}"](folder, a)
            res["versions"] = _versions()
            (folder / f"fit-{a.worker}.json").write_text(json.dumps(res, indent=2) + "\n")
        else:
            job = a.check_worker
            res = {
                "numpyro-x64": lambda: check_numpyro(folder, True),
                "numpyro-f32": lambda: check_numpyro(folder, False),
                "stan": lambda: check_stan(folder),
                "pymc": lambda: check_pymc(folder, None),
                "nutpie": lambda: check_pymc(folder, "NUMBA"),
            }[job]()
            (folder / f"check-{job}.json").write_text(json.dumps(res) + "\n")
        return

    for s in sizes:
        t0 = time.perf_counter()
        folder = make_data(s, a.workdir)
        meta = json.loads((folder / "meta.json").read_text())
        print(
            f"{s}: {meta['n_patients']} patients x {meta['days']} days ({meta['n_steps']} steps), "
            f"{meta['n_ema']} EMA ratings, {meta['n_visits']} + {meta['n_censored']} censored visit scores; "
            f"data in {folder} ({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    if a.check:
        raise SystemExit(0 if run_check(sizes, engines, a) else 1)

    new = []
    for s in sizes:
        folder = a.workdir / s
        recs = {}
        for e in engines:
            if e == "pymc" and s != "small" and not a.pymc_all_sizes:
                print(f"pymc {s}: skipped (PyMC's own NUTS runs at the small size only; --pymc-all-sizes)")
                continue
            recs[e] = fit_engine(e, s, folder, a)
        ref = recs.get("plasticity_rl")
        if ref is None or ref.get("status") != "ok":  # a reference from an earlier run at the same settings
            prev = folder / "fit-plasticity_rl.json"
            if prev.exists():
                old = json.loads(prev.read_text())
                ref = {"status": "ok", **old}
        for e, rec in recs.items():
            if rec.get("status") == "ok" and e != "plasticity_rl" and ref and ref.get("status") == "ok":
                rec["agrees"], rec["disagreements"] = agreement(rec, ref)
            elif e == "plasticity_rl":
                rec["agrees"] = None
        new += [record(r) for r in recs.values()]

    print(
        "\n| size | engine | compile s | sampling s | min bulk ESS | min tail ESS | ESS/s | div | max R-hat | "
        "peak MB | agrees |"
    )
    for r in new:
        print(
            f"| {r['size']} | {r['engine']} | {_fmt(r['compile_s'], '.1f')} | {_fmt(r['sampling_s'], '.1f')} | "
            f"{_fmt(r['min_bulk_ess'], '.0f')} | {_fmt(r['min_tail_ess'], '.0f')} | {_fmt(r['ess_per_s'], '.3g')} | "
            f"{_fmt(r['divergences'])} | {_fmt(r['max_rhat'], '.3f')} | {_fmt(r['peak_mem_mb'], '.0f')} | "
            f"{_fmt(r['agrees'])} |"
        )
    for size, v in ratios(new).items():
        print(f"{size}: plasticity_rl ESS/s / best peer ({v['best_peer']}) = {v['ratio']:.2f}x")
    if a.no_write:
        return
    a.results.mkdir(parents=True, exist_ok=True)
    merged = merge_results(new, a.results / "latest.json")
    (a.results / "latest.json").write_text(json.dumps(merged, indent=2) + "\n")
    (a.results / "compare.md").write_text(render_markdown(merged, _versions(), a.results))
    print(f"\nwrote {a.results / 'latest.json'} and {a.results / 'compare.md'}")


if __name__ == "__main__":
    main()
