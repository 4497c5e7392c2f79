"""The NumPyro model of any registered belief variant.

Given the parameters, beliefs are deterministic (outcomes are observed), so the likelihood is
:func:`plasticity_rl.models.run_beliefs` - the recurrence the simulator runs - over the cohort,
followed by the two observation channels of :mod:`plasticity_rl.observe` (the simulator's):

- EMA: y_pd ~ Beta(V phi, (1 - V) phi), V at the end of day d;
- visits: M ~ Normal(m_max (1 - V) - D - E, sigma), V at the start of the visit's step, sigma
  ``sigma_baseline`` before the arm's first treatment and ``sigma_treated`` after. Scores are
  clipped to 0-60 when recorded, so a score at 0 or 60 is a censored observation (its term is
  the tail probability), which is also what the simulator does.

Per-patient parameters (the variant's ``patient_params``) are hierarchical and non-centred:
theta_i = mu + tau z_i, z_i ~ Normal(0, 1). Group parameters (kappa, epsilon, omega, alpha_T where
the variant uses them) sit on their constrained scales; priors are weakly informative and
centred on the config's values (``Priors.from_config``), with the families and widths of the
parameter table (:mod:`plasticity_rl.params`). Any of them can be held fixed instead
(``ModelSpec.fixed``: the config's ``model.fixed`` and ``fit(fixed=...)``).

The window's shape is fitted too (its length in humans is unknown: a parameter to sweep and to
fit, not a constant): the kernel's time constants (``tau_k_hours`` for the gamma kernel; ``tau_rise_hours``
and ``tau_decay_hours`` for diffexp) are group parameters with log-normal priors around the
config's values, and each arm's drive g(k_j) is recomputed from its doses by
:func:`plasticity_rl.plasticity.arm_drive`, the simulator's function. ``WindowSpec.fitted`` is
False when no patient is dosed (nothing to learn it from) or when the caller fixes it.
m_max, D(t), E(t), mu_o, V0_offset, the kernel's family and shape n, the saturation and the acute
gate are fixed from the config.

:func:`patient_log_lik` is the one place the likelihood is written: the model adds its sum as a
factor, and the fit calls it again per draw for the pointwise (per-patient) log-likelihood LOO
needs. Missing ratings drop only their term; the double-``where`` pattern (safe placeholder
values under the mask) keeps gradients finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions.transforms import SigmoidTransform

from plasticity_rl.config import Config
from plasticity_rl.inference.filter import marginal_log_lik as filtered_log_lik
from plasticity_rl.inference.prepare import FitData, ModelInputs
from plasticity_rl.models import BeliefModel, Trajectory, get_model, run_beliefs
from plasticity_rl.models.moments import belief_moments
from plasticity_rl.observe import beliefs_at_step_start, ema_log_lik, visit_log_lik, visit_mean, visit_sd
from plasticity_rl.params import PARAMS, config_value, param
from plasticity_rl.plasticity import KernelParams, arm_drive
from plasticity_rl.table_checks import DataError

TAU_INIT = 0.3  # the between-patient SDs' starting value for NUTS and SVI


@dataclass(frozen=True)
class Priors:
    """Each fitted parameter's prior centre: its value in the config (hashable: a static argument).

    The priors' families and widths are in the parameter table (:mod:`plasticity_rl.params`).
    """

    centres: tuple[tuple[str, float], ...]  # name -> config value (patient level: the population mean)

    @staticmethod
    def from_config(cfg: Config, model: BeliefModel) -> Priors:
        names = list(model.patient_params) + list(model.group_params)
        names += [p.name for p in PARAMS.values() if p.applies]  # window and observation parameters
        centres = []
        for name in names:
            value = config_value(cfg, name)
            centres.append((name, float(getattr(value, "mean", value))))
        return Priors(tuple(centres))

    def centre(self, name: str) -> float:
        value = dict(self.centres)[name]
        prior = param(name).prior
        return max(value, prior[2]) if prior[0] == "log_normal" else value


def prior_of(name: str, centre: float):
    """The prior of a group-level site, from its row in the parameter table."""
    kind, *args = param(name).prior
    if kind == "logit_normal":
        return dist.TransformedDistribution(dist.Normal(_logit(centre), args[0]), SigmoidTransform())
    if kind == "beta":
        return dist.Beta(*args)
    if kind == "log_normal":
        return dist.LogNormal(math.log(centre), args[0])
    raise ValueError(f"parameter {name!r}: no group-level prior of kind {kind!r}")


def prior_start(name: str, centre: float) -> float:
    """Where NUTS and SVI start a group-level site: its prior's centre (a Beta prior's mean)."""
    kind, *args = param(name).prior
    return args[0] / (args[0] + args[1]) if kind == "beta" else centre


WINDOW_TIME_CONSTANTS = ("tau_k_hours", "tau_rise_hours", "tau_decay_hours")  # the kernel's, in hours


def window_was_fitted(posterior) -> bool:
    """Whether a fit's posterior (or any mapping of its variables) holds the window's time constants."""
    return any(n in posterior for n in WINDOW_TIME_CONSTANTS)


@dataclass(frozen=True)
class WindowSpec:
    """The plasticity kernel: its family and fixed shape, and the time constants' prior centres."""

    kernel: str  # "gamma" or "diffexp" (config.plasticity.kernel)
    gamma_shape: float
    saturation: float
    tau_k_hours: float
    tau_rise_hours: float
    tau_decay_hours: float
    fitted: bool  # time constants sampled (True) or fixed at the values above
    held: bool = False  # fixed at values other than the config's (the drive is recomputed)

    @staticmethod
    def from_config(cfg: Config, fitted: bool) -> WindowSpec:
        pl = cfg.plasticity
        return WindowSpec(
            pl.kernel,
            float(pl.gamma_shape),
            float(pl.saturation),
            float(pl.tau_k_hours),
            float(pl.tau_rise_hours),
            float(pl.tau_decay_hours),
            bool(fitted),
        )

    def holding(self, fixed: dict[str, float]) -> WindowSpec:
        """This window with any time constants in ``fixed`` held at their values (not fitted)."""
        held = {n: float(v) for n, v in fixed.items() if n in WINDOW_TIME_CONSTANTS}
        if not held:
            return self
        return replace(self, fitted=False, held=True, **held)

    @property
    def params(self) -> tuple[str, ...]:
        """The window's parameters in theta (empty when fixed)."""
        if not self.fitted:
            return ()
        return ("tau_k_hours",) if self.kernel == "gamma" else ("tau_rise_hours", "tau_decay_hours")

    def sampled_centres(self) -> dict[str, float]:
        """The sampled sites (each log-normal around its centre, hours); empty when fixed.

        diffexp samples tau_rise and the gap to tau_decay (see :func:`window_values`).
        """
        if not self.fitted:
            return {}
        if self.kernel == "gamma":
            return {"tau_k_hours": self.tau_k_hours}
        return {
            "tau_rise_hours": self.tau_rise_hours,
            "window_gap_hours": self.tau_decay_hours - self.tau_rise_hours,
        }

    def kernel_params(self, theta: dict | None = None) -> KernelParams:
        """KernelParams with the time constants from ``theta`` where fitted, else the fixed ones."""
        th = theta if self.fitted and theta is not None else {}
        return KernelParams(
            0 if self.kernel == "gamma" else 1,
            self.gamma_shape,
            th.get("tau_k_hours", self.tau_k_hours),
            th.get("tau_rise_hours", self.tau_rise_hours),
            th.get("tau_decay_hours", self.tau_decay_hours),
        )


