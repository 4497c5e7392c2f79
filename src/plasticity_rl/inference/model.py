"""The NumPyro model of any registered belief variant (DESIGN 1.4, 1.5, 2).

Given the parameters, beliefs are deterministic (outcomes are observed), so the likelihood is
:func:`plasticity_rl.models.run_beliefs` - the recurrence the simulator runs - vmapped over
patients, followed by the two observation channels:

- EMA: y_pd ~ Beta(V phi, (1 - V) phi), V at the end of day d;
- visits: M ~ Normal(m_max (1 - V) - D - E, sigma), V at the start of the visit's step, sigma
  ``sigma_baseline`` before the arm's first treatment and ``sigma_treated`` after. Scores are
  clipped to 0-60 when recorded, so a score at 0 or 60 is a censored observation (its term is
  the tail probability), which is also what the simulator does.

Per-patient parameters (the variant's ``patient_params``) are hierarchical and non-centred:
theta_i = mu + tau z_i, z_i ~ Normal(0, 1). Group parameters (kappa, epsilon, omega, alpha_T where
the variant uses them) sit on their constrained scales; priors are weakly informative and
centred on the config's values (``Priors.from_config``).

The window's shape is fitted too (DESIGN 1.1: "a parameter to sweep and to fit, not a
constant"): the kernel's time constants (``tau_k_hours`` for the gamma kernel; ``tau_rise_hours``
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
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr
from numpyro.distributions.transforms import SigmoidTransform

from plasticity_rl.config import Config
from plasticity_rl.inference.prepare import SCORE_RANGE, FitData, ModelInputs
from plasticity_rl.models import BeliefModel, Trajectory, get_model, run_beliefs
from plasticity_rl.plasticity import KernelParams, arm_drive

# Prior widths (unconstrained scales). Group means: a logit-unit of doubt about baseline
# rates and the initial schema, more about the ketamine boost A that no human study measures.
MU_SD = {"logit_alpha0": 1.0, "logit_alpha0_pos": 1.0, "logit_alpha0_neg": 1.0,
         "A": 1.5, "A_pos": 1.5, "A_neg": 1.5, "logit_S0": 1.0}
TAU_SCALE = 0.5  # HalfNormal scale of the between-patient SDs (config SDs are 0.3-0.5)
LOGIT_SD = 1.0  # kappa, epsilon, alpha_T: logit-normal, one logit unit around the config value
OMEGA_BETA = (3.0, 1.0)  # omega in (0, 1]: Beta(3, 1), mean 0.75, most mass near the default 1
LOG_SD_PHI = 0.75  # phi: log-normal around the config value
LOG_SD_SIGMA = 0.5  # visit noise SDs: log-normal around the config values
EPS = 1e-6  # V is kept in [EPS, 1 - EPS] inside the Beta likelihood
# Kernel time constants: log-normal, 95% of the prior within x/÷ 2.7 of the config's value (the
# gamma kernel's peak between ~9 h and ~65 h): the human window's length is not known.
LOG_SD_WINDOW = 0.5


@dataclass(frozen=True)
class Priors:
    """Prior locations and scales; hashable, so it can be a static argument."""

    mu_loc: tuple[tuple[str, float], ...]  # per-patient parameter -> group-mean prior location
    group_loc: tuple[tuple[str, float], ...]  # kappa/epsilon/alpha_T -> config value
    phi: float
    sigma_baseline: float
    sigma_treated: float

    @staticmethod
    def from_config(cfg: Config, model: BeliefModel) -> Priors:
        pop = cfg.population
        v = cfg.observations.visits
        return Priors(
            mu_loc=tuple((n, float(getattr(pop, n).mean)) for n in model.patient_params),
            group_loc=tuple((n, float(getattr(pop, n))) for n in ("kappa", "epsilon", "alpha_T")),
            phi=float(cfg.observations.ema.phi),
            sigma_baseline=max(float(v.noise_sd_baseline), 0.5),
            sigma_treated=max(float(v.noise_sd_treated), 0.5),
        )


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

    @staticmethod
    def from_config(cfg: Config, fitted: bool) -> WindowSpec:
        pl = cfg.plasticity
        return WindowSpec(pl.kernel, float(pl.gamma_shape), float(pl.saturation), float(pl.tau_k_hours),
                          float(pl.tau_rise_hours), float(pl.tau_decay_hours), bool(fitted))

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
        return {"tau_rise_hours": self.tau_rise_hours, "window_gap_hours": self.tau_decay_hours - self.tau_rise_hours}

    def kernel_params(self, theta: dict | None = None) -> KernelParams:
        """KernelParams with the time constants from ``theta`` where fitted, else the fixed ones."""
        th = theta if self.fitted and theta is not None else {}
        return KernelParams(0 if self.kernel == "gamma" else 1, self.gamma_shape,
                            th.get("tau_k_hours", self.tau_k_hours), th.get("tau_rise_hours", self.tau_rise_hours),
                            th.get("tau_decay_hours", self.tau_decay_hours))


@dataclass(frozen=True)
class ModelSpec:
    """Static description of one fit's model: variant, priors, channels and constants."""

    variant: str
    priors: Priors
    has_ema: bool
    has_visits: bool
    m_max: float
    mu_o: float
    V0_offset: float
    window: WindowSpec

    @property
    def belief_model(self) -> BeliefModel:
        return get_model(self.variant)

    @staticmethod
    def from_data(data: FitData, variant: str | None = None, fit_window: bool = True) -> ModelSpec:
        variant = variant or data.variant
        return ModelSpec(
            variant=variant,
            priors=Priors.from_config(data.config, get_model(variant)),
            has_ema=data.has_ema,
            has_visits=data.has_visits,
            m_max=data.m_max,
            mu_o=data.fixed["mu_o"],
            V0_offset=data.fixed["V0_offset"],
            window=WindowSpec.from_config(data.config, fit_window and data.has_doses),
        )


