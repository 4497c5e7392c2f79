"""The belief-model interface and the one recurrence every caller uses.

A model is three pure functions on scalars (one patient, one step) plus metadata:

- ``rates(p, g_k, gate)``: per-step learning rates from the saturated plasticity drive;
- ``session(state, cs, n, r, p)``: a therapy session's ``n`` corrective outcomes ``cs[:n]``;
- ``everyday(state, o, r, p)``: one everyday outcome.

:func:`run_beliefs` scans them over time. The simulator and the likelihood both call it, so the
fitted model cannot drift from the simulated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Params = dict  # name -> scalar (one patient) or array (batched)


class Beliefs(NamedTuple):
    V: jax.Array  # day-to-day expectation that experiences go well
    S: jax.Array  # slow core belief (schema); equals V in single-belief models


class Trajectory(NamedTuple):
    """Per-step output of :func:`run_beliefs`: beliefs *after* the step's events."""

    alpha: jax.Array  # alpha_j (alpha+_j in asymmetric variants)
    alpha_neg: jax.Array | None  # alpha-_j in asymmetric variants, else None
    V: jax.Array
    S: jax.Array


@dataclass(frozen=True)
class BeliefModel:
    name: str
    description: str
    patient_params: tuple[str, ...]  # per-patient, unconstrained (hierarchical in the fit)
    group_params: tuple[str, ...]  # shared by the cohort
    has_schema: bool
    asymmetric: bool
    rates: Callable[[Params, jax.Array, jax.Array], dict]
    session: Callable[..., Beliefs]
    everyday: Callable[..., Beliefs]

    def initial(self, p: Params) -> Beliefs:
        """Beliefs at step 0.

        Single-belief models start at V0 = sigmoid(logit_S0). Schema models start V at its
        quasi-equilibrium between the schema and the everyday evidence (mean ``mu_o``) at
        baseline learning rates, so an untreated patient's V does not drift in the first days
        of a trial; ``V0_offset`` moves it from there.
        """
        S0 = jax.nn.sigmoid(p["logit_S0"])
        if not self.has_schema:
            V0 = jnp.clip(S0 + p.get("V0_offset", 0.0), 1e-4, 1.0 - 1e-4)
            return Beliefs(V=V0, S=V0)
        r = self.rates(p, jnp.zeros(()), jnp.zeros(()))
        a_pos, a_neg, mu = r["alpha"], r.get("alpha_neg", r["alpha"]), p["mu_o"]
        # Fixed point of E[dV] = (1 - kappa) (a+ mu (1 - V) - a- (1 - mu) V) + kappa (S0 - V) = 0.
        learn = 1.0 - p["kappa"]
        V_eq = (learn * a_pos * mu + p["kappa"] * S0) / (learn * (a_pos * mu + a_neg * (1 - mu)) + p["kappa"])
        V0 = jnp.clip(V_eq + p.get("V0_offset", 0.0), 1e-4, 1.0 - 1e-4)
        return Beliefs(V=V0, S=S0)


def run_beliefs(model: BeliefModel, p: Params, g_k, gate, everyday, corrective, n_corr, any_session=None,
                unroll: int = 1) -> Trajectory:
    """Beliefs over T steps, given the outcomes experienced: THE recurrence of the package.

    Shapes are patient-major with optional leading batch dimensions ``...`` (none for one
    patient): g_k, gate: (..., T) saturated plasticity drive and acute drug state;
    everyday: (..., T) outcomes in {0, 1} (any dtype); corrective: (..., T, n_max) corrective
    outcomes, of which the first ``n_corr[..., j]`` are delivered at step j (0: no session, or a
    missed one); parameters in ``p`` have shape ``...`` (or are scalars).
    Within a step the session comes first, then the everyday event (DESIGN 1.2).

    Sessions are rare (12 of 448 steps in the flagship trial), so the session update runs under
    ``lax.cond`` only at steps flagged in ``any_session`` (T,) - by default, steps where any
    patient in the batch has corrective experiences. A session with n = 0 leaves beliefs exactly
    unchanged, so skipping it changes no number. Under ``vmap`` pass ``any_session`` unbatched
    (``in_axes=None``) to keep the branch a real branch. The session is rematerialised in the
    backward pass: cheaper than storing its residuals at every step. ``unroll`` steps per loop
    iteration: 4 cuts the likelihood's gradient time by about a quarter (benchmarks/README.md);
    the simulator's forward pass is fastest at 1.
    """
    to_time_major = lambda x: jnp.moveaxis(jnp.asarray(x), -1, 0)  # noqa: E731
    g_t, gate_t, o_t = to_time_major(g_k), to_time_major(gate), to_time_major(everyday)
    c_t = jnp.moveaxis(jnp.asarray(corrective), -2, 0)  # (T, ..., n_max)
    n_t = to_time_major(n_corr)
    if any_session is None:
        any_session = jnp.any(n_t > 0, axis=tuple(range(1, n_t.ndim)))
    rates = model.rates(p, g_t, gate_t)  # (T, ...): parameters broadcast over time
    state0 = model.initial(p)
    dtype = jnp.result_type(state0.V)
    session = jax.checkpoint(model.session)

    def step(state, xs):
        r, o, cs, n, go = xs
        cs = cs.astype(dtype)
        state = jax.lax.cond(go, lambda s: session(s, cs, n, r, p), lambda s: s, state)
        state = model.everyday(state, o.astype(dtype), r, p)
        return state, state

    _, (V, S) = jax.lax.scan(step, state0, (rates, o_t, c_t, n_t, any_session), unroll=unroll)
    back = lambda x: jnp.moveaxis(x, 0, -1)  # noqa: E731
    alpha_neg = back(rates["alpha_neg"]) if "alpha_neg" in rates else None
    return Trajectory(alpha=back(rates["alpha"]), alpha_neg=alpha_neg, V=back(V), S=back(S))


# ----------------------------------------------------------------------------- update pieces


def delta_rule(x, target, rate):
    """x + rate (target - x): the prediction-error update."""
    return x + rate * (target - x)


def repeated_delta_rule(x, cs, n, rate):
    """n delta-rule updates of x toward cs[0], ..., cs[n-1] at one rate, in closed form.

    x_n = (1 - rate)^n x + rate sum_k (1 - rate)^(n-1-k) cs[k]. Cheap enough to run at every
    step (n = 0 leaves x unchanged), with exact gradients.
    """
    k = jnp.arange(cs.shape[-1])
    keep = 1.0 - rate
    n_, keep_ = jnp.asarray(n)[..., None], jnp.asarray(keep)[..., None]  # broadcast over k
    weights = jnp.where(k < n_, (1.0 - keep_) * keep_ ** jnp.maximum(n_ - 1 - k, 0), 0.0)
    return keep**n * x + jnp.sum(weights * cs, axis=-1)


def sequential_updates(state: Beliefs, cs, n, one_update) -> Beliefs:
    """Apply ``one_update(state, c)`` for cs[0], ..., cs[n-1] (for rules with no closed form)."""
    for k in range(cs.shape[-1]):
        new = one_update(state, cs[..., k])
        state = Beliefs(*(jnp.where(k < n, a, b) for a, b in zip(new, state)))
    return state