@dataclass(frozen=True)
class ModelSpec:
    """Static description of one fit's model: variant, priors, channels, constants, fixed parameters."""

    variant: str
    priors: Priors
    has_ema: bool
    has_visits: bool
    m_max: float
    mu_o: float
    V0_offset: float
    window: WindowSpec
    fixed: tuple[tuple[str, float], ...] = ()  # parameters held at a value instead of fitted
    # "conditional": beliefs follow the logged outcomes; "marginal": outcomes integrated out
    # (inference/filter.py), for trials that record ratings but not every outcome.
    likelihood: str = "conditional"
    n_max: int = 0  # most corrective experiences in one session (the marginal likelihood's loop)

    @property
    def belief_model(self) -> BeliefModel:
        return get_model(self.variant)

    @property
    def fixed_values(self) -> dict[str, float]:
        return dict(self.fixed)

    @property
    def patient_params(self) -> tuple[str, ...]:
        """The variant's per-patient parameters that this fit estimates (hierarchically)."""
        return tuple(n for n in self.belief_model.patient_params if n not in self.fixed_values)

    @property
    def group_params(self) -> tuple[str, ...]:
        """The variant's group-level belief parameters that this fit estimates."""
        return tuple(n for n in self.belief_model.group_params if n not in self.fixed_values)

    @property
    def observation_params(self) -> tuple[str, ...]:
        """The observation channels' parameters this fit estimates (phi, sigma_*)."""
        names = (["phi"] if self.has_ema else []) + (
            ["sigma_baseline", "sigma_treated"] if self.has_visits else []
        )
        return tuple(n for n in names if n not in self.fixed_values)

    @property
    def fitted(self) -> tuple[str, ...]:
        """Every parameter this fit estimates, in the order the model samples them."""
        return self.patient_params + self.group_params + self.window.params + self.observation_params

    @staticmethod
    def from_data(
        data: FitData,
        variant: str | None = None,
        fit_window: bool = True,
        fixed: dict[str, float] | None = None,
        likelihood: str | None = None,
    ) -> ModelSpec:
        variant = variant or data.variant
        fixed = check_fixed(variant, {**data.config.model.fixed, **(fixed or {})}, data.config)
        likelihood = check_likelihood(data, likelihood)
        window = WindowSpec.from_config(data.config, fit_window and data.has_doses)
        window = window.holding(fixed)
        return ModelSpec(
            variant=variant,
            priors=Priors.from_config(data.config, get_model(variant)),
            has_ema=data.has_ema,
            has_visits=data.has_visits,
            m_max=data.m_max,
            mu_o=data.fixed["mu_o"],
            V0_offset=data.fixed["V0_offset"],
            window=window,
            fixed=tuple(sorted(fixed.items())),
            likelihood=likelihood,
            n_max=max_session_size(data),
        )


