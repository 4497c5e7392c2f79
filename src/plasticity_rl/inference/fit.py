"""Fit a belief variant to a trial: NUTS (default) or SVI, returning ArviZ InferenceData.

Chains. NumPyro's ``chain_method="parallel"`` needs one JAX device per chain; with fewer it
silently runs the chains one after another. Host devices can only be added (with
``numpyro.set_host_device_count``) before JAX initialises its backend, which a library cannot
guarantee, so ``chain_method="auto"`` picks ``"parallel"`` when there are enough devices and
``"vectorized"`` otherwise: the chains then run as one batched program (one vmap over chains)
on whatever cores XLA uses, instead of sequentially. A CLI that wants true parallel chains calls
``numpyro.set_host_device_count(n)`` first thing. The choice made is in ``idata.attrs``.
Parallel chains run through :mod:`plasticity_rl._engine.chains` (NumPyro's NUTS kernel in a
pmap that takes the data as an argument), so fits of same-shaped data sets compile once.

Groups of the returned InferenceData:

- ``posterior``: group means ``mu_*``, between-patient SDs ``tau_*``, z-scores ``z_*`` and the
  per-patient parameters (dim ``patient``), group parameters, the window's time constants
  (``tau_k_hours``, or ``tau_rise_hours`` and ``tau_decay_hours``), ``phi``, ``sigma_*``;
- ``sample_stats`` (NUTS): diverging, energy, lp, n_steps, tree_depth, acceptance_rate, step_size;
- ``log_likelihood``: ``obs`` (dim ``patient``): each patient's summed log-likelihood, the unit of
  PSIS-LOO (leave one patient out);
- ``posterior_predictive``: ``V_arm`` and ``S_arm`` (dims ``arm``, ``time``): per draw, the mean over
  an arm's patients of their beliefs at the start of each day (time 0 .. days), given the
  outcomes they experienced;
- ``observed_data``: ``ema`` (patient, day) and ``visits`` (patient, visit), NaN where missing;
- ``constant_data``: everything conditioned on (outcomes, schedules, plasticity inputs, D, E).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO, init_to_value
from numpyro.infer.autoguide import AutoMultivariateNormal, AutoNormal

from plasticity_rl._engine.chains import (
    BoundModel,
    block_inverse_mass,
    chain_transforms,
    group_block,
    run_parallel_nuts,
)
from plasticity_rl._engine.warmstart import STEPS as ADVI_STEPS
from plasticity_rl._engine.warmstart import advi
from plasticity_rl.config import Config, config_to_yaml
from plasticity_rl.inference.derived import derived_on_devices, patient_values
from plasticity_rl.inference.diagnostics import Thresholds, mixing_failures, mixing_table
from plasticity_rl.inference.model import (
    WINDOW_TIME_CONSTANTS,
    ModelSpec,
    belief_model,
    build,
    init_values,
    window_values,
)
from plasticity_rl.inference.prepare import FitData, ModelInputs, prepare
from plasticity_rl.observe import replicate_ratings

WARM_START_STREAM = 0x5741  # fold_in tag: the warm start's keys, apart from the chains'
PPC_STREAM = 0x9C  # the replicated data's streams: outcomes (JAX key), ratings (NumPy generator)

Method = Literal["nuts", "svi"]
ChainMethod = Literal["auto", "parallel", "vectorized", "sequential"]
Guide = Literal["normal", "mvn"]
MassMatrix = Literal["dense-group", "diagonal"]

_STATS = {  # numpyro extra field -> arviz sample_stats name
    "diverging": "diverging",
    "energy": "energy",
    "potential_energy": "lp",
    "num_steps": "n_steps",
    "accept_prob": "acceptance_rate",
    "adapt_state.step_size": "step_size",
}


@dataclass(frozen=True)
class FitSettings:
    """How to fit: the sampler's settings, as ``plasticity-rl fit``, ``run``, ``recover`` and ``sbc`` pass them."""

    method: str = "nuts"
    chains: int = 4
    warmup: int = 500
    draws: int = 1000
    seed: int = 0
    target_accept: float = 0.8  # NUTS target acceptance; raise it (0.9, 0.95) if a fit diverges
    integrated_loo: bool = True  # write loo_marginal.nc for compare (inference/marginal.py)
    fit_window: bool = True  # fit the kernel's time constants (False: hold them at the config's)
    fixed: tuple[tuple[str, float], ...] = ()  # parameters held at a value (name, value)
    likelihood: str | None = None  # "conditional" or "marginal"; None: what the config and data say
    contrasts: tuple[tuple[str, str], ...] = ()  # (arm_a, arm_b) pairs for contrasts.csv; (): every pair
    contrast_days: tuple[float, ...] = ()  # days of contrasts.csv; (): from the design (analysis.py)
    extend_draws: int = 0  # NUTS: up to this many more draws per chain while R-hat / ESS fail


