"""The performance machinery against its oracles, piece by piece.

Each piece of ``plasticity_rl._engine`` changes how a result is computed, never the result. The
oracles of the larger pieces live beside what they speed up: the belief loop's reverse pass in
``test_models.py`` (values and gradients of ``run_beliefs`` against a plain scan), the
parallel-chains driver in ``test_chains.py`` (NumPyro's own MCMC, in float64), the log-Gamma in
``test_inference.py`` (SciPy), the XLA options in ``test_xla_options.py`` and the ynn guard in
``test_xla_guard.py``. This file holds the direct, small ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl._engine.adjoint import adjoint_scan
from plasticity_rl._engine.devices import device_split, on_devices


def _step(s, x, p):
    """A nonlinear, elementwise step with a parameter broadcast over patients and one per patient."""
    return s + p["rate"] * jnp.tanh(x - s) * p["gain"] - 0.01 * s**2


def _loss(scan, s0, xs, p):
    return jnp.sum(jnp.sin(scan(s0, xs, p)))


def test_the_adjoint_reverse_pass_gives_the_plain_scans_gradients():
    key_x, key_s, key_g = jax.random.split(jax.random.key(0), 3)
    T, N = 60, 7
    xs = jax.random.uniform(key_x, (T, N))
    s0 = jax.random.uniform(key_s, (N,))
    p = {"rate": jnp.float32(0.3), "gain": 1.0 + 0.1 * jax.random.normal(key_g, (N,))}

    def plain(s0, xs, p):
        return jax.lax.scan(lambda s, x: (_step(s, x, p),) * 2, s0, xs)[1]

    def adjoint(s0, xs, p):
        return adjoint_scan(_step, s0, xs, p)

    np.testing.assert_allclose(adjoint(s0, xs, p), plain(s0, xs, p), rtol=1e-6, atol=1e-7)
    ours = jax.grad(lambda *a: _loss(adjoint, *a), argnums=(0, 1, 2))(s0, xs, p)
    theirs = jax.grad(lambda *a: _loss(plain, *a), argnums=(0, 1, 2))(s0, xs, p)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert float(jnp.abs(ours[2]["rate"])) > 1e-3  # the shared parameter's gradient is not trivially 0


def test_splitting_draws_over_devices_returns_every_draw_in_order():
    n = device_split(5)
    assert 1 <= n <= jax.local_device_count()
    draws = jnp.arange(5.0)[:, None] * jnp.ones((5, 3))
    out = on_devices(jax.pmap(lambda shared, d: d * shared, in_axes=(None, 0)), 2.0, draws, n)
    np.testing.assert_array_equal(out, 2.0 * draws)
