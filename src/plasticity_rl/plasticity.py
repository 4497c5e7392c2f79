"""The plasticity window: dose kernel K, saturation g, the acute gate, and alpha_j.

Pure ``jax.numpy`` functions of time (hours) and parameters, so the simulator and the
likelihood compute the window the same way and kernel time constants can be fitted.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl.config import Config
from plasticity_rl.schedule import Schedules


class KernelParams(NamedTuple):
    """Shape of the plasticity kernel. ``kind`` is static: 0 = gamma, 1 = diffexp."""

    kind: int
    gamma_shape: float
    tau_k_hours: float
    tau_rise_hours: float
    tau_decay_hours: float


def gamma_kernel(tau_h, n, tau_k):
    """K(tau) = (tau/(n tau_k))^n exp(n - tau/tau_k): 0 before the dose, peak 1 at n*tau_k."""
    tau_pos = jnp.maximum(tau_h, 0.0)
    x = tau_pos / (n * tau_k)
    # log form avoids 0**n gradients; the double where keeps gradients finite at tau <= 0.
    safe_x = jnp.where(x > 0, x, 1.0)
    log_k = n * jnp.log(safe_x) + n - tau_pos / tau_k
    return jnp.where(x > 0, jnp.exp(log_k), 0.0)


def diffexp_peak_hours(tau_rise, tau_decay):
    return jnp.log(tau_decay / tau_rise) * tau_rise * tau_decay / (tau_decay - tau_rise)


def diffexp_kernel(tau_h, tau_rise, tau_decay):
    """exp(-tau/tau_decay) - exp(-tau/tau_rise), scaled to peak 1; 0 before the dose."""
    tau_pos = jnp.maximum(tau_h, 0.0)
    shape = lambda t: jnp.exp(-t / tau_decay) - jnp.exp(-t / tau_rise)  # noqa: E731
    peak = shape(diffexp_peak_hours(tau_rise, tau_decay))
    return jnp.where(tau_h > 0, shape(tau_pos) / peak, 0.0)


def kernel(tau_h, kp: KernelParams):
    if kp.kind == 0:
        return gamma_kernel(tau_h, kp.gamma_shape, kp.tau_k_hours)
    return diffexp_kernel(tau_h, kp.tau_rise_hours, kp.tau_decay_hours)


def kernel_peak_hours(kp: KernelParams):
    if kp.kind == 0:
        return kp.gamma_shape * kp.tau_k_hours
    return diffexp_peak_hours(kp.tau_rise_hours, kp.tau_decay_hours)


def drive(t_hours, dose_hours, dose_amounts, kp: KernelParams):
    """k_j = sum_d D_d K(t_j - t_d): the summed kernel at each step time, before saturation.

    ``dose_hours``/``dose_amounts`` may be padded with amount 0.
    """
    tau = t_hours[:, None] - dose_hours[None, :]
    return jnp.sum(dose_amounts[None, :] * kernel(tau, kp), axis=1)


def saturate(k, k_max):
    """g(k) = k_max tanh(k / k_max): ~k for one dose (g(1) = 0.92 at k_max = 2), never above k_max."""
    return k_max * jnp.tanh(k / k_max)


def arm_drive(t_hours, dose_hours, dose_amounts, kp: KernelParams, k_max):
    """g(k_j) of every arm, (arms, T), from each arm's doses (arms, D).

    The simulator calls it with the config's kernel; the fit with sampled time constants in
    ``kp`` (traced values), so both compute the window with the same function.
    """
    k = jax.vmap(lambda h, a: drive(t_hours, h, a, kp))(dose_hours, dose_amounts)
    return saturate(k, k_max)


def plasma_profile(tau_h, infusion_hours, half_life_hours):
    """Plasma-like drug state, 1 at the end of the infusion: linear rise, exponential elimination."""
    rising = jnp.clip(tau_h / infusion_hours, 0.0, 1.0)
    decay = jnp.exp(-jnp.log(2.0) * jnp.maximum(tau_h - infusion_hours, 0.0) / half_life_hours)
    return jnp.where(tau_h < 0, 0.0, rising * decay)


def dissociation(tau_h, infusion_hours, half_life_hours, gone_by_hours):
    """The dissociative part of the drug state: the plasma profile above its level at
    ``gone_by_hours`` after the start of the infusion, rescaled to peak 1 at the end of it.

    The drug state needs both a plasma-like profile (elimination half-life ~2.75 h) and
    dissociation that peaks at 40 min and is gone by ~2 h; plasma alone is still at 0.7 of its
    peak at 2 h. Dissociation as plasma above a threshold satisfies both.
    """
    floor = plasma_profile(jnp.asarray(gone_by_hours), infusion_hours, half_life_hours)
    above = plasma_profile(tau_h, infusion_hours, half_life_hours) - floor
    return jnp.clip(above / (1.0 - floor), 0.0, 1.0)


def acute_gate(
    t_hours, step_hours, dose_hours, dose_amounts, infusion_hours, half_life_hours, gone_by_hours, substeps=24
):
    """gate_j in [0, 1]: the mean dissociative state over step j (any dose with amount > 0).

    Averaging over the step, not sampling its start, so a dose given mid-step still gates it.
    """
    offsets = (jnp.arange(substeps) + 0.5) / substeps * step_hours
    tau = t_hours[:, None, None] + offsets[None, :, None] - dose_hours[None, None, :]
    active = (dose_amounts > 0)[None, None, :]
    state = jnp.where(active, dissociation(tau, infusion_hours, half_life_hours, gone_by_hours), 0.0)
    return jnp.clip(jnp.mean(jnp.sum(state, axis=2), axis=1), 0.0, 1.0)


ALPHA_MAX = 1.0 - 1e-6


def learning_rate(logit_alpha0, boost, g_k, gate):
    """alpha_j = (1 - gate_j) sigmoid(logit alpha0 + A g(k_j)).

    A gate inside the saturation, g(k (1 - gate)), would only return alpha to alpha0 while
    dissociated (K is ~0 then anyway, so that gate would do almost nothing). Scaling alpha
    itself implements the stated intent: no learning is written while dissociated.
    """
    # float32 sigmoid rounds to exactly 1 past a logit of ~17; an alpha of 1 would copy each
    # outcome into the belief (V = 0 or 1 exactly), so keep it strictly below 1.
    return (1.0 - gate) * jnp.minimum(jax.nn.sigmoid(logit_alpha0 + boost * g_k), ALPHA_MAX)


# ----------------------------------------------------------------------------- per-arm inputs


class ArmInputs(NamedTuple):
    """Per-arm, per-step inputs to the belief recurrence, stacked along axis 0 (arms)."""

    g_k: jax.Array  # saturated plasticity drive g(k_j)
    gate: jax.Array  # acute drug state
    session_n: jax.Array  # corrective experiences scheduled at the step
    session_p: jax.Array
    session_attend: jax.Array


def kernel_params(cfg: Config) -> KernelParams:
    pl = cfg.plasticity
    return KernelParams(
        kind=0 if pl.kernel == "gamma" else 1,
        gamma_shape=pl.gamma_shape,
        tau_k_hours=pl.tau_k_hours,
        tau_rise_hours=pl.tau_rise_hours,
        tau_decay_hours=pl.tau_decay_hours,
    )


def arm_inputs(cfg: Config, sch: Schedules, kp: KernelParams | None = None) -> ArmInputs:
    """The plasticity window and session schedule of every arm on the step grid."""
    kp = kernel_params(cfg) if kp is None else kp
    pl = cfg.plasticity
    t = jnp.asarray(sch.t_hours, jnp.float32)
    dh, da = jnp.asarray(sch.dose_hours, jnp.float32), jnp.asarray(sch.dose_amounts, jnp.float32)
    if pl.gate:
        gate = jax.vmap(
            lambda h, a: acute_gate(
                t,
                sch.step_hours,
                h,
                a,
                pl.infusion_minutes / 60.0,
                pl.half_life_hours,
                pl.dissociation_gone_by_hours,
            )
        )(dh, da)
    else:
        gate = jnp.zeros((dh.shape[0], t.shape[0]), jnp.float32)
    return ArmInputs(
        g_k=arm_drive(t, dh, da, kp, pl.saturation),
        gate=gate,
        session_n=jnp.asarray(sch.session_n, jnp.int32),
        session_p=jnp.asarray(sch.session_p, jnp.float32),
        session_attend=jnp.asarray(sch.session_attend, jnp.float32),
    )


def scheduled_session_steps(inputs: ArmInputs) -> np.ndarray:
    """(K,) int32: the steps where some arm schedules a session (host-side: K fixes shapes)."""
    return np.flatnonzero(np.any(np.asarray(inputs.session_n) > 0, axis=0)).astype(np.int32)