def resolve_chain_method(chains: int, chain_method: ChainMethod = "auto") -> str:
    """``auto``: parallel if JAX has a device per chain, else vectorized (never silently sequential)."""
    if chain_method not in ("auto", "parallel", "vectorized", "sequential"):
        raise ValueError(f"chain_method {chain_method!r}; allowed: auto, parallel, vectorized, sequential")
    if chain_method != "auto":
        return chain_method
    if chains <= 1:
        return "sequential"
    return "parallel" if jax.local_device_count() >= chains else "vectorized"


# ----------------------------------------------------------------------------- samplers


def _numpyro_stats(extra: dict) -> dict:
    stats = {_STATS[k]: np.asarray(v) for k, v in extra.items()}
    stats["lp"] = -stats["lp"]  # arviz: lp is the log density, numpyro stores the potential
    stats["tree_depth"] = np.floor(np.log2(np.maximum(stats["n_steps"], 1))).astype(np.int64) + 1
    return stats


def _warm_start(spec, x, init, chains, seed):
    """ADVI's approximation (inference/warmstart.py): per-chain starts and the first mass matrix.

    Returns (z_start or None, inverse mass matrix or None, attrs). If ADVI gives non-finite
    values the chains start as without a warm start, and attrs say so.
    """
    t0 = time.perf_counter()
    transforms = chain_transforms(BoundModel(belief_model, spec), x)
    z0 = {k: t.inv(jnp.asarray(init[k])) for k, t in transforms.items()}
    # Its own stream, apart from the chains' keys (split(key(seed), chains), as MCMC.run).
    k_fit, k_draw = jax.random.split(jax.random.fold_in(jax.random.key(seed), WARM_START_STREAM))
    ws = advi(BoundModel(belief_model, spec), x, z0, k_fit)
    attrs = {
        "warm_start_seconds": round(time.perf_counter() - t0, 3),
        "warm_start_loss": ws.loss,
        "warm_start_drift": ws.drift,
    }
    if not ws.ok:
        attrs["warm_start"] = "failed (non-finite ADVI result): chains started at the prior centres"
        return None, None, attrs
    attrs["warm_start"] = (
        f"advi ({ADVI_STEPS} steps): chains start at draws from it, first mass matrix its variances"
    )
    return ws.chain_inits(k_draw, chains), ws.inverse_mass_matrix(), attrs


