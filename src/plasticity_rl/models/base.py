"""The belief-model interface and the one recurrence every caller uses.

A model is three pure functions on scalars (one patient, one step) plus metadata:

- ``rates(p, g_k, gate)``: per-step learning rates from the saturated plasticity drive;
- ``session(state, cs, n, r, p)``: a therapy session's ``n`` corrective outcomes ``cs[:n]``;
- ``everyday(state, o, r, p)``: one everyday outcome.

:func:`run_beliefs` scans them over time. The simulator and the likelihood both call it, so the
fitted model cannot drift from the simulated one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from plasticity_rl._engine.adjoint import adjoint_scan
from plasticity_rl.params import PARAMS
from plasticity_rl.registry import MODELS

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
    # The variant ``plasticity-rl run`` fits beside this one and compares it with: the model
    # that says what this one claims is not in the data (``schema`` vs timing-blind ``schema_ungated``).
    foil: str = "schema_ungated"
    # session(s) = A s + b for beliefs in (0, 1) and outcomes in {0, 1}, so run_beliefs may apply
    # that map instead (true of every registered model: even alpha+/- pick their rate by the
    # outcome). A model with a nonlinear session sets False and keeps the branching loop.
    affine_session: bool = True

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


def register(model: BeliefModel, *, replace: bool = False) -> BeliefModel:
    """Add a variant to the registry (``MODELS``), so configs, the simulator and the fit know it by name.

    Its parameters must be rows of the parameter table (:data:`plasticity_rl.params.PARAMS`) at
    the level it uses them: ``patient_params`` patient-level, ``group_params`` group-level.
    """
    problems = [
        f"{n!r} is not a patient-level parameter of the table"
        for n in model.patient_params
        if n not in PARAMS or PARAMS[n].level != "patient"
    ]
    problems += [
        f"{n!r} is not a group-level parameter of the table"
        for n in model.group_params
        if n not in PARAMS or PARAMS[n].level != "group" or PARAMS[n].applies
    ]
    if model.name in MODELS and not replace:
        problems.append(f"a variant named {model.name!r} is registered already (replace=True to override)")
    if problems:
        raise ValueError(f"cannot register variant {model.name!r}: " + "; ".join(problems))
    MODELS[model.name] = model
    return model


def run_beliefs(
    model: BeliefModel,
    p: Params,
    g_k,
    gate,
    everyday,
    corrective,
    n_corr,
    any_session=None,
    unroll: int = 1,
    session_steps=None,
    dense_session_maps: bool = False,
) -> Trajectory:
    """Beliefs over T steps, given the outcomes experienced: THE recurrence of the package.

    Shapes are patient-major with optional leading batch dimensions ``...`` (none for one
    patient): g_k, gate: (..., T) saturated plasticity drive and acute drug state;
    everyday: (..., T) outcomes in {0, 1} (any dtype); corrective: (..., T, n_max) corrective
    outcomes, of which the first ``n_corr[..., j]`` are delivered at step j (0: no session, or a
    missed one); parameters in ``p`` have shape ``...`` (or are scalars).
    Within a step the session comes first, then the everyday event.

    Sessions are rare (8 of 448 steps in the flagship trial), and a session with n = 0 leaves
    beliefs exactly unchanged. There are two ways to skip the other steps:

    - ``session_steps`` (K,): the steps where sessions may happen (e.g. every step some arm
      schedules one). For models whose session is affine in the beliefs
      (``model.affine_session``), each of these K sessions becomes the affine map s -> A s + b,
      read off ``model.session`` itself by ``jax.jvp``, and every step applies its map (the
      identity, exactly, where there is none) before the everyday event. The loop has no branch,
      and its reverse pass is the adjoint recurrence of :func:`adjoint_scan`, about 2x faster to
      differentiate than the branching loop (benchmarks/README.md). Each step looks its map up
      by the session's index; with ``dense_session_maps`` every step's map is written out
      instead (:func:`per_step_maps`), which costs memory but makes the gradient ~17 % faster
      (what the fit uses), where the lookup keeps a forward-only run such as the simulator's
      fastest.
    - otherwise the session runs under ``lax.cond`` at steps flagged in ``any_session`` (T,) -
      by default, steps where any patient in the batch has corrective experiences. Under
      ``vmap`` pass ``any_session`` unbatched (``in_axes=None``) to keep the branch a branch.

    Both give the same beliefs to float32 rounding and the same gradients
    (tests/test_models.py). ``unroll`` steps per loop iteration.
    """
    to_time_major = lambda x: jnp.moveaxis(jnp.asarray(x), -1, 0)  # noqa: E731
    g_t, gate_t, o_t = to_time_major(g_k), to_time_major(gate), to_time_major(everyday)
    c_t = jnp.moveaxis(jnp.asarray(corrective), -2, 0)  # (T, ..., n_max)
    n_t = to_time_major(n_corr)
    rates = model.rates(p, g_t, gate_t)  # (T, ...): parameters broadcast over time
    state0 = model.initial(p)
    dtype = jnp.result_type(state0.V)
    o_t = o_t.astype(dtype)
    if session_steps is not None and model.affine_session:
        steps = jnp.asarray(session_steps, jnp.int32)
        maps = session_maps(
            model, p, jax.tree.map(lambda a: a[steps], rates), c_t[steps].astype(dtype), n_t[steps]
        )
        p_arrays = jax.tree.map(jnp.asarray, p)
        if dense_session_maps:
            xs, params = (rates, o_t, per_step_maps(maps, steps, o_t.shape)), (p_arrays, None)
        else:
            K, T = steps.shape[0], o_t.shape[0]
            slot = jnp.full((T,), K, jnp.int32).at[steps].set(jnp.arange(K, dtype=jnp.int32))
            xs, params = (rates, o_t, slot), (p_arrays, with_identity(maps))
        V, S = adjoint_scan(partial(_mapped_step, model), state0, xs, params, unroll=unroll)
    else:
        if any_session is None:
            any_session = jnp.any(n_t > 0, axis=tuple(range(1, n_t.ndim)))
        session = jax.checkpoint(model.session)  # cheaper than storing its residuals at every step

        def step(state, xs):
            r, o, cs, n, go = xs
            state = jax.lax.cond(go, lambda s: session(s, cs.astype(dtype), n, r, p), lambda s: s, state)
            state = model.everyday(state, o, r, p)
            return state, state

        _, (V, S) = jax.lax.scan(step, state0, (rates, o_t, c_t, n_t, any_session), unroll=unroll)
    back = lambda x: jnp.moveaxis(x, 0, -1)  # noqa: E731
    alpha_neg = back(rates["alpha_neg"]) if "alpha_neg" in rates else None
    return Trajectory(alpha=back(rates["alpha"]), alpha_neg=alpha_neg, V=back(V), S=back(S))


class SessionMap(NamedTuple):
    """An affine session update (V, S) -> (VV V + VS S + bV, SV V + SS S + bS)."""

    VV: jax.Array
    VS: jax.Array
    SV: jax.Array
    SS: jax.Array
    bV: jax.Array
    bS: jax.Array


def session_maps(model: BeliefModel, p: Params, r, cs, n) -> SessionMap:
    """The K sessions as affine maps, (K, ...) each.

    ``r``, ``cs``, ``n``: rates, corrective outcomes and counts at the K session steps. For a
    model whose session is affine in the beliefs, b = session(0) and A's columns are its
    derivatives, exact for any state (tested against the session itself).
    """
    return affine_map(lambda s: model.session(s, cs, n, r, p), n.shape, cs.dtype)


def affine_map(update, shape, dtype) -> SessionMap:
    """``update`` (beliefs -> beliefs, affine) as its map: b = update(0), A's columns its derivatives.

    Exact for any state when ``update`` is affine; ``shape`` is the beliefs' batch shape.
    """
    zero = jnp.zeros(shape, dtype)
    one = jnp.ones_like(zero)
    b, dV = jax.jvp(update, (Beliefs(zero, zero),), (Beliefs(one, zero),))
    _, dS = jax.jvp(update, (Beliefs(zero, zero),), (Beliefs(zero, one),))
    return SessionMap(dV.V, dS.V, dV.S, dS.S, b.V, b.S)


_IDENTITY = SessionMap(VV=1.0, VS=0.0, SV=0.0, SS=1.0, bV=0.0, bS=0.0)


def with_identity(maps: SessionMap) -> SessionMap:
    """``maps`` with the identity (no session) appended as entry K."""
    return SessionMap(
        *(
            jnp.concatenate([a, jnp.full((1,) + a.shape[1:], fill, a.dtype)])
            for fill, a in zip(_IDENTITY, maps)
        )
    )


def per_step_maps(maps: SessionMap, steps, shape) -> SessionMap:
    """Every step's session map, (T, ...) each: ``maps`` at ``steps``, the identity elsewhere.

    Written into identity-filled arrays rather than gathered by a per-step slot index: XLA:CPU
    gathers (T x N)-element arrays slowly, and the reverse pass of a gather is a scatter-add of
    T x N elements, where this one reads back only the K session rows. Measured at flagship
    size, with :func:`_sum_over_steps`: the 4 chains' gradients on the CLI's 4 host devices
    1.37-1.47 -> 1.14-1.21 ms (benchmarks/README.md).
    """
    return SessionMap(*(jnp.full(shape, fill, a.dtype).at[steps].set(a) for fill, a in zip(_IDENTITY, maps)))


def _mapped_step(model: BeliefModel, state: Beliefs, xs, params) -> Beliefs:
    """One step: the step's session map (the identity where there is none), then the everyday event.

    ``xs`` ends with the step's map itself (dense layout) or its index into ``params``' maps.
    """
    r, o, m = xs
    p, maps = params
    if maps is not None:
        m = jax.tree.map(lambda a: a[m], maps)
    after_session = Beliefs(m.VV * state.V + m.VS * state.S + m.bV, m.SV * state.V + m.SS * state.S + m.bS)
    return model.everyday(after_session, o, r, p)


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
