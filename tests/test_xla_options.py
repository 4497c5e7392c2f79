"""The compiler options of the fit's programs (plasticity_rl._engine.xla.jit_fit_program)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl._engine.xla import FIT_COMPILER_OPTIONS, fit_compiler_options, fit_program, jit_fit_program


def test_this_jaxlib_takes_the_fit_compiler_options():
    """If a jaxlib stops accepting them, fits fall back to XLA's defaults and compile ~25 % slower
    (benchmarks/README.md): this test is where that shows."""
    assert jax.default_backend() == "cpu"
    assert fit_compiler_options() == FIT_COMPILER_OPTIONS


def test_a_program_compiled_with_them_agrees_with_the_default_compilation():
    def f(x):
        return jnp.sum(jnp.tanh(x) * jnp.exp(-0.5 * x**2) + jnp.log1p(x**2))

    x = jnp.linspace(-4.0, 4.0, 100_003, dtype=jnp.float32)
    ours = jit_fit_program(jax.value_and_grad(f))(x)
    default = jax.jit(jax.value_and_grad(f))(x)
    np.testing.assert_allclose(ours[0], default[0], rtol=1e-5)
    np.testing.assert_allclose(ours[1], default[1], rtol=1e-5, atol=1e-6)


def test_the_decorated_form_inlines_inside_another_program():
    """JAX refuses compiler options on a nested jit, so a pmap over devices calls ``.inline``."""

    @fit_program(static_argnames=("k",))
    def scaled(x, k):
        return k * jnp.sin(x)

    x = jnp.arange(8.0)
    np.testing.assert_allclose(scaled(x, k=2), 2 * np.sin(np.arange(8.0)), rtol=1e-6)
    inner = jit_fit_program(jax.vmap(lambda row: scaled.inline(row, 3)))(x.reshape(2, 4))
    np.testing.assert_allclose(inner.ravel(), 3 * np.sin(np.arange(8.0)), rtol=1e-6)