LIKELIHOODS = ("conditional", "marginal")


def default_likelihood(data: FitData) -> str:
    """What the data supports: conditional where the trial logs every outcome, else marginal."""
    return "conditional" if data.config.observations.outcomes_recorded and data.has_outcomes else "marginal"


def check_likelihood(data: FitData, likelihood: str | None) -> str:
    """``likelihood`` (or the data's default) checked against what the data holds."""
    if likelihood is None:
        likelihood = default_likelihood(data)
    if likelihood not in LIKELIHOODS:
        raise DataError([f"likelihood: got {likelihood!r}; allowed: {', '.join(LIKELIHOODS)}"])
    if likelihood == "conditional" and not data.has_outcomes:
        raise DataError(
            [
                "likelihood: got 'conditional', but the data log no everyday outcomes (no events "
                "table); allowed here: 'marginal' (the outcomes integrated out)"
            ]
        )
    if likelihood == "marginal":
        shared = data.shared_visit_steps()
        if shared:
            listed = "; ".join(f"patient {p}: days {a:g} and {b:g}" for p, a, b in shared)
            raise DataError(
                [
                    f"visits table: two recorded visits of one patient fall on one step ({listed}); "
                    "the marginal likelihood takes at most one visit per step: drop or merge "
                    "them, or use a finer experiment.steps_per_day"
                ]
            )
    return likelihood


def max_session_size(data: FitData) -> int:
    """The most corrective experiences any session of the data or the config's arms delivers."""
    scheduled = int(np.max(data.arm.session_n, initial=0))
    return max(scheduled, int(np.max(data.n_corr, initial=0)))


