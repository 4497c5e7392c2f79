"""The likelihood with the everyday outcomes integrated out, against brute force."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from plasticity_rl import observe
from plasticity_rl.inference.filter import marginal_log_lik
from plasticity_rl.models import get_model, run_beliefs
from plasticity_rl.params import PARAMS, belief_values

SPD, DAYS, N_MAX = 8, 3, 3
T = SPD * DAYS
EMA_STEPS = np.arange(DAYS) * SPD + SPD - 1  # a day's rating sees V after its last step
VISIT_STEPS = np.array([0, T // 2, T])  # a visit sees V at the start of its step
M_MAX, SD = 42.0, 7.0


def _case(flagship_cfg, variant="schema", **patient):
    model = get_model(variant)
    p = {k: jnp.float32(v) for k, v in belief_values(flagship_cfg).items()}
    p.update({n: jnp.float32(patient.get(n, PARAMS[n].default)) for n in model.patient_params})
    t = np.arange(T, dtype=np.float32)
    g_k = jnp.asarray(0.92 * np.exp(-0.5 * ((t - 10.0) / 5.0) ** 2), jnp.float32)  # one dose's peak drive
    n_corr = jnp.zeros(T, jnp.int32).at[10].set(3)  # a session inside the window
    return model, p, g_k, jnp.zeros(T, jnp.float32), n_corr, jnp.full(T, 0.9, jnp.float32)


def _paths(model, p, g_k, gate, n_corr, key, K):
    """K outcome histories and the beliefs they give, as the simulator draws and runs them."""
    k_e, k_c = jax.random.split(key)
    everyday = jax.random.bernoulli(k_e, p["mu_o"], (K, T)).astype(jnp.float32)
    corrective = jax.random.bernoulli(k_c, 0.9, (K, T, N_MAX)).astype(jnp.float32)
    b = {k: jnp.broadcast_to(v, (K,)) for k, v in p.items()}
    wide = lambda a: jnp.broadcast_to(a, (K, T))  # noqa: E731
    V = run_beliefs(model, b, wide(g_k), wide(gate), everyday, corrective, wide(n_corr)).V
    return jnp.concatenate([jax.vmap(model.initial)(b).V[:, None], V], axis=1)  # (K, T + 1): V at step starts


def _ratings(V, phi):
    """One patient's EMA ratings and visit scores, drawn from one history."""
    y = jax.random.beta(jax.random.key(2), V[EMA_STEPS + 1] * phi, (1 - V[EMA_STEPS + 1]) * phi)
    y = jnp.clip(y, *observe.RATING_RANGE)
    mean = observe.visit_mean(V[VISIT_STEPS], M_MAX, 0.0, 0.0)
    score = jnp.clip(mean + SD * jax.random.normal(jax.random.key(3), mean.shape), *observe.SCORE_RANGE)
    return y, score


def _filter(model, p, g_k, gate, n_corr, p_c, y, score, phi):
    """The filter for one patient (a cohort of one)."""
    ema = jnp.full(T, 0.5).at[EMA_STEPS].set(y)
    ema_rec = jnp.zeros(T, bool).at[EMA_STEPS].set(True)
    visit = jnp.full(T + 1, 30.0).at[VISIT_STEPS].set(score)
    visit_rec = jnp.zeros(T + 1, bool).at[VISIT_STEPS].set(True)
    zeros = jnp.zeros(T + 1)
    one = lambda a: jnp.asarray(a)[None]  # noqa: E731
    return marginal_log_lik(
        model, {k: one(v) for k, v in p.items()}, one(g_k), one(gate), p["mu_o"], one(n_corr), one(p_c),
        N_MAX, one(ema), one(ema_rec), phi, one(visit), one(visit_rec), one(zeros), one(zeros),
        one(jnp.full(T + 1, SD)), M_MAX,
    )[0]  # fmt: skip


def _conditional(V, y, score, phi):
    """Each history's log-likelihood of the ratings (the conditional likelihood the fit uses today)."""
    lp = observe.ema_log_lik(V[:, EMA_STEPS + 1], phi, y[None], True).sum(axis=1)
    mean = observe.visit_mean(V[:, VISIT_STEPS], M_MAX, 0.0, 0.0)
    return lp + observe.visit_log_lik(score[None], True, mean, SD).sum(axis=1)