def _logit(x: float) -> float:
    return math.log(x / (1.0 - x))


def _logit_normal(value: float, sd: float = LOGIT_SD):
    return dist.TransformedDistribution(dist.Normal(_logit(value), sd), SigmoidTransform())


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
    if not spec.window.fitted:
        return x.g_k
    return arm_drive(x.t_hours, x.dose_hours, x.dose_amounts, spec.window.kernel_params(theta),
                     spec.window.saturation)


def group_params(spec: ModelSpec, theta: dict) -> dict:
    """The scalars run_beliefs reads besides the per-patient ones (fixed or fitted)."""
    out = {"mu_o": spec.mu_o, "V0_offset": spec.V0_offset}
    for name in spec.belief_model.group_params:
        out[name] = theta[name]
    return out


def cohort_trajectories(spec: ModelSpec, theta: dict, x: ModelInputs,
                        dense_session_maps: bool = True) -> tuple[Trajectory, jax.Array]:
    """run_beliefs over the whole cohort (one scan, batched carry); trajectories and V0 (N,).

    ``session_steps`` are the steps that may hold a session, so run_beliefs applies the session
    (as an affine map, for the models where it is one) only there, with a fast reverse pass;
    ``any_session`` is the cohort-wide session flag the branching fallback reads. The session
    maps are laid out per step (``dense_session_maps``), the faster layout to differentiate;
    pass False where the trajectories are only evaluated, many at once.
    """
    model = spec.belief_model
    p = {**group_params(spec, theta), **{n: theta[n] for n in model.patient_params}}
    g_k = cohort_drive(spec, theta, x)
    traj = run_beliefs(model, p, g_k[x.arm_index], x.gate[x.arm_index], x.everyday, x.corrective,
                       x.n_corr, any_session=x.session_anywhere, session_steps=x.session_steps,
                       unroll=1 if model.affine_session else 4, dense_session_maps=dense_session_maps)
    return traj, model.initial(p).V


_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
PHI_MAX = 1e6  # the EMA precision's cap inside the likelihood: within lgamma_positive's domain


def lgamma_positive(x):
    """log Gamma(x) for 0 < x <= 1e6 (the Beta parameters of the EMA term), and its gradient.

    Six steps of the recurrence Gamma(x) = Gamma(x + 6) / (x (x + 1) ... (x + 5)), then Stirling's
    series to 1/z^7 at z = x + 6 >= 6: one product, two logs and a reciprocal, against XLA's
    general lgamma (a Lanczos sum with a reflection branch for x < 1/2, both evaluated) and its
    digamma. Accuracy, measured against SciPy in float64 on 1e-6 <= x <= 1e6: as XLA's in float32
    (within 1.6e-6 relative, digamma 5e-7), 5e-11 in float64. The EMA term's value and gradient:
    0.138 -> 0.055 ms at flagship size (benchmarks/README.md, attempt 38). Past ~2.6e6 the
    product overflows float32, hence the cap on phi in :func:`ema_log_lik`.
    """
    z = x + 6.0
    zi = 1.0 / z
    zi2 = zi * zi
    stirling = (z - 0.5) * jnp.log(z) - z + _HALF_LOG_2PI + zi * (
        1.0 / 12.0 - zi2 * (1.0 / 360.0 - zi2 * (1.0 / 1260.0 - zi2 / 1680.0)))
    return stirling - jnp.log(x * (x + 1.0) * (x + 2.0) * (x + 3.0) * (x + 4.0) * (x + 5.0))


