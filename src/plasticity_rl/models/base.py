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
    alpha_neg: jax.Array  # alpha-_j in asymmetric variants, else equal to alpha
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
        # Fixed point of E[dV] = a+ mu (1 - V) - a- (1 - mu) V + kappa (S0 - V) = 0.
        V_eq = (a_pos * mu + p["kappa"] * S0) / (a_pos * mu + a_neg * (1 - mu) + p["kappa"])
        V0 = jnp.clip(V_eq + p.get("V0_offset", 0.0), 1e-4, 1.0 - 1e-4)
        return Beliefs(V=V0, S=S0)


def run_beliefs(model: BeliefModel, p: Params, g_k, gate, everyday, corrective, n_corr) -> Trajectory:
    """Beliefs of one patient over T steps, given the outcomes they experienced.

    g_k: (T,) saturated plasticity drive; gate: (T,) acute drug state in [0, 1];
    everyday: (T,) outcomes in {0, 1}; corrective: (T, n_max) corrective outcomes, of which the
    first ``n_corr[j]`` are delivered at step j (0: no session, or a missed one).
    Within a step the session comes first, then the everyday event (DESIGN 1.2).
    """
    rates = model.rates(p, g_k, gate)

    def step(state, xs):
        r, o, cs, n = xs
        state = model.session(state, cs, n, r, p)
        state = model.everyday(state, o, r, p)
        return state, state

    _, (V, S) = jax.lax.scan(step, model.initial(p), (rates, everyday, corrective, n_corr))
    alpha = rates["alpha"]
    return Trajectory(alpha=alpha, alpha_neg=rates.get("alpha_neg", alpha), V=V, S=S)


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
    weights = jnp.where(k < n, rate * keep ** jnp.maximum(n - 1 - k, 0), 0.0)
    return keep**n * x + jnp.sum(weights * cs, axis=-1)


def sequential_updates(state: Beliefs, cs, n, one_update) -> Beliefs:
    """Apply ``one_update(state, c)`` for cs[0], ..., cs[n-1] (for rules with no closed form)."""
    for k in range(cs.shape[-1]):
        new = one_update(state, cs[k])
        state = Beliefs(*(jnp.where(k < n, a, b) for a, b in zip(new, state)))
    return state