@pytest.mark.parametrize("variant", ["schema", "schema_asym", "rw"])
def test_the_filter_matches_the_brute_force_marginal_likelihood(flagship_cfg, variant):
    model, p, g_k, gate, n_corr, p_c = _case(flagship_cfg, variant)
    phi = jnp.float32(20.0)
    y, score = _ratings(_paths(model, p, g_k, gate, n_corr, jax.random.key(1), 1)[0], phi)
    ours = float(_filter(model, p, g_k, gate, n_corr, p_c, y, score, phi))
    brute = jax.jit(
        lambda key: _conditional(_paths(model, p, g_k, gate, n_corr, key, 100_000), y, score, phi)
    )
    lp = jnp.concatenate([brute(jax.random.key(100 + i)) for i in range(4)])
    exact = float(logsumexp(lp) - np.log(lp.size))  # E over histories of p(ratings | history)
    # Measured: |error| 0.004-0.018 nats over 3 ratings and 3 visits (Monte Carlo SE ~0.001);
    # 0.045 nats over a week with phi = 100, where each rating says more than the two moments carry.
    assert abs(ours - exact) < 0.1


def test_with_certain_beliefs_the_filter_is_the_conditional_likelihood(flagship_cfg):
    """No learning (alpha ~ 0): every history gives the same beliefs, and the filter is exact."""
    model, p, g_k, gate, n_corr, p_c = _case(flagship_cfg, "schema", logit_alpha0=-30.0, A=0.0)
    phi = jnp.float32(20.0)
    V = _paths(model, p, g_k, gate, n_corr, jax.random.key(1), 4)
    assert float(jnp.ptp(V)) < 1e-6
    y, score = _ratings(V[0], phi)
    ours = _filter(model, p, g_k, gate, n_corr, p_c, y, score, phi)
    assert float(ours) == pytest.approx(float(_conditional(V[:1], y, score, phi)[0]), abs=1e-3)


def test_the_filter_is_differentiable_in_the_parameters(flagship_cfg):
    model, p, g_k, gate, n_corr, p_c = _case(flagship_cfg, "schema")
    phi = jnp.float32(20.0)
    y, score = _ratings(_paths(model, p, g_k, gate, n_corr, jax.random.key(1), 1)[0], phi)
    grad = jax.grad(lambda q: _filter(model, q, g_k, gate, n_corr, p_c, y, score, phi))(p)
    for name in ("A", "logit_alpha0", "logit_S0", "kappa", "omega"):
        assert np.isfinite(float(grad[name])) and float(grad[name]) != 0.0, name


def test_the_fits_marginal_likelihood_reads_the_same_ratings_as_the_conditional(flagship_sim):
    """Through the fit's own inputs: with nothing learned, every outcome history gives the same
    beliefs, so the two likelihoods must agree patient by patient (the by-step layout of the
    ratings, visits, D(t), E(t) and noise SDs is the conditional one's)."""
    from plasticity_rl.inference.model import ModelSpec, patient_log_lik, true_theta
    from plasticity_rl.inference.prepare import prepare

    data = prepare(flagship_sim)
    x = data.inputs()
    N = data.n_patients
    theta = true_theta(data, flagship_sim.params)
    theta.update(logit_alpha0=jnp.full(N, -30.0), A=jnp.zeros(N))
    conditional = ModelSpec.from_data(data, likelihood="conditional")
    marginal = ModelSpec.from_data(data, likelihood="marginal")
    assert marginal.n_max == 6
    lc = np.asarray(patient_log_lik(conditional, theta, x))
    lm = np.asarray(jax.jit(lambda th: patient_log_lik(marginal, th, x))(theta))
    assert np.all(np.isfinite(lm)) and lm.shape == (N,)
    np.testing.assert_allclose(lm, lc, rtol=0, atol=0.01)  # measured: 3e-4 nats of ~300
    # and with learning they part: the outcomes' uncertainty widens every rating's density
    theta = true_theta(data, flagship_sim.params)
    lc = np.asarray(patient_log_lik(conditional, theta, x))
    lm = np.asarray(jax.jit(lambda th: patient_log_lik(marginal, th, x))(theta))
    assert np.all(np.isfinite(lm)) and np.abs(lm - lc).max() > 1.0
