"""The mean and covariance of the beliefs when the outcomes themselves are not recorded.

A trial records ratings, not the 0/1 outcome of every everyday experience. Given the learning
rates (which depend on the schedule and the parameters, never on the outcomes), every bundled
update is affine in the beliefs for each value of the outcome: x' = A_o x + b_o, o in {0, 1}.
With o ~ Bernoulli(mu) independent of x, the first two moments of x = (V, S) propagate exactly:

    m' = sum_o P(o) y_o,                      y_o = A_o m + b_o
    P' = sum_o P(o) (A_o P A_o^T + (y_o - m') (y_o - m')^T)

A_o and b_o are read off the variant's own step functions (their Jacobian and value), so these
moments follow whatever :func:`plasticity_rl.models.run_beliefs` runs, with no second copy of the
model. Corrective experiences in a session are events of the same kind, each going well with
probability p_c. The moments are exact; the beliefs' distribution is not Gaussian (it is a
mixture of 2^T paths), which is what a likelihood built on them has to approximate.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from plasticity_rl.models.base import BeliefModel, Beliefs, Params


class Moments(NamedTuple):
    mean: jax.Array  # (..., 2): E[V], E[S]
    cov: jax.Array  # (..., 2, 2): Cov[(V, S)]


def _affine(update, m):
    """(A, b) of an affine map ``update`` of the 2-vector of beliefs (exact for any m)."""
    A = jax.jacfwd(update)(m)
    return A, update(m) - A @ m


def bernoulli_event(update, mu, moments: Moments) -> Moments:
    """Moments after one event whose outcome o ~ Bernoulli(mu) is independent of the beliefs.

    ``update(x, o)`` maps the beliefs (V, S) to the beliefs after outcome o; it must be affine in
    x for each o (every bundled variant's update is).
    """
    m, P = moments
    branches = []
    for o, w in ((1.0, mu), (0.0, 1.0 - mu)):
        A, b = _affine(lambda x, o=o: update(x, o), m)
        branches.append((w, A, A @ m + b))
    mean = sum(w * y for w, _, y in branches)
    # The law of total covariance, in central terms: raw second moments minus m m^T would lose
    # a variance of 1e-8 under beliefs of ~0.3 to float32 cancellation.
    cov = sum(w * (A @ P @ A.T + jnp.outer(y - mean, y - mean)) for w, A, y in branches)
    return Moments(mean, cov)


def _as_beliefs(model: BeliefModel, x) -> Beliefs:
    # Single-belief models carry S = V; their steps read V only and return S = V.
    return Beliefs(x[0], x[1] if model.has_schema else x[0])


def step_moments(model: BeliefModel, p: Params, moments: Moments, g_k, gate, mu_o, n_corr, p_c, n_max: int):
    """Moments after one step: its session's ``n_corr`` corrective experiences, then the everyday one."""
    r = model.rates(p, g_k, gate)

    def everyday(x, o):
        s = model.everyday(_as_beliefs(model, x), o, r, p)
        return jnp.stack([s.V, s.S])

    def corrective(x, c):
        s = model.session(_as_beliefs(model, x), jnp.reshape(c, (1,)), 1, r, p)
        return jnp.stack([s.V, s.S])

    for k in range(n_max):  # the session's corrective experiences, one at a time
        after = bernoulli_event(corrective, p_c, moments)
        moments = Moments(*(jnp.where(k < n_corr, a, b) for a, b in zip(after, moments)))
    return bernoulli_event(everyday, mu_o, moments)


def initial_moments(model: BeliefModel, p: Params) -> Moments:
    """The beliefs at step 0: known exactly (zero covariance)."""
    start = model.initial(p)
    x0 = jnp.stack([start.V, start.S])
    return Moments(x0, jnp.zeros((2, 2), x0.dtype))


def belief_moments(model: BeliefModel, p: Params, g_k, gate, mu_o, n_corr, p_c, n_max: int) -> Moments:
    """Mean and covariance of (V, S) after each step of one patient, outcomes unrecorded.

    ``p``: the patient's parameters as :func:`run_beliefs` takes them (``mu_o`` included for
    the starting point); ``g_k``, ``gate``: (T,) plasticity drive and acute state; ``mu_o``: the
    chance an everyday experience goes well; ``n_corr``: (T,) corrective experiences delivered at
    each step (0 for none or a missed session), at most ``n_max`` (static); ``p_c``: (T,) the
    chance each of them goes well. Within a step the session comes first, then the everyday
    event, as in :func:`run_beliefs`. Returns means (T, 2) and covariances (T, 2, 2).
    """

    def step(moments, inputs):
        moments = step_moments(model, p, moments, *inputs[:2], mu_o, *inputs[2:], n_max)
        return moments, moments

    _, out = jax.lax.scan(step, initial_moments(model, p), (g_k, gate, n_corr, p_c))
    return out