def check_fixed(variant: str, fixed: dict, cfg: Config) -> dict[str, float]:
    """``fixed`` checked against the table and the variant: a clear error for a name or value it cannot take."""
    model = get_model(variant)
    kernel = cfg.plasticity.kernel
    uses = set(model.patient_params) | set(model.group_params) | {"phi", "sigma_baseline", "sigma_treated"}
    uses |= {"tau_k_hours"} if kernel == "gamma" else {"tau_rise_hours", "tau_decay_hours"}
    problems = []
    for name, value in fixed.items():
        if name not in uses:
            problems.append(
                f"fixed {name!r}: not a parameter of {variant!r} with the {kernel} kernel; "
                f"allowed: {sorted(uses)}"
            )
            continue
        problem = param(name).check_value(value, f"fixed {name}")
        if problem:
            problems.append(problem)
    if kernel == "diffexp" and len({"tau_rise_hours", "tau_decay_hours"} & set(fixed)) == 1:
        problems.append("fixed: hold both tau_rise_hours and tau_decay_hours, or neither")
    if problems:
        raise ValueError("; ".join(problems))
    return {k: float(v) for k, v in fixed.items()}


def with_fixed(spec: ModelSpec, theta: dict, n_patients: int) -> dict:
    """``theta`` with every fixed parameter added (patient level: the same value for each patient)."""
    if not spec.fixed:
        return theta
    out = dict(theta)
    for name, value in spec.fixed:
        if name in out:
            continue
        level = param(name).level
        out[name] = jnp.full((n_patients,), value, jnp.float32) if level == "patient" else jnp.float32(value)
    return out


def _logit(x: float) -> float:
    return math.log(x / (1.0 - x))


# ----------------------------------------------------------------------------- likelihood


def window_values(spec: ModelSpec, samples: dict) -> dict:
    """The window's deterministic parameters from its sampled sites (any leading draw shape).

    diffexp samples tau_rise and the gap to tau_decay, so the two can never swap (the kernel is
    the same function of them swapped: a two-mode posterior).
    """
    if spec.window.fitted and spec.window.kernel == "diffexp":
        return {"tau_decay_hours": samples["tau_rise_hours"] + samples["window_gap_hours"]}
    return {}


def cohort_drive(spec: ModelSpec, theta: dict, x: ModelInputs):
    """(arms, T) g(k_j): recomputed from the doses with theta's time constants, or the config's."""
    if not spec.window.fitted and not spec.window.held:
        return x.g_k
    return arm_drive(
        x.t_hours, x.dose_hours, x.dose_amounts, spec.window.kernel_params(theta), spec.window.saturation
    )


def group_params(spec: ModelSpec, theta: dict) -> dict:
    """The scalars run_beliefs reads besides the per-patient ones (fixed or fitted)."""
    out = {"mu_o": spec.mu_o, "V0_offset": spec.V0_offset}
    for name in spec.belief_model.group_params:
        out[name] = theta[name] if name in theta else spec.fixed_values[name]
    return out


def cohort_trajectories(
    spec: ModelSpec, theta: dict, x: ModelInputs, dense_session_maps: bool = True
) -> tuple[Trajectory, jax.Array]:
    """run_beliefs over the whole cohort (one scan, batched carry); trajectories and V0 (N,).

    ``session_steps`` are the steps that may hold a session, so run_beliefs applies the session
    (as an affine map, for the models where it is one) only there, with a fast reverse pass;
    ``any_session`` is the cohort-wide session flag the branching fallback reads. The session
    maps are laid out per step (``dense_session_maps``), the faster layout to differentiate;
    pass False where the trajectories are only evaluated, many at once.
    """
    model = spec.belief_model
    theta = with_fixed(spec, theta, x.arm_index.shape[0])
    p = {**group_params(spec, theta), **{n: theta[n] for n in model.patient_params}}
    g_k = cohort_drive(spec, theta, x)
    if spec.likelihood == "marginal":
        return expected_trajectories(spec, p, g_k, x), model.initial(p).V
    traj = run_beliefs(
        model,
        p,
        g_k[x.arm_index],
        x.gate[x.arm_index],
        x.everyday,
        x.corrective,
        x.n_corr,
        any_session=x.session_anywhere,
        session_steps=x.session_steps,
        unroll=1 if model.affine_session else 4,
        dense_session_maps=dense_session_maps,
    )
    return traj, model.initial(p).V