def ema_log_lik(V_end, phi, x: ModelInputs):
    """(N, days) Beta log-densities of the ratings, 0 where missing.

    phi is capped at PHI_MAX (1e6) inside the likelihood, within lgamma_positive's range: 14 prior
    SDs above the flagship's phi of 20, and 6 above the largest phi a config may set (1e4). Past
    the cap the ratings' density no longer depends on phi, and its prior brings NUTS back.
    """
    V = jnp.clip(V_end, EPS, 1.0 - EPS)
    phi = jnp.minimum(phi, PHI_MAX)
    a, b = V * phi, (1.0 - V) * phi
    # The Beta density written out: a + b = phi, so log B(a, b) = lgamma(a) + lgamma(b) - lgamma(phi).
    # NumPyro's Beta goes through betaln's general algorithm, which made this term's gradient
    # ~1.7x dearer (a tenth of the flagship's likelihood gradient). x.ema is 0.5 under the mask.
    lp = ((a - 1.0) * jnp.log(x.ema) + (b - 1.0) * jnp.log1p(-x.ema)
          + lgamma_positive(phi) - lgamma_positive(a) - lgamma_positive(b))
    return jnp.where(x.ema_mask, lp, 0.0)


def visit_log_lik(V_visit, sigma_baseline, sigma_treated, spec: ModelSpec, x: ModelInputs):
    """(N, K) log-likelihood of the clinician scores; censored at the ends of the 0-60 range."""
    mean = spec.m_max * (1.0 - V_visit) - x.visit_D - x.visit_E
    sd = jnp.where(x.visit_treated, sigma_treated, sigma_baseline)
    y = x.visit_score  # 30 under the mask: every branch below stays finite
    lo, hi = SCORE_RANGE
    lp = dist.Normal(mean, sd).log_prob(y)
    lp = jnp.where(y <= lo, log_ndtr((lo - mean) / sd), lp)
    lp = jnp.where(y >= hi, log_ndtr((mean - hi) / sd), lp)
    return jnp.where(x.visit_mask, lp, 0.0)


def patient_log_lik(spec: ModelSpec, theta: dict, x: ModelInputs, traj=None):
    """Per-patient log-likelihood (N,) of all recorded ratings, given parameters ``theta``.

    ``theta`` holds the per-patient parameters (N,), the variant's group parameters and the
    observation parameters (phi, sigma_baseline, sigma_treated) of the channels present.
    """
    if traj is None:
        traj = cohort_trajectories(spec, theta, x)
    tr, V0 = traj
    total = jnp.zeros(V0.shape)
    if spec.has_ema:
        total = total + ema_log_lik(tr.V[:, x.ema_step], theta["phi"], x).sum(axis=1)
    if spec.has_visits:
        V_pad = jnp.concatenate([V0[:, None], tr.V], axis=1)
        V_visit = jnp.take_along_axis(V_pad, x.visit_step, axis=1)
        total = total + visit_log_lik(
            V_visit, theta["sigma_baseline"], theta["sigma_treated"], spec, x
        ).sum(axis=1)
    return total


# ----------------------------------------------------------------------------- the model


def support_bounds(name: str) -> tuple[float, float]:
    """Lower and upper bound of a sampled group-level site's support under the priors below.

    Group parameters (kappa, epsilon, omega, alpha_T) live in (0, 1); SDs, phi, sigmas and the
    window's time constants are positive; means of the per-patient parameters are unbounded. A
    true value on a bound (the flagship's omega = 1) cannot sit inside any central posterior
    interval.
    """
    if name in ("kappa", "epsilon", "omega", "alpha_T"):
        return 0.0, 1.0
    if name.startswith("tau_") or name.endswith("_hours") or name in ("phi", "sigma_baseline", "sigma_treated"):
        return 0.0, math.inf
    return -math.inf, math.inf


def true_on_support_bound(level: str, name: str, true_values) -> bool:
    """Whether every generating value of a group parameter sits on a bound of its support."""
    return level == "group" and all(float(v) in support_bounds(name) for v in true_values)


