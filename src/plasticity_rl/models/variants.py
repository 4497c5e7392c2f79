"""The bundled belief models, each registered with :func:`plasticity_rl.models.register`."""

from __future__ import annotations

import jax.numpy as jnp

from plasticity_rl.models.base import (
    BeliefModel,
    Beliefs,
    delta_rule,
    register,
    repeated_delta_rule,
    sequential_updates,
)
from plasticity_rl.plasticity import learning_rate

# ----------------------------------------------------------------------------- learning rates


def symmetric_rates(p, g_k, gate):
    return {"alpha": learning_rate(p["logit_alpha0"], p["A"], g_k, gate)}


def asymmetric_rates(p, g_k, gate):
    return {
        "alpha": learning_rate(p["logit_alpha0_pos"], p["A_pos"], g_k, gate),
        "alpha_neg": learning_rate(p["logit_alpha0_neg"], p["A_neg"], g_k, gate),
    }


def ungated_rates(p, g_k, gate):
    r = symmetric_rates(p, g_k, gate)
    r["alpha_T"] = jnp.broadcast_to(p["alpha_T"], r["alpha"].shape)
    return r


def signed(r, target, x):
    """alpha+ for a positive prediction error, alpha- otherwise."""
    return jnp.where(target > x, r["alpha"], r["alpha_neg"])


# ----------------------------------------------------------------------------- rw


def rw_everyday(s: Beliefs, o, r, p) -> Beliefs:
    V = delta_rule(s.V, o, r["alpha"])
    return Beliefs(V, V)


def rw_session(s: Beliefs, cs, n, r, p) -> Beliefs:
    V = repeated_delta_rule(s.V, cs, n, r["alpha"])
    return Beliefs(V, V)


def rw_asym_everyday(s: Beliefs, o, r, p) -> Beliefs:
    V = delta_rule(s.V, o, signed(r, o, s.V))
    return Beliefs(V, V)


def rw_asym_session(s: Beliefs, cs, n, r, p) -> Beliefs:
    return sequential_updates(s, cs, n, lambda st, c: rw_asym_everyday(st, c, r, p))


# ----------------------------------------------------------------------------- schema


def relax_toward_schema(V, S, kappa):
    """(1 - kappa) V + kappa S: after learning from the outcome, V relaxes toward the schema.

    The additive form V + alpha (o - V) + kappa (S - V) leaves (0, 1) once alpha + kappa > 1
    (both allowed by the config). Learning first, then relaxing, is a convex combination for any
    alpha, kappa in [0, 1]; it differs from the additive form by kappa alpha (o - V), about 1e-4
    per step at the defaults.
    """
    return (1.0 - kappa) * V + kappa * S


def schema_everyday(s: Beliefs, o, r, p) -> Beliefs:
    a = r["alpha"]
    V = relax_toward_schema(delta_rule(s.V, o, a), s.S, p["kappa"])
    S = delta_rule(s.S, o, p["epsilon"] * a)
    return Beliefs(V, S)


def _schema_session_at(s: Beliefs, cs, n, a, p) -> Beliefs:
    return Beliefs(
        repeated_delta_rule(s.V, cs, n, a),
        repeated_delta_rule(s.S, cs, n, p["omega"] * a),
    )


def schema_session(s: Beliefs, cs, n, r, p) -> Beliefs:
    return _schema_session_at(s, cs, n, r["alpha"], p)


def schema_ungated_session(s: Beliefs, cs, n, r, p) -> Beliefs:
    return _schema_session_at(s, cs, n, r["alpha_T"], p)


def schema_asym_everyday(s: Beliefs, o, r, p) -> Beliefs:
    V = relax_toward_schema(delta_rule(s.V, o, signed(r, o, s.V)), s.S, p["kappa"])
    S = delta_rule(s.S, o, p["epsilon"] * signed(r, o, s.S))
    return Beliefs(V, S)


def schema_asym_session(s: Beliefs, cs, n, r, p) -> Beliefs:
    def one(st, c):
        return Beliefs(
            delta_rule(st.V, c, signed(r, c, st.V)),
            delta_rule(st.S, c, p["omega"] * signed(r, c, st.S)),
        )

    return sequential_updates(s, cs, n, one)


# ----------------------------------------------------------------------------- registry

_SYM = ("logit_alpha0", "A", "logit_S0")
_ASYM = ("logit_alpha0_pos", "A_pos", "logit_alpha0_neg", "A_neg", "logit_S0")

register(
    BeliefModel(
        name="rw",
        description="Rescorla-Wagner: one belief V, V += alpha_j (o - V) for every experience.",
        patient_params=_SYM,
        group_params=(),
        has_schema=False,
        asymmetric=False,
        rates=symmetric_rates,
        session=rw_session,
        everyday=rw_everyday,
        foil="schema",
    )
)

register(
    BeliefModel(
        name="rw_asym",
        description="Rescorla-Wagner with alpha+ / alpha- for positive / negative errors.",
        patient_params=_ASYM,
        group_params=(),
        has_schema=False,
        asymmetric=True,
        rates=asymmetric_rates,
        session=rw_asym_session,
        everyday=rw_asym_everyday,
        foil="rw",
    )
)

register(
    BeliefModel(
        name="schema",
        description="Two timescales: V relaxes to the schema S; therapy reaches S at omega alpha_j.",
        patient_params=_SYM,
        group_params=("kappa", "epsilon", "omega"),
        has_schema=True,
        asymmetric=False,
        rates=symmetric_rates,
        session=schema_session,
        everyday=schema_everyday,
        foil="schema_ungated",
    )
)

register(
    BeliefModel(
        name="schema_ungated",
        description="schema, but therapy learns at a constant alpha_T: timing does not matter.",
        patient_params=_SYM,
        group_params=("kappa", "epsilon", "omega", "alpha_T"),
        has_schema=True,
        asymmetric=False,
        rates=ungated_rates,
        session=schema_ungated_session,
        everyday=schema_everyday,
        foil="schema",
    )
)

register(
    BeliefModel(
        name="schema_asym",
        description="schema with alpha+ / alpha-; ketamine boosts alpha+ more (A_pos > A_neg).",
        patient_params=_ASYM,
        group_params=("kappa", "epsilon", "omega"),
        has_schema=True,
        asymmetric=True,
        rates=asymmetric_rates,
        session=schema_asym_session,
        everyday=schema_asym_everyday,
        foil="schema",
    )
)