def expected_trajectories(spec: ModelSpec, p: dict, g_k, x: ModelInputs) -> Trajectory:
    """The beliefs' expectation over the unrecorded outcomes (the marginal likelihood's curves)."""
    model = spec.belief_model
    a = x.arm_index
    mom = belief_moments(model, p, g_k[a], x.gate[a], spec.mu_o, x.n_corr, x.session_p[a], spec.n_max)
    r = model.rates(p, g_k[a].T, x.gate[a].T)  # time-major: parameters broadcast over steps
    alpha_neg = r["alpha_neg"].T if "alpha_neg" in r else None
    return Trajectory(alpha=r["alpha"].T, alpha_neg=alpha_neg, V=mom.mV, S=mom.mS)


def sampled_trajectories(spec: ModelSpec, theta: dict, x: ModelInputs, key) -> tuple[Trajectory, jax.Array]:
    """The beliefs under everyday and corrective outcomes drawn from their distributions.

    What the marginal likelihood integrates over, drawn once: everyday outcomes ~ Bernoulli(mu_o),
    each corrective experience of an attended session ~ Bernoulli(p_c) of its arm and step; then
    the recurrence the conditional likelihood runs. For a posterior predictive draw of data
    whose outcomes were not recorded.
    """
    k_every, k_corr = jax.random.split(key)
    everyday = jax.random.bernoulli(k_every, spec.mu_o, x.everyday.shape).astype(x.everyday.dtype)
    p_c = x.session_p[x.arm_index][..., None]  # (N, T, 1)
    corrective = jax.random.bernoulli(k_corr, p_c, x.corrective.shape).astype(x.corrective.dtype)
    drawn = x._replace(everyday=everyday, corrective=corrective)
    return cohort_trajectories(
        replace(spec, likelihood="conditional"), theta, drawn, dense_session_maps=False
    )


def marginal_patient_log_lik(spec: ModelSpec, theta: dict, x: ModelInputs):
    """Per-patient log-likelihood (N,) with the outcomes integrated out (inference/filter.py)."""
    model = spec.belief_model
    p = {**group_params(spec, theta), **{n: theta[n] for n in model.patient_params}}
    a = x.arm_index
    g_k = cohort_drive(spec, theta, x)
    phi = theta["phi"] if spec.has_ema else jnp.float32(1.0)
    if spec.has_visits:
        sd = visit_sd(x.visit_by_step_treated, theta["sigma_baseline"], theta["sigma_treated"])
    else:
        sd = jnp.ones(x.visit_by_step.shape, jnp.float32)
    return filtered_log_lik(
        model, p, g_k[a], x.gate[a], spec.mu_o, x.n_corr, x.session_p[a], spec.n_max,
        x.ema_by_step, x.ema_by_step_mask & spec.has_ema, phi,
        x.visit_by_step, x.visit_by_step_mask & spec.has_visits, x.visit_by_step_D, x.visit_by_step_E, sd,
        spec.m_max, session_steps=x.session_steps,
    )  # fmt: skip


def patient_log_lik(spec: ModelSpec, theta: dict, x: ModelInputs, traj=None):
    """Per-patient log-likelihood (N,) of all recorded ratings, given parameters ``theta``.

    ``theta`` holds the per-patient parameters (N,), the variant's group parameters and the
    observation parameters (phi, sigma_baseline, sigma_treated) of the channels present; fixed
    parameters may be left out (their values come from ``spec``). With ``spec.likelihood`` =
    "marginal" the outcomes are integrated out and ``traj`` is not used.
    """
    theta = with_fixed(spec, theta, x.arm_index.shape[0])
    if spec.likelihood == "marginal":
        return marginal_patient_log_lik(spec, theta, x)
    if traj is None:
        traj = cohort_trajectories(spec, theta, x)
    tr, V0 = traj
    total = jnp.zeros(V0.shape)
    if spec.has_ema:
        total = total + ema_log_lik(tr.V[:, x.ema_step], theta["phi"], x.ema, x.ema_mask).sum(axis=1)
    if spec.has_visits:
        mean = visit_mean(beliefs_at_step_start(tr.V, V0, x.visit_step), spec.m_max, x.visit_D, x.visit_E)
        sd = visit_sd(x.visit_treated, theta["sigma_baseline"], theta["sigma_treated"])
        total = total + visit_log_lik(x.visit_score, x.visit_mask, mean, sd).sum(axis=1)
    return total


