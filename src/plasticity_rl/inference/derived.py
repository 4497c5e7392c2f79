"""What a fit computes from every posterior draw: log-likelihoods, arm-mean beliefs, replicated ratings.

The log-likelihood of each patient (the unit of leave-one-patient-out comparison), each arm's
mean V(t) and S(t) at the start of each day, from the same trajectories the likelihood runs, and
what a replicated data set is drawn from (the beliefs each EMA rating and visit score is of: the
posterior predictive check's ``ema`` and ``visits``, drawn on the host by
:func:`plasticity_rl.observe.replicate_ratings`).
"""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp

from plasticity_rl._engine.devices import device_split, on_devices
from plasticity_rl._engine.xla import fit_program, jit_fit_program
from plasticity_rl.inference.model import (
    ModelSpec,
    cohort_trajectories,
    patient_log_lik,
    sampled_trajectories,
    with_fixed,
)
from plasticity_rl.inference.prepare import ModelInputs
from plasticity_rl.observe import beliefs_at_step_start, visit_mean, visit_sd


def patient_values(spec: ModelSpec, samples: dict) -> dict:
    """Per-patient parameters mu + tau z from the sampled sites (any leading draw shape)."""
    out = {}
    for name in spec.patient_params:
        mu, tau, z = samples[f"mu_{name}"], samples[f"tau_{name}"], samples[f"z_{name}"]
        out[name] = mu[..., None] + tau[..., None] * z
    return out


def draw_outputs(spec: ModelSpec, x: ModelInputs, theta: dict, n_arms: int, steps_per_day: int, key):
    """One draw's per-patient log-likelihood (N,), arm-mean V, S at the start of each day, and
    what its replicated ratings are drawn from: V at each EMA rating (N, days), each visit's
    expected score and its SD (N, K)."""
    traj = cohort_trajectories(spec, theta, x)
    ll = patient_log_lik(spec, theta, x, traj)
    tr, V0 = traj
    theta = with_fixed(spec, theta, V0.shape[0])
    S0 = jax.nn.sigmoid(theta["logit_S0"]) if spec.belief_model.has_schema else V0
    day_steps = jnp.arange(0, tr.V.shape[1] + 1, steps_per_day)
    V = jnp.concatenate([V0[:, None], tr.V], axis=1)[:, day_steps]
    S = jnp.concatenate([S0[:, None], tr.S], axis=1)[:, day_steps]
    onehot = jax.nn.one_hot(x.arm_index, n_arms, dtype=V.dtype).T  # (arms, N)
    weights = onehot / jnp.maximum(onehot.sum(axis=1, keepdims=True), 1.0)
    return (ll, weights @ V, weights @ S) + replicate_inputs(spec, x, theta, traj, key)


def replicate_inputs(spec: ModelSpec, x: ModelInputs, theta: dict, traj, key):
    """(V at each EMA rating (N, days), expected visit score (N, K), its SD (N, K)) for a replicate.

    With the outcomes integrated out (the marginal likelihood), the curves in ``traj`` are
    expectations; a replicated data set then draws the outcomes too
    (:func:`plasticity_rl.inference.model.sampled_trajectories`), so its ratings vary as a new
    patient's would. With logged outcomes the beliefs are known and only the ratings are drawn.
    """
    if spec.likelihood == "marginal":
        traj = sampled_trajectories(spec, theta, x, key)
    tr, V0 = traj
    mean = visit_mean(beliefs_at_step_start(tr.V, V0, x.visit_step), spec.m_max, x.visit_D, x.visit_E)
    if spec.has_visits:
        sd = visit_sd(x.visit_treated, theta["sigma_baseline"], theta["sigma_treated"])
    else:
        sd = jnp.ones_like(mean)
    return tr.V[:, x.ema_step], mean, sd


@fit_program(static_argnames=("spec", "n_arms", "steps_per_day", "batch"))
def derived(
    spec: ModelSpec, x: ModelInputs, theta: dict, n_arms: int, steps_per_day: int, key, index, batch: int = 64
):
    """draw_outputs over flattened draws (leading axis), in batches to bound memory.

    ``index`` (S,): each draw's number; its replicated ratings use ``fold_in(key, index)``, so
    they are the same however the draws are split over devices. Jitted with the data as an
    argument, so another data set of the same shape reuses it.
    """

    def one(a):
        th, i = a
        return draw_outputs(spec, x, th, n_arms, steps_per_day, jax.random.fold_in(key, i))

    return jax.lax.map(one, (theta, index), batch_size=batch)


@cache
def _derived_pmapped(spec: ModelSpec, n_arms: int, steps_per_day: int, n_devices: int):
    return jit_fit_program(
        jax.pmap(
            lambda shared, b: derived.inline(spec, shared[0], b[0], n_arms, steps_per_day, shared[1], b[1]),
            in_axes=(None, 0),
            devices=jax.local_devices()[:n_devices],
        )
    )


def derived_on_devices(spec: ModelSpec, x: ModelInputs, theta: dict, n_arms: int, steps_per_day: int, key):
    """:func:`derived` with the draws split over the local devices, when there are several.

    Flagship fit, 4,000 draws, 4 host devices on 2 cores: 1.37 -> 0.98 s (benchmarks/README.md).
    """
    n = jax.tree.leaves(theta)[0].shape[0]
    index = jnp.arange(n, dtype=jnp.int32)
    D = device_split(n)
    if D < 2:
        return derived(spec, x, theta, n_arms, steps_per_day, key, index)
    return on_devices(_derived_pmapped(spec, n_arms, steps_per_day, D), (x, key), (theta, index), D)
