"""What a trial measures: each observation channel once, as a sampler and a log-density.

The simulator draws ratings with the samplers here and the likelihood scores them with the
log-densities here, from the same parameters and the same time effects, so the fitted
observation model cannot drift from the simulated one.

- **EMA** (a daily self-rating): y_d ~ Beta(V phi, (1 - V) phi), V at the end of day d.
- **Visits** (a clinician score, MADRS-like): M = m_max (1 - V) - D(t) - E(t) + Normal(0, sd),
  V at the start of the visit's step; sd is ``sd_baseline`` before the arm's first treatment
  and ``sd_treated`` from then on. Scores are clipped to ``SCORE_RANGE`` when recorded, so the
  likelihood treats a score at either end as censored (its term is the tail probability).

D(t), the acute drug-state lift, and E(t), the non-specific response to any infusion (active or
placebo), are fixed functions of the schedule (:func:`drug_state_effects`), the same for every
patient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr

from plasticity_rl._engine.special import LGAMMA_MAX, lgamma_positive
from plasticity_rl.models.moments import Moments

SCORE_RANGE = (0.0, 60.0)  # clinician scores are clipped here when recorded
EPS = 1e-6  # V is kept in [EPS, 1 - EPS] inside the Beta density
RATING_RANGE = (1e-6, 1.0 - 1e-6)  # simulated ratings are kept strictly inside (0, 1)
PHI_MAX = LGAMMA_MAX  # the EMA precision's cap inside the likelihood


def _xp(a):
    """jax.numpy for JAX arrays (traced in the likelihood), NumPy otherwise (the simulator)."""
    return jnp if isinstance(a, jax.Array) else np


# ----------------------------------------------------------------------------- time effects


def drug_state_effects(visits, sch, t_hours: np.ndarray):
    """D(t) acute lift and E(t) non-specific infusion response (MADRS points), per arm x time.

    ``visits``: the config's ``observations.visits``; ``sch``: the arms' schedules. D has an
    onset of ``acute_onset_hours`` and halves every ``acute_half_life_hours``, scaled by the dose;
    E has the same onset and halves every ``infusion_response_half_life_days``, for any infusion
    (a placebo too). Both take the strongest current infusion (max, not sum), so a course of
    infusions does not stack non-specific responses without bound.
    """
    tau = t_hours[None, :, None] - sch.infusion_hours[:, None, :]  # arms, times, doses
    onset = np.where(tau >= 0, 1.0 - np.exp(-np.maximum(tau, 0) / visits.acute_onset_hours), 0.0)
    acute = onset * np.exp2(-np.maximum(tau, 0) / visits.acute_half_life_hours)
    D = visits.acute_lift * np.max(sch.dose_amounts[:, None, :] * acute, axis=2, initial=0.0)
    nonspec = onset * np.exp2(-np.maximum(tau, 0) / (24.0 * visits.infusion_response_half_life_days))
    E = visits.infusion_response * np.max(nonspec, axis=2, initial=0.0)
    return D, E


def first_treatment_hours(sch) -> np.ndarray:
    """Per arm, the time of the first infusion or session (inf if none)."""
    inf = np.where(np.isfinite(sch.infusion_hours), sch.infusion_hours, np.inf).min(axis=1)
    sess = np.where(sch.session_n > 0, sch.t_hours[None, :], np.inf).min(axis=1)
    return np.minimum(inf, sess)


def visit_step_of(day: float, steps_per_day: int, days: int) -> int:
    """The step whose start a visit at ``day`` observes: the nearest step, at most the end."""
    return int(min(round(day * steps_per_day), days * steps_per_day))


def visit_effects(visits, sch, arm_index: np.ndarray, visit_step: np.ndarray):
    """D, E and the treated flag at each (patient, visit); ``visit_step`` is (N, K)."""
    N, K = visit_step.shape
    if K == 0:
        return np.zeros((N, K)), np.zeros((N, K)), np.zeros((N, K), bool)
    steps = np.unique(visit_step)
    D_a, E_a = drug_state_effects(visits, sch, steps * sch.step_hours)  # (arms, len(steps))
    col = np.searchsorted(steps, visit_step)
    treated = (visit_step * sch.step_hours) >= first_treatment_hours(sch)[arm_index][:, None]
    return D_a[arm_index[:, None], col], E_a[arm_index[:, None], col], treated


def ema_steps(days: int, steps_per_day: int) -> np.ndarray:
    """(days,) the step after which day d's rating is made: its last step."""
    return np.arange(days) * steps_per_day + steps_per_day - 1


