"""The mean and covariance of the beliefs when the outcomes themselves are not recorded.

A trial records ratings, not the 0/1 outcome of every everyday experience. Given the learning
rates (which depend on the schedule and the parameters, never on the outcomes), every bundled
update is affine in the beliefs for each value of the outcome: x' = A_o x + b_o, o in {0, 1}.
With o ~ Bernoulli(w) independent of x = (V, S), the first two moments propagate exactly:

    m' = w y_1 + (1 - w) y_0,                     y_o = A_o m + b_o
    P' = w A_1 P A_1^T + (1 - w) A_0 P A_0^T + w (1 - w) d d^T,   d = y_1 - y_0

(the law of total covariance, written in central terms: raw second moments minus m m^T would
lose a variance of 1e-8 under beliefs of ~0.3 to float32 cancellation). A_o and b_o are read
off the variant's own step functions (:func:`plasticity_rl.models.base.affine_map`), so these
moments follow whatever :func:`plasticity_rl.models.run_beliefs` runs, with no second copy of
the model. A session's corrective experiences are events of the same kind, each going well with
probability p_c, all at the step's rates. The moments are exact; the beliefs' distribution is
not Gaussian (a mixture of 2^T paths), which is what a likelihood built on them approximates.

Every quantity is a scalar per patient (the five entries of m and the symmetric P), so a cohort
is arrays of shape (N,) and the algebra is elementwise: XLA fuses it into a few loops, where
2 x 2 matrix products and Jacobians per step did not fuse (benchmarks/README.md).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from plasticity_rl.models.base import BeliefModel, Params, SessionMap, affine_map


class Moments(NamedTuple):
    """E[(V, S)] and Cov[(V, S)] of each patient; every field has the cohort's shape."""

    mV: jax.Array
    mS: jax.Array
    PVV: jax.Array
    PVS: jax.Array
    PSS: jax.Array

    @property
    def mean(self) -> jax.Array:
        """(..., 2): E[V], E[S]."""
        return jnp.stack([self.mV, self.mS], axis=-1)

    @property
    def cov(self) -> jax.Array:
        """(..., 2, 2): Cov[(V, S)]."""
        return jnp.stack([jnp.stack([self.PVV, self.PVS], -1), jnp.stack([self.PVS, self.PSS], -1)], axis=-2)


def _mapped(A: SessionMap, m: Moments):
    """(A m + b, A P A^T) for one affine map, elementwise."""
    yV = A.VV * m.mV + A.VS * m.mS + A.bV
    yS = A.SV * m.mV + A.SS * m.mS + A.bS
    cVV = A.VV * A.VV * m.PVV + 2.0 * A.VV * A.VS * m.PVS + A.VS * A.VS * m.PSS
    cVS = A.VV * A.SV * m.PVV + (A.VV * A.SS + A.VS * A.SV) * m.PVS + A.VS * A.SS * m.PSS
    cSS = A.SV * A.SV * m.PVV + 2.0 * A.SV * A.SS * m.PVS + A.SS * A.SS * m.PSS
    return (yV, yS), (cVV, cVS, cSS)


def bernoulli_event(moments: Moments, w, up: SessionMap, down: SessionMap) -> Moments:
    """Moments after one event: map ``up`` with probability ``w``, ``down`` otherwise."""
    (uV, uS), (uVV, uVS, uSS) = _mapped(up, moments)
    (dV, dS), (dVV, dVS, dSS) = _mapped(down, moments)
    gV, gS = uV - dV, uS - dS
    ww = w * (1.0 - w)
    return Moments(
        dV + w * gV,
        dS + w * gS,
        dVV + w * (uVV - dVV) + ww * gV * gV,
        dVS + w * (uVS - dVS) + ww * gV * gS,
        dSS + w * (uSS - dSS) + ww * gS * gS,
    )


def _keep_where(flag, new: Moments, old: Moments) -> Moments:
    return Moments(*(jnp.where(flag, a, b) for a, b in zip(new, old)))


def everyday_maps(model: BeliefModel, p: Params, r) -> tuple[SessionMap, SessionMap]:
    """The everyday event's maps for a good (o = 1) and a bad (o = 0) outcome, at rates ``r``."""
    shape, dtype = jnp.shape(r["alpha"]), jnp.result_type(r["alpha"])
    maps = [
        affine_map(lambda s, o=o: model.everyday(s, jnp.asarray(o, dtype), r, p), shape, dtype)
        for o in (1.0, 0.0)
    ]
    return maps[0], maps[1]


def corrective_maps(model: BeliefModel, p: Params, r) -> tuple[SessionMap, SessionMap]:
    """One corrective experience's maps, going well (1) or not (0), at rates ``r``."""
    shape, dtype = jnp.shape(r["alpha"]), jnp.result_type(r["alpha"])
    one = jnp.ones(shape, jnp.int32)
    maps = [
        affine_map(lambda s, c=c: model.session(s, jnp.full(shape + (1,), c, dtype), one, r, p), shape, dtype)
        for c in (1.0, 0.0)
    ]
    return maps[0], maps[1]


def session_moments(moments: Moments, n, p_c, up: SessionMap, down: SessionMap, n_max: int) -> Moments:
    """Moments after a session of ``n`` (<= n_max, static) corrective experiences, one at a time."""
    for k in range(n_max):
        moments = _keep_where(k < n, bernoulli_event(moments, p_c, up, down), moments)
    return moments


def initial_moments(model: BeliefModel, p: Params) -> Moments:
    """The beliefs at step 0: known exactly (zero covariance)."""
    start = model.initial(p)
    V, S = jnp.broadcast_arrays(start.V, start.S)
    zero = jnp.zeros_like(V)
    return Moments(V, S, zero, zero, zero)


def belief_moments(model: BeliefModel, p: Params, g_k, gate, mu_o, n_corr, p_c, n_max: int) -> Moments:
    """Mean and covariance of (V, S) after each step, outcomes unrecorded.

    Shapes as :func:`plasticity_rl.models.run_beliefs` takes them, (..., T): ``g_k``, ``gate``
    the plasticity drive and acute state; ``n_corr`` corrective experiences delivered at each
    step (0 for none or a missed session), at most ``n_max`` (static); ``p_c`` the chance each
    of them goes well; ``mu_o`` the chance an everyday experience goes well. Within a step the
    session comes first, then the everyday event. Returns Moments with fields (..., T).
    """
    to_time = lambda a: jnp.moveaxis(jnp.asarray(a), -1, 0)  # noqa: E731
    r = model.rates(p, to_time(g_k), to_time(gate))
    up, down = everyday_maps(model, p, r)
    c_up, c_down = corrective_maps(model, p, r)

    n_t = to_time(n_corr)
    # Sessions are rare: a branch on the steps where any patient has one (a branch as long as
    # n_corr is not batched under vmap).
    session_at = jnp.any(n_t > 0, axis=tuple(range(1, n_t.ndim)))

    def step(moments, xs):
        up, down, c_up, c_down, n, pc, go = xs
        moments = jax.lax.cond(
            go, lambda m: session_moments(m, n, pc, c_up, c_down, n_max), lambda m: m, moments
        )
        moments = bernoulli_event(moments, mu_o, up, down)
        return moments, moments

    xs = (up, down, c_up, c_down, n_t, to_time(p_c), session_at)
    start = initial_moments(model, p)
    start = Moments(*(jnp.broadcast_to(a, n_t.shape[1:]) for a in start))
    _, out = jax.lax.scan(step, start, xs)
    return Moments(*(jnp.moveaxis(a, 0, -1) for a in out))