def _run_nuts(
    model,
    spec,
    x,
    init,
    chains,
    warmup,
    draws,
    seed,
    progress,
    chain_method,
    target_accept,
    max_tree_depth,
    warm_start=True,
    mass_matrix: MassMatrix = "dense-group",
    extend_draws: int = 0,
):
    z_start, imm, info = (
        _warm_start(spec, x, init, chains, seed)
        if warm_start
        else (None, None, {"warm_start": "none: chains started at the prior centres"})
    )
    transforms = chain_transforms(BoundModel(belief_model, spec), x)
    block = group_block(transforms) if mass_matrix == "dense-group" else ()
    info["mass_matrix"] = (
        f"dense over the group-level parameters ({', '.join(block)}); diagonal for the rest"
        if block
        else "diagonal"
    )
    needs_more = _needs_more_draws(chains, draws, info) if extend_draws else None
    if chain_method == "parallel":
        # Our own pmap of NumPyro's NUTS kernel, with the data as an argument: another data set
        # of the same shape reuses the compilation (inference/chains.py). Same sampler as MCMC.
        samples, extra = run_parallel_nuts(
            BoundModel(belief_model, spec),
            x,
            init,
            chains,
            warmup,
            draws,
            seed,
            target_accept,
            max_tree_depth,
            on_progress=_progress_callback(progress, chains),
            z_start=z_start,
            inverse_mass_matrix=imm,
            dense_block=block,
            extend_draws=extend_draws,
            needs_more=needs_more,
        )
        return _after_warmup(samples, extra, info)
    if block and imm is not None:
        sizes = {k: int(np.prod(np.shape(init[k]))) for k in transforms}
        imm = block_inverse_mass(imm, sizes, block)
    kernel = NUTS(
        model,
        target_accept_prob=target_accept,
        max_tree_depth=max_tree_depth,
        init_strategy=init_to_value(values=init),
        inverse_mass_matrix=imm,
        dense_mass=[block] if block else False,
    )
    # Data as arguments of the compiled sampler, not constants inside it: a data set of the same
    # shape then reuses the compilation (in memory, and via JAX's persistent cache across processes).
    mcmc = MCMC(
        kernel,
        num_warmup=warmup,
        num_samples=draws,
        num_chains=chains,
        chain_method=chain_method,
        progress_bar=progress is True,
        jit_model_args=True,
    )
    if z_start is not None and chains == 1:
        z_start = {k: v[0] for k, v in z_start.items()}
    mcmc.run(jax.random.key(seed), x, extra_fields=tuple(_STATS), init_params=z_start)
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    taken = 0
    while needs_more is not None and needs_more(samples, extra) and taken < extend_draws:
        # Continue every chain from its last state, with its adapted step size and mass matrix.
        n = min(draws, extend_draws - taken)
        mcmc.post_warmup_state = mcmc.last_state
        mcmc.num_samples = n
        mcmc.run(mcmc.post_warmup_state.rng_key, x, extra_fields=tuple(_STATS))
        more = mcmc.get_samples(group_by_chain=True)
        samples = {k: np.concatenate([v, np.asarray(more[k])], axis=1) for k, v in samples.items()}
        more = mcmc.get_extra_fields(group_by_chain=True)
        extra = {k: np.concatenate([v, np.asarray(more[k])], axis=1) for k, v in extra.items()}
        taken += n
    return _after_warmup(samples, extra, info)


def _after_warmup(samples: dict, extra: dict, info: dict):
    """(samples, stats, info) without the leading draws an extension counted as warm-up."""
    cut = int(info.get("discarded_draws", 0))
    samples = {k: v[:, cut:] for k, v in samples.items()}
    return samples, _numpyro_stats({k: np.asarray(v)[:, cut:] for k, v in extra.items()}), info


