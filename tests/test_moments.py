"""Belief moments with the outcomes unrecorded: exactly the simulator's, for every variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_rl.models import MODELS, get_model, run_beliefs
from plasticity_rl.models.moments import belief_moments
from plasticity_rl.params import PARAMS, belief_values

K = 20_000  # Monte Carlo cohorts: mean errors ~ sd / 141
T, N_MAX = 48, 3
SESSIONS = {12: 3, 13: 3, 30: 2}  # step -> corrective experiences delivered


def _inputs():
    t = np.arange(T, dtype=np.float32)
    g_k = 1.8 * np.exp(-0.5 * ((t - 12.0) / 4.0) ** 2)  # a window around the first session
    gate = np.where((t >= 8) & (t < 9), 1.0, 0.0)  # one dissociated step: nothing learned there
    n_corr = np.zeros(T, np.int32)
    for step, n in SESSIONS.items():
        n_corr[step] = n
    p_c = np.full(T, 0.9, np.float32)
    return (
        jnp.asarray(g_k, jnp.float32),
        jnp.asarray(gate, jnp.float32),
        jnp.asarray(n_corr),
        jnp.asarray(p_c),
    )


def _params(model, flagship_cfg):
    p = {n: jnp.float32(PARAMS[n].default) for n in model.patient_params}
    p["kappa"] = jnp.float32(0.05)  # faster than the default so S's pull on V shows within T steps
    return {**{k: jnp.float32(v) for k, v in belief_values(flagship_cfg).items()}, **p}


@pytest.mark.parametrize("variant", sorted(MODELS))
def test_moments_equal_monte_carlo_moments_of_the_simulators_beliefs(variant, flagship_cfg):
    model = get_model(variant)
    p = _params(model, flagship_cfg)
    g_k, gate, n_corr, p_c = _inputs()
    mu_o = p["mu_o"]
    mom = jax.jit(lambda: belief_moments(model, p, g_k, gate, mu_o, n_corr, p_c, N_MAX))()

    k_e, k_c = jax.random.split(jax.random.key(7))
    everyday = jax.random.bernoulli(k_e, mu_o, (K, T)).astype(jnp.float32)
    corrective = jax.random.bernoulli(k_c, 0.9, (K, T, N_MAX)).astype(jnp.float32)
    batched = {k: jnp.broadcast_to(v, (K,)) for k, v in p.items()}
    traj = jax.jit(
        lambda: run_beliefs(
            model,
            batched,
            jnp.broadcast_to(g_k, (K, T)),
            jnp.broadcast_to(gate, (K, T)),
            everyday,
            corrective,
            jnp.broadcast_to(n_corr, (K, T)),
        )
    )()
    x = np.stack([np.asarray(traj.V, np.float64), np.asarray(traj.S, np.float64)], axis=-1)  # (K, T, 2)
    mean_mc = x.mean(axis=0)
    cov_mc = np.einsum("ktj,ktl->tjl", x - mean_mc, x - mean_mc) / (K - 1)

    mean, cov = np.asarray(mom.mean, np.float64), np.asarray(mom.cov, np.float64)
    sd = np.sqrt(np.diagonal(cov_mc, axis1=1, axis2=2))  # (T, 2)
    assert np.all(np.abs(mean - mean_mc) <= 5 * sd / np.sqrt(K) + 1e-6)
    # covariances within 5 Monte Carlo standard errors, estimated from the samples themselves:
    # after a session the beliefs are a lumpy mixture (a 0.1 chance that a corrective experience
    # goes badly), so their products are far from Gaussian and a fixed tolerance would mislead
    d = x - mean_mc
    products = d[:, :, :, None] * d[:, :, None, :]  # (K, T, 2, 2)
    se = products.std(axis=0) / np.sqrt(K)
    assert np.all(np.abs(cov - cov_mc) <= 5 * se + 1e-9)
    # the beliefs are uncertain and the sessions and the window move them: not a trivial match
    assert sd[-1, 0] > 1e-3 and abs(mean[14, 0] - mean[10, 0]) > 0.02
    if model.has_schema:
        assert abs(mean[14, 1] - mean[10, 1]) > 0.02  # corrective experiences in the window reach S


def test_a_wrong_outcome_rate_is_caught(flagship_cfg):
    """The comparison above has power: moments with a slightly wrong mu_o fail it."""
    model = get_model("schema")
    p = _params(model, flagship_cfg)
    g_k, gate, n_corr, p_c = _inputs()
    right = belief_moments(model, p, g_k, gate, p["mu_o"], n_corr, p_c, N_MAX)
    wrong = belief_moments(model, p, g_k, gate, p["mu_o"] + 0.05, n_corr, p_c, N_MAX)
    gap = np.abs(np.asarray(wrong.mean) - np.asarray(right.mean))[:, 0]
    sd = np.sqrt(np.asarray(right.cov)[:, 0, 0])
    assert np.max(gap - 5 * sd / np.sqrt(K)) > 0


@pytest.mark.parametrize("variant", sorted(n for n, m in MODELS.items() if not m.asymmetric))
def test_per_step_transforms_give_the_same_moments(variant, flagship_cfg):
    """Where both outcomes share the update's matrix, each step is one Transform (the filter's
    fast path, sessions looked up at their steps only): the same moments as event by event."""
    from plasticity_rl.models.moments import Moments, initial_moments, step_transforms, transformed

    model = get_model(variant)
    p = _params(model, flagship_cfg)
    g_k, gate, n_corr, p_c = _inputs()
    want = belief_moments(model, p, g_k, gate, p["mu_o"], n_corr, p_c, N_MAX)
    r = model.rates(p, g_k, gate)
    steps = jnp.asarray(sorted(SESSIONS), jnp.int32)
    per_step = step_transforms(model, p, r, p["mu_o"], n_corr, p_c, N_MAX, session_steps=steps)
    m, got = initial_moments(model, p), []
    for t in range(T):
        m = transformed(jax.tree.map(lambda a, t=t: a[t], per_step), m)
        got.append(m)
    got = Moments(*(jnp.stack(a) for a in zip(*got)))
    np.testing.assert_allclose(np.asarray(got.mean), np.asarray(want.mean), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got.cov), np.asarray(want.cov), rtol=1e-4, atol=1e-7)


def test_asymmetric_variants_are_refused_by_the_per_step_transforms(flagship_cfg):
    from plasticity_rl.models.moments import step_transforms

    model = get_model("schema_asym")
    p = _params(model, flagship_cfg)
    g_k, gate, n_corr, p_c = _inputs()
    with pytest.raises(ValueError, match="depend on the outcome"):
        step_transforms(model, p, model.rates(p, g_k, gate), p["mu_o"], n_corr, p_c, N_MAX)
