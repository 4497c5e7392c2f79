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
    return (yV, yS), _sandwich(A, m.PVV, m.PVS, m.PSS)


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


# ----------------------------------------------------------------------------- many steps at once
#
# Where the learning rate does not depend on the outcome (every variant that is not
# ``asymmetric``), both outcomes move the beliefs by the same matrix A and differ only in the
# offset: A_1 = A_0. Then an event maps the moments as m' = A m + c, P' = A P A^T + Q with
# c = w b_1 + (1 - w) b_0 and Q = w (1 - w) (b_1 - b_0)(b_1 - b_0)^T, independent of m. Such maps
# compose into one of the same form, so each step's events (its session's corrective
# experiences, then the everyday one) are one map, computed for every step at once before the
# filter's loop, which then applies one map per step.


class Transform(NamedTuple):
    """(m, P) -> (Phi m + c, Phi P Phi^T + Q); Phi = [[VV, VS], [SV, SS]], Q symmetric."""

    VV: jax.Array
    VS: jax.Array
    SV: jax.Array
    SS: jax.Array
    cV: jax.Array
    cS: jax.Array
    QVV: jax.Array
    QVS: jax.Array
    QSS: jax.Array


def event_transform(w, up: SessionMap, down: SessionMap) -> Transform:
    """One Bernoulli(w) event whose two outcomes share A (``up``'s), as a Transform."""
    gV, gS = up.bV - down.bV, up.bS - down.bS
    ww = w * (1.0 - w)
    return Transform(
        up.VV,
        up.VS,
        up.SV,
        up.SS,
        down.bV + w * gV,
        down.bS + w * gS,
        ww * gV * gV,
        ww * gV * gS,
        ww * gS * gS,
    )


def identity_transform(shape, dtype) -> Transform:
    one, zero = jnp.ones(shape, dtype), jnp.zeros(shape, dtype)
    return Transform(one, zero, zero, one, zero, zero, zero, zero, zero)


def _sandwich(t: Transform | SessionMap, PVV, PVS, PSS):
    """Phi P Phi^T, elementwise (Phi: the VV, VS, SV, SS fields of a Transform or a SessionMap)."""
    cVV = t.VV * t.VV * PVV + 2.0 * t.VV * t.VS * PVS + t.VS * t.VS * PSS
    cVS = t.VV * t.SV * PVV + (t.VV * t.SS + t.VS * t.SV) * PVS + t.VS * t.SS * PSS
    cSS = t.SV * t.SV * PVV + 2.0 * t.SV * t.SS * PVS + t.SS * t.SS * PSS
    return cVV, cVS, cSS


def then(first: Transform, second: Transform) -> Transform:
    """``first``, then ``second``, as one Transform."""
    qVV, qVS, qSS = _sandwich(second, first.QVV, first.QVS, first.QSS)
    return Transform(
        second.VV * first.VV + second.VS * first.SV,
        second.VV * first.VS + second.VS * first.SS,
        second.SV * first.VV + second.SS * first.SV,
        second.SV * first.VS + second.SS * first.SS,
        second.VV * first.cV + second.VS * first.cS + second.cV,
        second.SV * first.cV + second.SS * first.cS + second.cS,
        qVV + second.QVV,
        qVS + second.QVS,
        qSS + second.QSS,
    )


def transformed(t: Transform, m: Moments) -> Moments:
    """The moments after ``t``."""
    PVV, PVS, PSS = _sandwich(t, m.PVV, m.PVS, m.PSS)
    return Moments(
        t.VV * m.mV + t.VS * m.mS + t.cV,
        t.SV * m.mV + t.SS * m.mS + t.cS,
        PVV + t.QVV,
        PVS + t.QVS,
        PSS + t.QSS,
    )


def step_transforms(
    model: BeliefModel, p: Params, r, mu_o, n, p_c, n_max: int, session_steps=None
) -> Transform:
    """Every step's Transform at once (rates ``r``, counts ``n``, p_c all (T, ...)): its
    session's ``n`` corrective experiences, then the everyday event. Only for variants that are
    not ``asymmetric`` (A_1 = A_0). ``session_steps`` (K,): the only steps where ``n`` may be
    non-zero (sessions are composed there alone: at every step they cost 3x the rest)."""
    if model.asymmetric:
        raise ValueError(
            f"variant {model.name!r}: its rates depend on the outcome; use the step-by-step moments"
        )
    up, down = everyday_maps(model, p, r)
    everyday = event_transform(mu_o, up, down)
    if n_max == 0:
        return everyday
    take = (lambda a: a) if session_steps is None else (lambda a: jnp.asarray(a)[session_steps])  # noqa: E731
    r_s = jax.tree.map(lambda a: take(jnp.broadcast_to(a, jnp.shape(n))), r)
    p_s = {k: v if jnp.ndim(v) == 0 else take(jnp.broadcast_to(v, jnp.shape(n))) for k, v in p.items()}
    n_s, pc_s = take(n), take(p_c)
    c_up, c_down = corrective_maps(model, p_s, r_s)
    corrective = event_transform(pc_s, c_up, c_down)
    total = identity_transform(jnp.shape(n_s), jnp.result_type(up.VV))
    for k in range(n_max):
        after = then(total, corrective)
        total = Transform(*(jnp.where(k < n_s, a, b) for a, b in zip(after, total)))
    if session_steps is not None:  # the identity elsewhere
        ident = identity_transform(jnp.shape(n), total.VV.dtype)
        total = Transform(*(i.at[session_steps].set(a) for i, a in zip(ident, total)))
    return then(total, everyday)