def beliefs_at_step_start(V, V0, steps):
    """V at the start of each step in ``steps`` (before that step's events).

    ``V``: (N, T) beliefs after each step; ``V0``: (N,) the start; ``steps``: (K,) or (N, K)
    in 0..T. NumPy in, NumPy out; JAX in, JAX out.
    """
    xp = _xp(V)
    padded = xp.concatenate([V0[:, None], V], axis=1)
    steps = xp.broadcast_to(xp.asarray(steps), (V.shape[0],) + xp.shape(steps)[-1:])
    return xp.take_along_axis(padded, steps, axis=1)


# ----------------------------------------------------------------------------- EMA


def sample_ema(key, V_end, phi: float, missing_rate: float) -> np.ndarray:
    """(N, days) Beta(V phi, (1 - V) phi) ratings of V at the end of each day, NaN where missing."""
    k_val, k_miss = jax.random.split(key)
    y = np.asarray(jax.random.beta(k_val, V_end * phi, (1.0 - V_end) * phi), np.float64)
    y = np.clip(y, *RATING_RANGE)
    missing = np.asarray(jax.random.bernoulli(k_miss, missing_rate, y.shape))
    return np.where(missing, np.nan, y).astype(np.float32)


def ema_log_lik(V_end, phi, ratings, recorded):
    """(N, days) Beta log-densities of the ratings, 0 where not recorded.

    ``ratings`` must hold a placeholder inside (0, 1) where ``recorded`` is False, so every
    term stays finite and so does its gradient (the double-``where`` pattern). phi is capped at
    PHI_MAX (1e6): 14 prior SDs above the flagship's phi of 20, and 6 above the largest phi a
    config may set (1e4). Past the cap the ratings' density no longer depends on phi, and its
    prior brings NUTS back.
    """
    V = jnp.clip(V_end, EPS, 1.0 - EPS)
    phi = jnp.minimum(phi, PHI_MAX)
    a, b = V * phi, (1.0 - V) * phi
    # The Beta density written out: a + b = phi, so log B(a, b) = lgamma(a) + lgamma(b) - lgamma(phi).
    # NumPyro's Beta goes through betaln's general algorithm, which made this term's gradient
    # ~1.7x dearer (a tenth of the flagship's likelihood gradient).
    lp = (
        (a - 1.0) * jnp.log(ratings)
        + (b - 1.0) * jnp.log1p(-ratings)
        + lgamma_positive(phi)
        - lgamma_positive(a)
        - lgamma_positive(b)
    )
    return jnp.where(recorded, lp, 0.0)


# ----------------------------------------------------------------------------- visits


def visit_mean(V_visit, m_max, D, E):
    """The expected clinician score: m_max (1 - V) - D(t) - E(t)."""
    return m_max * (1.0 - V_visit) - D - E


def visit_sd(treated, sd_baseline, sd_treated):
    """The score's noise SD: larger once the arm's first treatment has begun."""
    return _xp(treated).where(treated, sd_treated, sd_baseline)


def sample_visits(key, mean, sd, missing_rate: float) -> np.ndarray:
    """(N, K) scores: Normal(mean, sd) clipped to SCORE_RANGE, NaN where missing."""
    k_val, k_miss = jax.random.split(key)
    noise = np.asarray(jax.random.normal(k_val, mean.shape))
    scores = np.clip(mean + sd * noise, *SCORE_RANGE)
    missing = np.asarray(jax.random.bernoulli(k_miss, missing_rate, mean.shape))
    return np.where(missing, np.nan, scores)


def replicate_ratings(
    rng: np.random.Generator, V_end, phi, visit_mean, visit_sd, ema_recorded, visit_recorded
):
    """Replicated data for a posterior predictive check, NumPy on the host: (ema, visits) float32.

    The same observation model as :func:`sample_ema` and :func:`sample_visits` (Beta(V phi,
    (1 - V) phi) ratings and Normal(mean, sd) scores, clipped to their ranges), drawn for every
    posterior draw at once: ``V_end`` (S, N, days), ``phi`` (S,), ``visit_mean`` / ``visit_sd``
    (S, N, K). A rating is drawn where ``ema_recorded`` / ``visit_recorded`` (N, days) / (N, K)
    say the data have one (a channel the fit does not model: all False, and ``phi`` may be None);
    NaN elsewhere. NumPy's Beta sampler: JAX's took 18 s for the flagship's 4,000 x 100 x 56
    ratings on 2 cores, NumPy's 1.8 s.
    """
    ema = np.full(np.shape(V_end), np.nan, np.float32)
    if np.any(ema_recorded):
        V = np.clip(np.asarray(V_end, np.float64), EPS, 1.0 - EPS)
        phi = np.minimum(np.asarray(phi, np.float64), PHI_MAX).reshape((-1,) + (1,) * (V.ndim - 1))
        y = np.clip(rng.beta(V * phi, (1.0 - V) * phi), *RATING_RANGE)
        ema = np.where(ema_recorded, y, np.nan).astype(np.float32)
    visits = np.full(np.shape(visit_mean), np.nan, np.float32)
    if np.any(visit_recorded):
        scores = np.clip(visit_mean + visit_sd * rng.standard_normal(np.shape(visit_mean)), *SCORE_RANGE)
        visits = np.where(visit_recorded, scores, np.nan).astype(np.float32)
    return ema, visits


