"""The likelihood of what a trial records, with the everyday outcomes integrated out.

A trial records daily ratings and clinician scores, not the outcome of every everyday
experience. The beliefs' mean and covariance propagate exactly through the unrecorded
outcomes (:mod:`plasticity_rl.models.moments`); each rating is scored against them and then
conditions them (:func:`plasticity_rl.observe.ema_moment_update`,
:func:`plasticity_rl.observe.visit_moment_update`): an assumed-density filter over the whole
cohort at once (every patient's moments are (N,) arrays), scanned over steps, differentiable.

The approximation: between observations the beliefs are summarised by two moments, and each
rating's density is the one matched to its predictive mean and variance. It is exact when the
beliefs are certain (P = 0); ``tests/test_filter.py`` measures its error against a brute-force
Monte Carlo estimate of the same likelihood.

Visits and ratings fall on few steps (11 and 56 of the flagship's 448), so each is applied
under ``lax.cond`` on a cohort-wide flag of the steps where any patient has one. For variants
whose two outcomes move the beliefs by the same matrix (all but the asymmetric ones) each step's
events, its session included, are one :class:`~plasticity_rl.models.moments.Transform`,
computed for every step before the loop; the asymmetric ones apply their events one by one,
their sessions under a ``cond`` too. Measured in benchmarks/README.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from plasticity_rl.models.base import BeliefModel, Params
from plasticity_rl.models.moments import (
    Moments,
    Transform,
    bernoulli_event,
    corrective_maps,
    everyday_maps,
    initial_moments,
    session_moments,
    step_transforms,
    transformed,
)
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
    session_steps=None,
) -> jax.Array:
    """Each patient's log-likelihood (N,) of their ratings, with every outcome integrated out.

    Patient-major inputs as :func:`plasticity_rl.models.run_beliefs` takes them, (N, T):
    ``g_k``, ``gate``, ``n_corr`` (corrective experiences delivered: 0 for none or a missed
    session, at most ``n_max``, static) and ``p_c`` (the chance each goes well); ``p`` holds
    (N,) or scalar parameters; ``mu_o`` the chance an everyday experience goes well.
    ``ema`` (N, T): the rating of V *after* step j (a day's rating sits on its last step), with
    ``ema_recorded`` False where there is none (the value there must be a placeholder inside
    (0, 1)). ``visit`` and its companions (N, T + 1): a clinician score seeing V at the *start*
    of step j (j = T: after the last step), at most one per step, with its D(t), E(t) and noise
    SD (placeholders inside the score range where not recorded).

    ``session_steps`` (K,): the only steps where ``n_corr`` may be non-zero, if known.
    """
    to_time = lambda a: jnp.moveaxis(jnp.asarray(a), -1, 0)  # noqa: E731
    r = model.rates(p, to_time(g_k), to_time(gate))  # (T, N): outcomes never change the rates
    n_t, pc_t = to_time(n_corr), to_time(p_c)
    if model.asymmetric:  # the two outcomes move the beliefs by different matrices
        moves = (*everyday_maps(model, p, r), *corrective_maps(model, p, r))
    else:  # one Transform per step, its session included, all computed at once
        moves = step_transforms(model, p, r, mu_o, n_t, pc_t, n_max, session_steps)
    ema_t, ema_rec = to_time(ema), to_time(ema_recorded)
    visit_t = tuple(to_time(a) for a in (visit, visit_recorded, visit_D, visit_E, visit_sd))
    session_at = jnp.any(n_t > 0, axis=1)  # (T,): cohort-wide, so each cond stays a branch
    ema_at = jnp.any(ema_rec, axis=1)
    visit_at = jnp.any(visit_t[1], axis=1)  # (T + 1,)

    def observe_visit(m, v):
        score, rec, D, E, sd = v
        return visit_moment_update(m, score, rec, m_max, D, E, sd)

    def maybe(flag, update, m, *args):
        """(log-density, moments) of ``update`` where ``flag``; (0, m) elsewhere, skipped."""
        none = lambda m, *_: (jnp.zeros_like(m.mV), m)  # noqa: E731
        return jax.lax.cond(flag, update, none, m, *args)

    # Every per-step input is scanned over (not indexed inside the step), so the reverse pass
    # stacks its cotangents instead of adding a (T, N) array at every step. The step is
    # rematerialised in the reverse pass (checkpoint) rather than storing the residuals of every
    # branch at every step: at flagship size value and gradient take 6.4 ms against 42 ms
    # (benchmarks/README.md).
    @jax.checkpoint
    def step(carry, xs):
        m, total = carry
        moves, n, pc, y, y_rec, v, flags = xs
        lp_visit, m = maybe(flags[0], observe_visit, m, v)
        if isinstance(moves, Transform):
            m = transformed(moves, m)
        else:
            up, down, c_up, c_down = moves
            session = lambda m: session_moments(m, n, pc, c_up, c_down, n_max)  # noqa: E731
            m = bernoulli_event(jax.lax.cond(flags[1], session, lambda m: m, m), mu_o, up, down)
        lp_ema, m = maybe(flags[2], lambda m: ema_moment_update(m, y, y_rec, phi), m)
        return (m, total + lp_visit + lp_ema), None

    T = n_t.shape[0]
    start = initial_moments(model, p)
    start = Moments(*(jnp.broadcast_to(a, n_t.shape[1:]) for a in start))
    flags = (visit_at[:T], session_at, ema_at)
    v_steps = tuple(a[:T] for a in visit_t)
    xs = (moves, n_t, pc_t, ema_t, ema_rec, v_steps, flags)
    (m, total), _ = jax.lax.scan(step, (start, jnp.zeros_like(start.mV)), xs)
    lp_last, _ = maybe(visit_at[T], observe_visit, m, tuple(a[T] for a in visit_t))
    return total + lp_last