def sample_params(spec: ModelSpec, n_patients: int) -> dict:
    """Sample sites for every parameter (priors); returns theta for :func:`patient_log_lik`."""
    model, pr = spec.belief_model, spec.priors
    theta = {}
    mu_loc = dict(pr.mu_loc)
    for name in model.patient_params:
        mu = numpyro.sample(f"mu_{name}", dist.Normal(mu_loc[name], MU_SD[name]))
        tau = numpyro.sample(f"tau_{name}", dist.HalfNormal(TAU_SCALE))
        with numpyro.plate("patient", n_patients):
            z = numpyro.sample(f"z_{name}", dist.Normal(0.0, 1.0))
        theta[name] = numpyro.deterministic(name, mu + tau * z)
    group_loc = dict(pr.group_loc)
    for name in model.group_params:
        if name == "omega":
            theta[name] = numpyro.sample("omega", dist.Beta(*OMEGA_BETA))
        else:
            theta[name] = numpyro.sample(name, _logit_normal(group_loc[name]))
    for name, centre in spec.window.sampled_centres().items():
        theta[name] = numpyro.sample(name, dist.LogNormal(math.log(centre), LOG_SD_WINDOW))
    for name, value in window_values(spec, theta).items():
        theta[name] = numpyro.deterministic(name, value)
    if spec.has_ema:
        theta["phi"] = numpyro.sample("phi", dist.LogNormal(math.log(pr.phi), LOG_SD_PHI))
    if spec.has_visits:
        theta["sigma_baseline"] = numpyro.sample(
            "sigma_baseline", dist.LogNormal(math.log(pr.sigma_baseline), LOG_SD_SIGMA))
        theta["sigma_treated"] = numpyro.sample(
            "sigma_treated", dist.LogNormal(math.log(pr.sigma_treated), LOG_SD_SIGMA))
    return theta


def init_values(spec: ModelSpec, n_patients: int) -> dict:
    """A starting point for NUTS/SVI: every site at its prior centre, all patients at the group mean.

    Deterministic, so no prior sampling (and no compiling) is needed to initialise.
    """
    model, pr = spec.belief_model, spec.priors
    values = {}
    for name, loc in pr.mu_loc:
        values[f"mu_{name}"] = jnp.float32(loc)
        values[f"tau_{name}"] = jnp.float32(0.3)
        values[f"z_{name}"] = jnp.zeros(n_patients, jnp.float32)
    group_loc = dict(pr.group_loc)
    for name in model.group_params:
        value = OMEGA_BETA[0] / sum(OMEGA_BETA) if name == "omega" else group_loc[name]
        values[name] = jnp.float32(value)
    for name, centre in spec.window.sampled_centres().items():
        values[name] = jnp.float32(centre)
    if spec.has_ema:
        values["phi"] = jnp.float32(pr.phi)
    if spec.has_visits:
        values["sigma_baseline"] = jnp.float32(pr.sigma_baseline)
        values["sigma_treated"] = jnp.float32(pr.sigma_treated)
    return values


# Jitted (spec static) so that NumPyro's eager model runs (tracing, initialisation) call one
# compiled program instead of compiling hundreds of small ones; inside NUTS it is inlined.
_total_log_lik = jax.jit(lambda spec, theta, x: patient_log_lik(spec, theta, x).sum(), static_argnums=0)


def belief_model(x: ModelInputs, spec: ModelSpec):
    """The NumPyro model: priors, then the summed per-patient log-likelihood as one factor."""
    theta = sample_params(spec, x.arm_index.shape[0])
    numpyro.factor("log_lik", _total_log_lik(spec, theta, x))


def build(data: FitData, variant: str | None = None, fit_window: bool = True):
    """(model, spec, inputs): ``model(inputs)`` is ready for NUTS or SVI."""
    from functools import partial

    spec = ModelSpec.from_data(data, variant, fit_window)
    return partial(belief_model, spec=spec), spec, data.inputs()


def true_theta(data: FitData, params: dict, variant: str | None = None) -> dict:
    """theta at known values (a simulation's truth): per-patient ``params`` plus config values."""
    cfg = data.config
    model = get_model(variant or data.variant)
    theta = {n: jnp.asarray(params[n], jnp.float32) for n in model.patient_params}
    pop = cfg.population
    for n in model.group_params:
        theta[n] = jnp.float32(getattr(pop, n))
    pl = cfg.plasticity
    for n in WINDOW_TIME_CONSTANTS:  # read only if the window is fitted
        theta[n] = jnp.float32(getattr(pl, n))
    theta["phi"] = jnp.float32(cfg.observations.ema.phi)
    theta["sigma_baseline"] = jnp.float32(cfg.observations.visits.noise_sd_baseline)
    theta["sigma_treated"] = jnp.float32(cfg.observations.visits.noise_sd_treated)
    return theta