# ----------------------------------------------------------------------------- the model


def sample_params(spec: ModelSpec, n_patients: int) -> dict:
    """Sample sites for every fitted parameter (priors); returns theta for :func:`patient_log_lik`."""
    pr = spec.priors
    theta = {}
    for name in spec.patient_params:
        _, mu_sd, tau_scale = param(name).prior
        mu = numpyro.sample(f"mu_{name}", dist.Normal(pr.centre(name), mu_sd))
        tau = numpyro.sample(f"tau_{name}", dist.HalfNormal(tau_scale))
        with numpyro.plate("patient", n_patients):
            z = numpyro.sample(f"z_{name}", dist.Normal(0.0, 1.0))
        theta[name] = numpyro.deterministic(name, mu + tau * z)
    for name in spec.group_params:
        theta[name] = numpyro.sample(name, prior_of(name, pr.centre(name)))
    for name, centre in spec.window.sampled_centres().items():
        row = "tau_decay_hours" if name == "window_gap_hours" else name
        theta[name] = numpyro.sample(name, dist.LogNormal(math.log(centre), param(row).prior[1]))
    for name, value in window_values(spec, theta).items():
        theta[name] = numpyro.deterministic(name, value)
    for name in spec.observation_params:
        theta[name] = numpyro.sample(name, prior_of(name, pr.centre(name)))
    return theta


def init_values(spec: ModelSpec, n_patients: int) -> dict:
    """A starting point for NUTS/SVI: every site at its prior centre, all patients at the group mean.

    Deterministic, so no prior sampling (and no compiling) is needed to initialise.
    """
    pr = spec.priors
    values = {}
    for name in spec.patient_params:
        values[f"mu_{name}"] = jnp.float32(pr.centre(name))
        values[f"tau_{name}"] = jnp.float32(TAU_INIT)
        values[f"z_{name}"] = jnp.zeros(n_patients, jnp.float32)
    for name in spec.group_params + spec.observation_params:
        values[name] = jnp.float32(prior_start(name, pr.centre(name)))
    for name, centre in spec.window.sampled_centres().items():
        values[name] = jnp.float32(centre)
    return values


# Jitted (spec static) so that NumPyro's eager model runs (tracing, initialisation) call one
# compiled program instead of compiling hundreds of small ones; inside NUTS it is inlined.
_total_log_lik = jax.jit(lambda spec, theta, x: patient_log_lik(spec, theta, x).sum(), static_argnums=0)


def belief_model(x: ModelInputs, spec: ModelSpec):
    """The NumPyro model: priors, then the summed per-patient log-likelihood as one factor."""
    theta = sample_params(spec, x.arm_index.shape[0])
    numpyro.factor("log_lik", _total_log_lik(spec, theta, x))


def build(
    data: FitData,
    variant: str | None = None,
    fit_window: bool = True,
    fixed: dict | None = None,
    likelihood: str | None = None,
):
    """(model, spec, inputs): ``model(inputs)`` is ready for NUTS or SVI."""
    from functools import partial

    spec = ModelSpec.from_data(data, variant, fit_window, fixed, likelihood)
    return partial(belief_model, spec=spec), spec, data.inputs()


def true_theta(data: FitData, params: dict, variant: str | None = None) -> dict:
    """theta at known values (a simulation's truth): per-patient ``params`` plus config values."""
    cfg = data.config
    model = get_model(variant or data.variant)
    theta = {n: jnp.asarray(params[n], jnp.float32) for n in model.patient_params}
    for n in list(model.group_params) + [p.name for p in PARAMS.values() if p.applies]:
        theta[n] = jnp.float32(config_value(cfg, n))  # window constants are read only if fitted
    return theta