def visit_log_lik(scores, recorded, mean, sd):
    """(N, K) log-likelihood of the clinician scores; censored at the ends of SCORE_RANGE.

    ``scores`` must hold a placeholder inside the range where ``recorded`` is False.
    """
    lo, hi = SCORE_RANGE
    lp = dist.Normal(mean, sd).log_prob(scores)
    lp = jnp.where(scores <= lo, log_ndtr((lo - mean) / sd), lp)
    lp = jnp.where(scores >= hi, log_ndtr((mean - hi) / sd), lp)
    return jnp.where(recorded, lp, 0.0)


# ----------------------------------------------------------------------------- beliefs known by their moments
#
# With the everyday outcomes unrecorded, the beliefs before an observation are known only by
# their mean m and covariance P (plasticity_rl.models.moments). Each channel then gives the
# rating's log-density under a distribution matched to its first two moments, and the beliefs'
# moments after seeing it (a Kalman update, exact for the linear visit score, the linear
# minimum-variance update for the Beta rating). With P = 0 both densities are exactly the ones
# above.


def ema_moment_update(m: Moments, rating, recorded, phi):
    """(log-density, moments after) for one EMA rating of V, given the beliefs' moments ``m``.

    y = V + eta with E[eta | V] = 0 and Var[eta | V] = V (1 - V) / (phi + 1), so
    E[y] = m_V and Var[y] = P_VV + (m_V (1 - m_V) - P_VV) / (phi + 1); the rating's density is
    the Beta with that mean and variance. Not recorded: log-density 0, moments unchanged.
    """
    mV = jnp.clip(m.mV, EPS, 1.0 - EPS)
    noise = jnp.maximum(mV * (1.0 - mV) - m.PVV, 0.0) / (jnp.minimum(phi, PHI_MAX) + 1.0)
    var_y = m.PVV + noise
    lp = ema_log_lik(mV, mV * (1.0 - mV) / var_y - 1.0, rating, recorded)
    gV, gS = m.PVV / var_y, m.PVS / var_y  # Cov((V, S), y) / Var(y)
    return lp, _conditioned(m, recorded, gV, gS, rating - mV, var_y)


def visit_moment_update(m: Moments, score, recorded, m_max, D, E, sd):
    """(log-density, moments after) for one clinician score, given the beliefs' moments ``m``.

    M = m_max (1 - V) - D - E + Normal(0, sd) is linear in V: M ~ Normal(mean, m_max^2 P_VV +
    sd^2), censored at the ends of SCORE_RANGE as above, and the Kalman update is exact. A
    censored score (at 0 or 60) updates nothing: its information is a bound, not a value.
    """
    mean = visit_mean(m.mV, m_max, D, E)
    var_y = m_max**2 * m.PVV + sd**2
    lp = visit_log_lik(score, recorded, mean, jnp.sqrt(var_y))
    lo, hi = SCORE_RANGE
    gV, gS = -m_max * m.PVV / var_y, -m_max * m.PVS / var_y
    update = recorded & (score > lo) & (score < hi)
    return lp, _conditioned(m, update, gV, gS, score - mean, var_y)


def _conditioned(m: Moments, update, gV, gS, innovation, var_y) -> Moments:
    """The Kalman update with gains (gV, gS) where ``update``; the moments unchanged elsewhere."""
    new = Moments(
        m.mV + gV * innovation,
        m.mS + gS * innovation,
        m.PVV - gV * gV * var_y,
        m.PVS - gV * gS * var_y,
        m.PSS - gS * gS * var_y,
    )
    return Moments(*(jnp.where(update, a, b) for a, b in zip(new, m)))
