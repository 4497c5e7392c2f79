"""The XLA:CPU miscompilation that gave wrong Beta log-densities for large batches stays away.

A vmap over 200 parameter draws of the EMA likelihood (50,400 Beta log-densities) was wrong past
element 32,760 under jaxlib 0.10.2's ynn fusion; plasticity_rl turns that path off on import.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import plasticity_rl  # noqa: F401 - sets XLA_FLAGS before the first computation
from plasticity_rl._xla import FLAG_NAME, _jaxlib_at_least


def test_flag_is_set_where_jaxlib_knows_it():
    if _jaxlib_at_least(0, 10, 1):
        assert FLAG_NAME in os.environ.get("XLA_FLAGS", "")


def test_large_batched_beta_log_density_matches_one_row_at_a_time():
    B, N, T, D = 200, 18, 56, 14
    V = jax.random.uniform(jax.random.key(0), (B, N, T), minval=0.1, maxval=0.9)
    y = jax.random.uniform(jax.random.key(1), (N, D), minval=0.05, maxval=0.95)
    idx = jnp.arange(D) * 4 + 3

    @jax.jit
    def log_density(V):
        v = jnp.clip(V[..., idx], 1e-6, 1 - 1e-6)
        return dist.Beta(v * 18.0, (1.0 - v) * 18.0).log_prob(y)

    batched = np.asarray(log_density(V))
    one_by_one = np.concatenate([np.asarray(log_density(V[i:i + 1])) for i in range(B)])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)
