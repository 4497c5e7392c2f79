"""The likelihood of what a trial records, with the everyday outcomes integrated out.

A trial records daily ratings and clinician scores, not the outcome of every everyday
experience. The beliefs' mean and covariance propagate exactly through the unrecorded
outcomes (:mod:`plasticity_rl.models.moments`); each rating is scored against them and then
conditions them (:func:`plasticity_rl.observe.ema_moment_update`,
:func:`plasticity_rl.observe.visit_moment_update`): an assumed-density filter, one patient at a
time (vmap it over patients), scanned over steps, differentiable.

The approximation: between observations the beliefs are summarised by two moments, and each
rating's density is the one matched to its predictive mean and variance. It is exact when the
beliefs are certain (P = 0); ``tests/test_filter.py`` measures its error against a brute-force
Monte Carlo estimate of the same likelihood.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from plasticity_rl.models.base import BeliefModel, Params
from plasticity_rl.models.moments import Moments, initial_moments, step_moments
from plasticity_rl.observe import ema_moment_update, visit_moment_update


def marginal_log_lik(
    model: BeliefModel,
    p: Params,
    g_k,
    gate,
    mu_o,
    n_corr,
    p_c,
    n_max: int,
    ema,
    ema_recorded,
    phi,
    visit,
    visit_recorded,
    visit_D,
    visit_E,
    visit_sd,
    m_max,
) -> jax.Array:
    """One patient's log-likelihood of their ratings, with every outcome integrated out.

    Step inputs are (T,) as in :func:`plasticity_rl.models.moments.belief_moments`. ``ema``
    (T,): the rating of V *after* step j (a day's rating sits on its last step), with
    ``ema_recorded`` False where there is none (the value there must be a placeholder inside
    (0, 1)). ``visit`` and its companions (T + 1,): a clinician score seeing V at the *start* of
    step j (j = T: after the last step), at most one per step, with its D(t), E(t) and noise SD.
    """

    def visit_at(moments, j):
        lp, m, P = visit_moment_update(
            *moments, visit[j], visit_recorded[j], m_max, visit_D[j], visit_E[j], visit_sd[j]
        )
        return lp, Moments(m, P)

    def step(carry, j):
        moments, total = carry
        lp_visit, moments = visit_at(moments, j)
        moments = step_moments(model, p, moments, g_k[j], gate[j], mu_o, n_corr[j], p_c[j], n_max)
        lp_ema, m, P = ema_moment_update(*moments, ema[j], ema_recorded[j], phi)
        return (Moments(m, P), total + lp_visit + lp_ema), None

    T = g_k.shape[0]
    start = initial_moments(model, p)
    (moments, total), _ = jax.lax.scan(step, (start, jnp.zeros((), start.mean.dtype)), jnp.arange(T))
    lp_last, _ = visit_at(moments, T)
    return total + lp_last