def _needs_more_draws(chains: int, round_draws: int, info: dict) -> Callable[[dict, dict], bool]:
    """Whether a NUTS fit's draws so far fail the checks that longer chains can fix.

    R-hat and ESS of the group-level parameters (the gating checks of
    :func:`~plasticity_rl.inference.diagnostics.diagnose`, same thresholds) can fail for two
    reasons that more draws cure: a chain still settling when the warm-up ended (its first draws
    are a transient, and more draws of it only dilute them slowly), or chains that mix slowly
    (more draws add ESS). So each check looks at the draws after every whole round of
    ``round_draws`` (longest first: all of them, then all but the first round, ...) and stops at
    the first that passes; ``info["discarded_draws"]`` says how many leading draws per chain that
    treats as warm-up (the caller drops them). Divergences are not cured by more draws (they call
    for a higher target acceptance or a reparameterisation): a fit with any is not extended.
    Every check is written into ``info["extension"]``, so the fit says why it sampled longer.

    Measured (flagship foil ``schema_ungated`` on an Intel Xeon, the run's sampler seed,
    benchmarks/README.md): after 1,000 draws R-hat 1.065 and bulk ESS 42 for tau_k, one chain
    still settling; all 2,000 draws still fail (R-hat 1.032), the second 1,000 alone pass (R-hat
    1.003, bulk ESS 853).
    """
    th = Thresholds()
    checks: list[str] = []

    def failures_of(samples: dict, cut: int) -> list[str]:
        group = {k: v[:, cut:] for k, v in samples.items() if np.ndim(v) == 2}
        failures = mixing_failures(mixing_table(group), chains, th)
        if chains < 2:  # R-hat cannot be computed at all; only the ESS can grow
            failures = [f for f in failures if "ESS" in f]
        return failures

    def needs_more(samples: dict, stats: dict) -> bool:
        draws = next(iter(samples.values())).shape[1]
        if int(np.asarray(stats["diverging"]).sum()) > th.divergences_max:
            checks.append(f"after {draws} draws per chain: divergent transitions, not extended")
            info["extension"] = "; ".join(checks)
            return False
        cuts = range(0, draws - round_draws + 1, round_draws)
        first = None
        for cut in cuts:
            failures = failures_of(samples, cut)
            first = failures if first is None else first
            if not failures:
                kept = (
                    "all of them"
                    if cut == 0
                    else f"the last {draws - cut} (the first {cut} count as warm-up)"
                )
                checks.append(f"after {draws} draws per chain: R-hat and ESS pass on {kept}")
                info["discarded_draws"] = cut
                info["extension"] = "; ".join(checks)
                return False
        shown = "; ".join(first[:3]) + (f" and {len(first) - 3} more" if len(first) > 3 else "")
        checks.append(f"after {draws} draws per chain: {shown}")
        info["extension"] = "; ".join(checks)
        return True

    return needs_more


def _progress_callback(progress, chains: int):
    """``progress``: False, True (a bar on stderr) or a callable(done, total) of iterations."""
    if callable(progress):
        return progress
    if not progress:
        return None
    from rich.progress import Progress  # the package's one progress mechanism (the CLI's too)

    bar: dict = {}

    def update(done, total):
        if "progress" not in bar:
            bar["progress"] = Progress(transient=False)
            bar["task"] = bar["progress"].add_task(f"NUTS, {chains} parallel chains", total=total)
            bar["progress"].start()
        bar["progress"].update(bar["task"], completed=done)
        if done >= total:
            bar["progress"].stop()

    return update


