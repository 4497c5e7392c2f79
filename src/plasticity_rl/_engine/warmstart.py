"""A warm start for NUTS: a short mean-field ADVI run on NUTS's own potential energy.

Why. NUTS's warm-up begins with a unit mass matrix at the prior centres. In the flagship fit the
unconstrained posterior scales run from 0.02 (logit kappa) to 1.2 (the z-scores), so the first
adaptation windows need trees of depth 8-9: the first 100 warm-up iterations took 139 s, about
as long as the 1,000 draws after them (benchmarks/README.md). Starting from the
approximate posterior, with its variances as the initial (diagonal) inverse mass matrix, the same
100 iterations took 22 s (both figures include the ~12 s compile). The adaptation replaces that
matrix with its own estimate after its first window, as usual, so the sampler and its
diagnostics are unchanged: only where the chains start, and the first window's mass matrix, differ.

What. Mean-field Gaussian VI (ADVI) in NUTS's unconstrained space: q = N(mu, diag(s^2)), the
negative ELBO E_q[U(z)] - sum(log s) minimised by Adam with one reparameterised draw per step,
where U is NumPyro's ``potential_energy`` of the same model NUTS samples. Each chain then starts
at its own draw from q, so the chains start dispersed over the bulk of the posterior (R-hat
compares chains that did not start at one point).

NumPyro's ``SVI`` with ``AutoNormal`` computes the same thing, but its compiled program took
20.5 s to build at flagship size against 4.4 s for this one (same 1,000 steps, 2-3 s to run), so
this module writes the ELBO out on the potential directly. The program takes the data as an
argument and is cached per model and data shape, so a second fit of same-shaped data compiles
nothing.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.optim as optim
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import potential_energy

from plasticity_rl._engine.chains import BoundModel
from plasticity_rl._engine.xla import jit_fit_program

STEPS = 1000  # flagship: 2-3 s; the loss moves by under 5 nats between the last two tenths
LEARNING_RATE = 0.02
INIT_SCALE = 0.1  # q's starting SD on every unconstrained coordinate


class WarmStart(NamedTuple):
    """q's centre and SDs per latent site (unconstrained), and how the optimisation ended."""

    loc: dict
    scale: dict
    loss: float  # mean negative ELBO over the last tenth of the steps (without q's constant entropy term)
    drift: float  # mean loss of the second-to-last tenth minus that of the last tenth

    @property
    def ok(self) -> bool:
        flat = [np.asarray(v) for v in (*self.loc.values(), *self.scale.values())]
        return bool(np.isfinite(self.loss) and all(np.all(np.isfinite(v)) for v in flat))

    def inverse_mass_matrix(self) -> jnp.ndarray:
        """q's variances in NUTS's flat order (sites sorted by name, each raveled)."""
        return jnp.concatenate([jnp.ravel(self.scale[k]) ** 2 for k in sorted(self.scale)])

    def chain_inits(self, key, chains: int) -> dict:
        """One draw from q per chain: site -> (chains, ...) unconstrained starting values."""
        out = {}
        for i, k in enumerate(sorted(self.loc)):
            loc, scale = jnp.asarray(self.loc[k]), jnp.asarray(self.scale[k])
            eps = jax.random.normal(jax.random.fold_in(key, i), (chains,) + loc.shape, loc.dtype)
            out[k] = loc + scale * eps
        return out


@lru_cache(maxsize=8)
def _program(model: BoundModel, steps: int, learning_rate: float):

    def run(z0: dict, x, key):
        flat0, unravel = ravel_pytree(z0)
        opt = optim.Adam(learning_rate)

        def neg_elbo(params, eps):
            mu, log_s = params
            return potential_energy(model, (x,), {}, unravel(mu + jnp.exp(log_s) * eps)) - jnp.sum(log_s)

        grad = jax.value_and_grad(neg_elbo)

        def step(state, k):
            loss, g = grad(opt.get_params(state), jax.random.normal(k, flat0.shape, flat0.dtype))
            return opt.update(g, state), loss

        state0 = opt.init((flat0, jnp.full_like(flat0, jnp.log(INIT_SCALE))))
        state, losses = jax.lax.scan(step, state0, jax.random.split(key, steps))
        mu, log_s = opt.get_params(state)
        return unravel(mu), unravel(jnp.exp(log_s)), losses

    return jit_fit_program(run)


def advi(
    model: BoundModel, x, z0: dict, key, steps: int = STEPS, learning_rate: float = LEARNING_RATE
) -> WarmStart:
    """Fit q from ``z0`` (unconstrained starting point, site -> array) on data ``x``."""
    loc, scale, losses = _program(model, int(steps), float(learning_rate))(z0, x, key)
    losses = np.asarray(losses, np.float64)
    tenth = max(1, losses.shape[0] // 10)
    last, before = (
        losses[-tenth:].mean(),
        losses[-2 * tenth : -tenth].mean() if losses.shape[0] >= 2 * tenth else np.nan,
    )
    return WarmStart(loc=dict(loc), scale=dict(scale), loss=float(last), drift=float(before - last))
