"""The adjoint-method reverse pass of a scan: the belief recurrence's gradient, about 2x cheaper.

Machinery, not model: :func:`plasticity_rl.models.run_beliefs` computes the same beliefs as a
plain ``lax.scan`` of the model's step functions; this only changes how JAX differentiates that
loop (tests/test_models.py checks values and gradients against the plain scan).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp


@partial(jax.custom_vjp, nondiff_argnums=(0, 4))
def adjoint_scan(step, state0, xs, params, unroll: int = 1):
    """The states after each step of ``state = step(state, xs[t], params)``, stacked over t.

    Differentiated by the adjoint method: the reverse pass carries only the state's cotangent
    lambda_t back through each step's Jacobian in the state, then takes every step's cotangents
    for ``xs`` and ``params`` at once, vectorised over time. JAX's own reverse pass of a scan
    also carries the cotangents of ``params`` through the loop, summed over patients at every
    step, which costs about as much again. ``step`` must broadcast over a leading time axis
    (elementwise steps do); it may be nonlinear in the state, since every Jacobian is taken at
    the stored states.
    """
    return jax.lax.scan(lambda s, x: (step(s, x, params),) * 2, state0, xs, unroll=unroll)[1]


def _adjoint_scan_fwd(step, state0, xs, params, unroll):
    states = adjoint_scan(step, state0, xs, params, unroll)
    return states, (state0, xs, params, states)


def _adjoint_scan_bwd(step, unroll, res, ct_states):
    state0, xs, params, states = res
    before = jax.tree.map(lambda a0, a: jnp.concatenate([a0[None], a[:-1]]), state0, states)

    def back(lam_after, args):
        state, x, ct = args
        lam = jax.tree.map(jnp.add, lam_after, ct)  # cotangent of the state after this step
        _, vjp = jax.vjp(lambda s: step(s, x, params), state)
        return vjp(lam)[0], lam

    lam0, lam = jax.lax.scan(
        back, jax.tree.map(jnp.zeros_like, state0), (before, xs, ct_states), reverse=True, unroll=unroll
    )
    # All steps at once, with ``params`` broadcast to the stacked states' shape first, so that
    # their cotangents come back per step and element and are summed here, over time first.
    full = jax.tree.leaves(before)[0].shape
    widen = lambda q: jnp.broadcast_to(q, full) if _broadcasts_to(jnp.shape(q), full) else q  # noqa: E731
    _, vjp = jax.vjp(lambda x, q: step(before, x, q), xs, jax.tree.map(widen, params))
    ct_xs, ct_full = vjp(lam)
    return lam0, ct_xs, jax.tree.map(lambda c, q: _sum_over_steps(c, jnp.shape(q)), ct_full, params)


def _broadcasts_to(shape, full) -> bool:
    try:
        return jnp.broadcast_shapes(tuple(shape), tuple(full)) == tuple(full)
    except ValueError:
        return False


def _sum_over_steps(ct, shape):
    """A (T, ...) cotangent summed to a parameter of ``shape`` (broadcast over time and patients).

    Time first, as a product with a vector of ones, then the rest. Written as one sum, XLA:CPU
    reduces all T x N elements through a 32 x 32-window tree: ~19 us per scalar parameter at
    flagship size against ~2 us this way. Not ``ct.sum(0).sum()``: XLA merges the two
    sums back into one. Not ``ct.sum(0)`` behind an optimisation barrier either, though as fast:
    with it, NumPyro's own NUTS (the same model compiled into another program) drew different
    samples from ours within 8 draws (tests/test_chains.py), with the product the same ones.
    """
    if ct.shape == tuple(shape):  # not broadcast (an indexed table of session maps)
        return ct
    ct = jnp.tensordot(jnp.ones(ct.shape[0], ct.dtype), ct, axes=1)
    lead = ct.ndim - len(shape)
    ct = ct.sum(tuple(range(lead))) if lead else ct
    kept = tuple(i for i, (have, want) in enumerate(zip(ct.shape, shape)) if want == 1 and have != 1)
    return (ct.sum(kept, keepdims=True) if kept else ct).reshape(shape)


adjoint_scan.defvjp(_adjoint_scan_fwd, _adjoint_scan_bwd)
