"""What a fit computes from every posterior draw: per-patient log-likelihoods and arm-mean beliefs.

The log-likelihood of each patient (the unit of leave-one-patient-out comparison) and each arm's
mean V(t) and S(t) at the start of each day, from the same trajectories the likelihood runs.
"""

from __future__ import annotations

from functools import cache

import jax
import jax.numpy as jnp

from plasticity_rl._engine.devices import device_split, on_devices
from plasticity_rl._engine.xla import fit_program, jit_fit_program
from plasticity_rl.inference.model import ModelSpec, cohort_trajectories, patient_log_lik, with_fixed
from plasticity_rl.inference.prepare import ModelInputs


def patient_values(spec: ModelSpec, samples: dict) -> dict:
    """Per-patient parameters mu + tau z from the sampled sites (any leading draw shape)."""
    out = {}
    for name in spec.patient_params:
        mu, tau, z = samples[f"mu_{name}"], samples[f"tau_{name}"], samples[f"z_{name}"]
        out[name] = mu[..., None] + tau[..., None] * z
    return out


def draw_outputs(spec: ModelSpec, x: ModelInputs, theta: dict, n_arms: int, steps_per_day: int):
    """One draw's per-patient log-likelihood (N,) and arm-mean V, S at the start of each day."""
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
    return ll, weights @ V, weights @ S


@fit_program(static_argnames=("spec", "n_arms", "steps_per_day", "batch"))
def derived(spec: ModelSpec, x: ModelInputs, theta: dict, n_arms: int, steps_per_day: int, batch: int = 64):
    """draw_outputs over flattened draws (leading axis), in batches to bound memory.

    Jitted with the data as an argument, so another data set of the same shape reuses it.
    """
    return jax.lax.map(lambda th: draw_outputs(spec, x, th, n_arms, steps_per_day), theta, batch_size=batch)


@cache
def _derived_pmapped(spec: ModelSpec, n_arms: int, steps_per_day: int, n_devices: int):
    return jit_fit_program(
        jax.pmap(
            lambda x, theta: derived.inline(spec, x, theta, n_arms, steps_per_day),
            in_axes=(None, 0),
            devices=jax.local_devices()[:n_devices],
        )
    )


def derived_on_devices(spec: ModelSpec, x: ModelInputs, theta: dict, n_arms: int, steps_per_day: int):
    """:func:`derived` with the draws split over the local devices, when there are several.

    Flagship fit, 4,000 draws, 4 host devices on 2 cores: 1.37 -> 0.98 s (benchmarks/README.md).
    """
    D = device_split(jax.tree.leaves(theta)[0].shape[0])
    if D < 2:
        return derived(spec, x, theta, n_arms, steps_per_day)
    return on_devices(_derived_pmapped(spec, n_arms, steps_per_day, D), x, theta, D)