def _run_svi(model, x, init, draws_total, seed, progress, steps, guide_kind, learning_rate):
    guide_cls = {"normal": AutoNormal, "mvn": AutoMultivariateNormal}[guide_kind]
    guide = guide_cls(model, init_loc_fn=init_to_value(values=init))
    optim = numpyro.optim.ClippedAdam(step_size=learning_rate)
    svi = SVI(model, guide, optim, Trace_ELBO())
    k_fit, k_draw = jax.random.split(jax.random.key(seed))
    result = svi.run(k_fit, steps, x, progress_bar=progress is True)
    latent = guide.sample_posterior(k_draw, result.params, x, sample_shape=(draws_total,))
    samples = {k: np.asarray(v)[None] for k, v in latent.items()}  # one "chain"
    losses = np.asarray(result.losses, np.float64)
    thin = max(1, losses.shape[0] // 200)
    info = {
        "svi_guide": guide_cls.__name__,
        "svi_steps": int(steps),
        "svi_learning_rate": float(learning_rate),
        "svi_final_loss": float(np.mean(losses[-max(1, steps // 10) :])),
        "svi_loss_trace": losses[::thin],
    }
    return samples, None, info


# ----------------------------------------------------------------------------- InferenceData


def _idata(data: FitData, spec: ModelSpec, x: ModelInputs, samples, stats, derived_out, attrs):
    ll, V_arm, S_arm, ema_rep, visits_rep = derived_out
    coords = {
        "patient": np.asarray(data.patient_ids),
        "arm": list(data.arm_names),
        "day": np.arange(data.days),
        "visit": np.arange(data.visit_score.shape[1]),
        "step": np.arange(data.n_steps),
        "corrective_slot": np.arange(data.corrective.shape[2]),
        "time": np.arange(data.days + 1, dtype=np.float64),
        "dose": np.arange(data.schedules.dose_hours.shape[1]),
    }
    dims = {}
    posterior = {}
    for name, value in samples.items():
        posterior[name] = value
        if name.startswith("z_"):
            dims[name] = ["patient"]
    for name, value in patient_values(spec, samples).items():
        posterior[name] = value
        dims[name] = ["patient"]
    dims.update({"obs": ["patient"], "V_arm": ["arm", "time"], "S_arm": ["arm", "time"]})
    observed = {"ema": data.ema, "visits": data.visit_score}
    dims.update({"ema": ["patient", "day"], "visits": ["patient", "visit"]})
    constant = {
        "arm_index": data.arm_index,
        "everyday": data.everyday.astype(np.int8),
        "n_corr": data.n_corr,
        "corrective": data.corrective.astype(np.int8),
        "g_k": np.asarray(data.arm.g_k),
        "gate": np.asarray(data.arm.gate),
        "t_hours": np.asarray(data.schedules.t_hours),
        "dose_hours": np.asarray(data.schedules.dose_hours),
        "dose_amounts": np.asarray(data.schedules.dose_amounts),
        "visit_day": data.visit_day,
        "visit_step": data.visit_step,
        "visit_D": data.visit_D,
        "visit_E": data.visit_E,
        "visit_treated": data.visit_treated.astype(np.int8),
    }
    dims.update(
        {
            "arm_index": ["patient"],
            "everyday": ["patient", "step"],
            "n_corr": ["patient", "step"],
            "corrective": ["patient", "step", "corrective_slot"],
            "g_k": ["arm", "step"],
            "gate": ["arm", "step"],
            "t_hours": ["step"],
            "dose_hours": ["arm", "dose"],
            "dose_amounts": ["arm", "dose"],
            **{
                k: ["patient", "visit"]
                for k in ("visit_day", "visit_step", "visit_D", "visit_E", "visit_treated")
            },
        }
    )
    idata = az.from_dict(
        posterior=posterior,
        sample_stats=stats,
        log_likelihood={"obs": ll},
        # The replicated ratings as float16 (steps of 0.0005 on the 0-1 EMA scale, 0.03 MADRS points
        # near 60): a data set per draw, in half the space of float32
        # (as float32 the flagship's replicated EMA alone took 73 MB).
        posterior_predictive={
            "V_arm": V_arm,
            "S_arm": S_arm,
            "ema": ema_rep.astype(np.float16),
            "visits": visits_rep.astype(np.float16),
        },
        observed_data=observed,
        constant_data=constant,
        coords=coords,
        dims=dims,
    )
    idata.posterior_predictive["time"].attrs["units"] = "days (beliefs at the start of each day)"
    scalars = {k: v for k, v in attrs.items() if not isinstance(v, np.ndarray)}
    for group in idata.groups():
        idata[group].attrs.update(attrs if group == "posterior" else scalars)
    return idata


def fit(
    data,
    cfg: Config | None = None,
    variant: str | None = None,
    method: Method = "nuts",
    chains: int = 4,
    warmup: int = 500,
    draws: int = 1000,
    seed: int = 0,
    progress: bool | Callable[[int, int], None] = False,
    *,
    chain_method: ChainMethod = "auto",
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    warm_start: bool = True,
    mass_matrix: MassMatrix = "dense-group",
    extend_draws: int = 0,
    fit_window: bool = True,
    fixed: dict[str, float] | None = None,
    likelihood: str | None = None,
    svi_steps: int = 5000,
    svi_guide: Guide = "normal",
    svi_learning_rate: float = 0.01,
) -> az.InferenceData:
    """Fit ``variant`` (default: the data's) to ``data`` (Simulation, tables dict + ``cfg``, FitData).

    ``method="svi"`` is an approximation (mean-field ``AutoNormal`` or full-rank
    ``AutoMultivariateNormal``); its InferenceData says so in ``attrs["approximate"]`` and holds
    ``chains * draws`` guide draws as one chain, with no sample_stats.
    ``progress``: True shows a progress bar; a callable gets ``(iterations done, total)``
    (parallel chains: after every chunk of iterations).
    ``warm_start`` (NUTS): start each chain at a draw from a short ADVI fit, with its variances
    as the first warm-up window's mass matrix (inference/warmstart.py); the sampler is
    otherwise unchanged. ``idata.attrs["warm_start"]`` says what was done.
    ``mass_matrix`` (NUTS): ``"dense-group"`` adapts one dense block over the group-level
    parameters and a diagonal for the per-patient z-scores (inference/chains.py ``group_block``:
    ~25 % fewer gradients per draw at flagship size); ``"diagonal"`` is NumPyro's default.
    ``extend_draws`` (NUTS): if the group-level parameters fail R-hat or ESS after ``draws``
    (and no transition diverged), every chain keeps sampling, in rounds of ``draws``, until the
    draws after some whole round pass (all of them first; else all but the first round, counted
    as warm-up: a chain that was still settling) or ``extend_draws`` more draws per chain are
    taken. ``attrs["draws"]`` is the number kept, ``attrs["discarded_draws"]`` those counted as
    warm-up, ``attrs["extra_draws"]`` how many were sampled beyond ``draws``,
    ``attrs["extension"]`` what each check found. The diagnostics still gate the
    result, so a fit that fails after the extension says so.
    ``fit_window``: fit the plasticity kernel's time constants (default; the window's length in
    humans is unknown) or hold them at the config's values. ``attrs["window"]`` says which.
    ``fixed``: parameters held at a value instead of fitted (name -> value, on top of the
    config's ``model.fixed``); they have no draws, and ``attrs["fixed"]`` (JSON) records them.
    ``likelihood``: ``"conditional"`` (beliefs follow the logged outcomes) or ``"marginal"`` (the
    outcomes integrated out, inference/filter.py); default: conditional where the config says
    the trial logs every outcome (``observations.outcomes_recorded``) and the data hold them,
    else marginal. ``attrs["likelihood"]`` records it.
    """
    if method not in ("nuts", "svi"):
        raise ValueError(f"method {method!r}; allowed: 'nuts' (default) or 'svi' (approximate)")
    if mass_matrix not in ("dense-group", "diagonal"):
        raise ValueError(f"mass_matrix {mass_matrix!r}; allowed: 'dense-group' (default) or 'diagonal'")
    for name, value, low in (
        ("chains", chains, 1),
        ("warmup", warmup, 0),
        ("draws", draws, 1),
        ("extend_draws", extend_draws, 0),
    ):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    fd = prepare(data, cfg, variant)
    model, spec, x = build(fd, fit_window=fit_window, fixed=fixed, likelihood=likelihood)
    init = init_values(spec, fd.n_patients)
    w = spec.window
    attrs = {
        "created_by": "plasticity_rl",
        "inference_library": "numpyro",
        "inference_library_version": numpyro.__version__,
        "variant": spec.variant,
        "method": method,
        "seed": int(seed),
        "n_patients": fd.n_patients,
        "config_yaml": config_to_yaml(fd.config),
        "window": (
            f"fitted: {', '.join(w.params)} (log-normal priors around the config's values)"
            if w.fitted
            else (
                "held at "
                + ", ".join(
                    f"{n} = {getattr(w, n):g}" for n in WINDOW_TIME_CONSTANTS if n in spec.fixed_values
                )
                if w.held
                else "fixed at the config's kernel"
            )
            + ("" if fit_window else " (fit_window=False)")
            + ("" if fd.has_doses else " (no patient is dosed)")
        ),
        "window_kernel": w.kernel,
        "window_gamma_shape": w.gamma_shape,
        "window_saturation": w.saturation,
        "fixed": json.dumps(spec.fixed_values, sort_keys=True),
        "likelihood": spec.likelihood,
        "data_used": json.dumps(fd.usage(), sort_keys=True),
    }
    t0 = time.perf_counter()
    if method == "nuts":
        cm = resolve_chain_method(chains, chain_method)
        samples, stats, info = _run_nuts(
            model,
            spec,
            x,
            init,
            chains,
            warmup,
            draws,
            seed,
            progress,
            cm,
            target_accept,
            max_tree_depth,
            warm_start,
            mass_matrix,
            int(extend_draws),
        )
        taken = next(iter(samples.values())).shape[1]
        attrs.update(
            {
                "approximate": "no",
                "chains": chains,
                "warmup": warmup,
                "draws": taken,
                "draws_requested": draws,
                "extend_draws": int(extend_draws),
                # draws per chain sampled beyond those asked for (kept or counted as warm-up)
                "extra_draws": taken + int(info.get("discarded_draws", 0)) - draws,
                "chain_method": cm,
                "target_accept": target_accept,
                "max_tree_depth": max_tree_depth,
                "mass_matrix_requested": mass_matrix,  # attrs["mass_matrix"] describes the result
                "warm_start_requested": int(warm_start),
            }
        )
    else:
        samples, stats, info = _run_svi(
            model, x, init, chains * draws, seed, progress, svi_steps, svi_guide, svi_learning_rate
        )
        attrs.update(
            {
                "approximate": "yes: variational (SVI) fit; posterior spread is typically "
                "underestimated and no MCMC diagnostics apply. Use method='nuts' for results.",
                "draws": chains * draws,
            }
        )
    attrs["sampling_seconds"] = round(time.perf_counter() - t0, 3)
    attrs.update(info)

    samples.update(window_values(spec, samples))
    keys = list(spec.fitted)
    flat = {k: v for k, v in samples.items()}
    flat.update(patient_values(spec, samples))
    lead = next(iter(samples.values())).shape[:2]
    theta = {k: jnp.asarray(flat[k].reshape((math.prod(lead),) + flat[k].shape[2:])) for k in keys}
    t1 = time.perf_counter()
    # The replicates' own streams of the seed (the sampler's key is jax.random.key(seed)): the
    # outcomes a marginal fit's replicates draw, in JAX; the ratings, on the host.
    ppc_key = jax.random.fold_in(jax.random.key(seed), PPC_STREAM)
    ll, V_arm, S_arm, V_ema, v_mean, v_sd = derived_on_devices(
        spec, x, theta, len(fd.arm_names), fd.steps_per_day, ppc_key
    )
    phi = None
    if spec.has_ema:  # fitted, or held at a value (--fix phi=...)
        phi = theta["phi"] if "phi" in theta else np.full(math.prod(lead), spec.fixed_values["phi"])
    ema_rep, visits_rep = replicate_ratings(
        np.random.default_rng([int(seed), PPC_STREAM]), np.asarray(V_ema), phi, np.asarray(v_mean),
        np.asarray(v_sd), np.isfinite(fd.ema) & spec.has_ema, np.isfinite(fd.visit_score) & spec.has_visits,
    )  # fmt: skip
    out = tuple(np.asarray(o).reshape(lead + o.shape[1:]) for o in (ll, V_arm, S_arm, ema_rep, visits_rep))
    attrs["derived_seconds"] = round(time.perf_counter() - t1, 3)
    return _idata(fd, spec, x, samples, stats, out, attrs)
