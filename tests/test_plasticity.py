"""The plasticity window (DESIGN 1.1): kernel shape, superposition, saturation, the acute gate."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plasticity_rl.plasticity import (
    KernelParams,
    acute_gate,
    diffexp_kernel,
    diffexp_peak_hours,
    drive,
    gamma_kernel,
    kernel,
    kernel_peak_hours,
    learning_rate,
    plasma_profile,
    saturate,
)

GAMMA = KernelParams(kind=0, gamma_shape=2.0, tau_k_hours=12.0, tau_rise_hours=14.0, tau_decay_hours=48.0)
DIFFEXP = GAMMA._replace(kind=1)
LOGIT_A0 = math.log(0.01 / 0.99)  # default alpha0 = 0.01
INFUSION_H, HALF_LIFE_H, GONE_BY_H = 40.0 / 60.0, 2.75, 2.0
STEP_H = 3.0  # 8 steps a day


def f(x) -> float:
    return float(np.asarray(x))


# --------------------------------------------------------------------------- gamma kernel


@pytest.mark.parametrize("n, tau_k", [(2.0, 12.0), (1.0, 24.0), (3.0, 8.0), (4.5, 20.0)])
def test_gamma_kernel_peaks_at_one_at_n_tau_k(n, tau_k):
    peak = n * tau_k
    assert f(gamma_kernel(peak, n, tau_k)) == pytest.approx(1.0, abs=1e-6)
    grid = jnp.linspace(0.0, 10 * peak, 4001)
    values = np.asarray(gamma_kernel(grid, n, tau_k))
    assert values.max() <= 1.0 + 1e-6
    assert abs(float(grid[values.argmax()]) - peak) <= float(grid[1] - grid[0])


def test_gamma_kernel_defaults_match_design_numbers():
    # DESIGN 1.1: peak at 24 h, 0.54 of peak at 48 h, 0.16 at 72 h, 0.04 at 96 h.
    K = lambda h: f(kernel(jnp.asarray(h), GAMMA))  # noqa: E731
    assert f(kernel_peak_hours(GAMMA)) == 24.0
    assert K(24.0) == pytest.approx(1.0, abs=1e-6)
    assert K(48.0) == pytest.approx(4 * math.exp(-2), rel=1e-5)
    assert K(48.0) == pytest.approx(0.54, abs=0.005)
    assert K(72.0) == pytest.approx(0.16, abs=0.006)
    assert K(96.0) == pytest.approx(0.04, abs=0.002)
    assert K(12.0) == pytest.approx(0.25 * math.e, rel=1e-5)  # spines from about 12 h


@pytest.mark.parametrize("kp", [GAMMA, DIFFEXP], ids=["gamma", "diffexp"])
def test_kernel_is_zero_at_and_before_the_dose(kp):
    tau = jnp.asarray([-1000.0, -24.0, -1.0, -1e-3, 0.0])
    np.testing.assert_array_equal(np.asarray(kernel(tau, kp)), 0.0)
    assert f(kernel(jnp.asarray(0.5), kp)) > 0.0


def test_gamma_kernel_gradients_are_finite_at_and_before_the_dose():
    # The likelihood differentiates through K: no NaN at tau <= 0 (the double-where pattern).
    for tau in (-5.0, 0.0, 5.0):
        grads = jax.grad(lambda n, tk, tau=tau: gamma_kernel(tau, n, tk), argnums=(0, 1))(2.0, 12.0)
        assert all(np.isfinite(np.asarray(g)) for g in grads), (tau, grads)


# --------------------------------------------------------------------------- diffexp kernel


@pytest.mark.parametrize("rise, decay", [(14.0, 48.0), (6.0, 24.0), (20.0, 200.0)])
def test_diffexp_kernel_peaks_at_one_at_its_analytic_peak(rise, decay):
    peak = math.log(decay / rise) * rise * decay / (decay - rise)
    assert f(diffexp_peak_hours(rise, decay)) == pytest.approx(peak, rel=1e-6)
    assert f(diffexp_kernel(peak, rise, decay)) == pytest.approx(1.0, abs=1e-6)
    for off in (-1.0, 1.0):
        assert f(diffexp_kernel(peak + off, rise, decay)) < 1.0
    grid = jnp.linspace(0.0, 20 * decay, 8001)
    assert np.asarray(diffexp_kernel(grid, rise, decay)).max() <= 1.0 + 1e-6


def test_diffexp_default_is_the_long_window():
    # The long-window alternative: it peaks at about the same time but stays open longer.
    assert f(kernel_peak_hours(DIFFEXP)) == pytest.approx(24.35, abs=0.05)
    for h in (72.0, 96.0, 168.0):
        assert f(kernel(jnp.asarray(h), DIFFEXP)) > f(kernel(jnp.asarray(h), GAMMA))


# --------------------------------------------------------------------------- superposition


@pytest.mark.parametrize("kp", [GAMMA, DIFFEXP], ids=["gamma", "diffexp"])
def test_two_doses_superpose(kp):
    t = jnp.arange(0.0, 240.0, STEP_H)
    doses, amounts = jnp.asarray([30.0, 75.0]), jnp.asarray([1.0, 0.5])
    k = np.asarray(drive(t, doses, amounts, kp))
    expected = 1.0 * np.asarray(kernel(t - 30.0, kp)) + 0.5 * np.asarray(kernel(t - 75.0, kp))
    np.testing.assert_allclose(k, expected, rtol=1e-6, atol=1e-7)
    # each dose alone, summed
    alone = [np.asarray(drive(t, doses[i : i + 1], amounts[i : i + 1], kp)) for i in range(2)]
    np.testing.assert_allclose(k, alone[0] + alone[1], rtol=1e-6, atol=1e-7)
    # padding (amount 0) adds nothing, wherever it sits
    padded = drive(t, jnp.asarray([30.0, 75.0, 0.0, 100.0]), jnp.asarray([1.0, 0.5, 0.0, 0.0]), kp)
    np.testing.assert_allclose(np.asarray(padded), k, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- saturation


def test_saturation_is_linear_for_small_drive_and_bounded():
    k = jnp.linspace(0.0, 50.0, 501)
    for k_max in (0.5, 2.0, 10.0):
        g = np.asarray(saturate(k, k_max))
        assert g.max() <= k_max
        assert np.all(np.diff(g) >= -1e-6)  # monotone up to float32 rounding
        assert f(saturate(1e-3, k_max)) == pytest.approx(1e-3, rel=1e-3)
    assert f(saturate(1.0, 2.0)) == pytest.approx(2 * math.tanh(0.5), rel=1e-6)  # 0.92


@pytest.mark.parametrize("A", [1.0, 3.0, 6.0])
def test_many_close_doses_cannot_push_alpha_past_the_saturation_bound(A):
    # 30 doses six hours apart drive k far past k_max; alpha stays under the bound and below 1.
    k_max = 2.0
    t = jnp.arange(0.0, 24.0 * 20, STEP_H)
    k = drive(t, jnp.arange(30) * 6.0, jnp.full((30,), 2.0), GAMMA)
    assert f(k.max()) > 5 * k_max
    alpha = np.asarray(learning_rate(LOGIT_A0, A, saturate(k, k_max), jnp.zeros_like(k)))
    bound = 1.0 / (1.0 + math.exp(-(LOGIT_A0 + A * k_max)))
    assert alpha.max() <= bound * (1 + 1e-6)
    assert alpha.max() > 0.99 * bound  # and the bound is approached: the drive really saturates
    assert alpha.max() < 1.0


def test_alpha_stays_below_one_for_a_large_boost():
    # saturate() documents alpha <= sigmoid(logit alpha0 + A k_max) < 1 "whatever the schedule".
    # In float32 sigmoid(x) rounds to exactly 1.0 for x above about 17 (here A = 11, k_max = 2:
    # logit 17.4), and an alpha of exactly 1 sets V to the outcome itself (0 or 1), outside (0, 1).
    alpha = learning_rate(jnp.float32(LOGIT_A0), jnp.float32(11.0), saturate(jnp.float32(50.0), 2.0), 0.0)
    assert f(alpha) < 1.0


# --------------------------------------------------------------------------- gate


def gate_after_dose(dose_h=9.0, amount=1.0, hours=72.0):
    t = jnp.arange(0.0, hours, STEP_H)
    g = acute_gate(
        t, STEP_H, jnp.asarray([dose_h]), jnp.asarray([amount]), INFUSION_H, HALF_LIFE_H, GONE_BY_H
    )
    return np.asarray(t), np.asarray(g)


def test_plasma_profile_is_one_at_the_end_of_the_infusion():
    assert f(plasma_profile(jnp.asarray(INFUSION_H), INFUSION_H, HALF_LIFE_H)) == pytest.approx(1.0, abs=1e-6)
    assert f(plasma_profile(jnp.asarray(-0.1), INFUSION_H, HALF_LIFE_H)) == 0.0
    later = f(plasma_profile(jnp.asarray(INFUSION_H + HALF_LIFE_H), INFUSION_H, HALF_LIFE_H))
    assert later == pytest.approx(0.5, abs=1e-6)


def test_gate_is_in_unit_interval_zero_before_and_high_during_the_infusion():
    t, g = gate_after_dose(dose_h=9.0)
    assert np.all((g >= 0.0) & (g <= 1.0))
    assert np.all(g[t + STEP_H <= 9.0] == 0.0)  # steps that end before the dose
    # The dose's own 3-h step: dissociated from ~0.5 h to 2 h of it, peaking at 40 min.
    assert 0.15 < g[t == 9.0].item() < 0.5


def test_gate_is_gone_by_the_plasticity_peak():
    t, g = gate_after_dose(dose_h=9.0)
    tau = t - 9.0
    assert np.all(np.diff(g[tau >= 0]) <= 0)  # only wanes after the infusion step
    assert np.all(g[tau >= STEP_H] == 0.0)  # dissociation is gone by ~2 h (DESIGN 1.1)


def test_dissociation_peaks_at_the_end_of_the_infusion_and_is_gone_by_two_hours():
    from plasticity_rl.plasticity import dissociation

    tau = jnp.asarray([0.0, 0.3, INFUSION_H, 1.0, 1.5, 1.99, 2.0, 3.0])
    d = np.asarray(dissociation(tau, INFUSION_H, HALF_LIFE_H, GONE_BY_H))
    assert d[2] == pytest.approx(1.0) and d.argmax() == 2
    assert d[0] == 0.0 and np.all(d[-2:] == 0.0)
    assert 0 < d[5] < 0.01 and np.all(np.diff(d[2:]) <= 0)


def test_gate_covers_a_dose_given_mid_step():
    # The gate is the mean drug state over the step, so a dose at 10:00 still gates the 09:00 step.
    t, g = gate_after_dose(dose_h=10.0)
    assert g[t == 9.0].item() > 0.15


def test_placebo_infusion_has_no_gate():
    _, g = gate_after_dose(amount=0.0)
    np.testing.assert_array_equal(g, 0.0)


def test_learning_rate_is_scaled_by_the_gate():
    g_k = jnp.asarray([0.0, 0.5, 1.0, 2.0])
    base = jax.nn.sigmoid(LOGIT_A0 + 3.0 * g_k)
    for gate in (0.0, 0.25, 0.9, 1.0):
        alpha = learning_rate(LOGIT_A0, 3.0, g_k, jnp.full((4,), gate))
        np.testing.assert_allclose(np.asarray(alpha), (1.0 - gate) * np.asarray(base), rtol=1e-6)
    assert np.all(np.asarray(learning_rate(LOGIT_A0, 3.0, g_k, jnp.ones(4))) == 0.0)
    # and the boost is on the logit scale: with no drive alpha is alpha0
    assert f(learning_rate(LOGIT_A0, 3.0, 0.0, 0.0)) == pytest.approx(0.01, rel=1e-5)


# --------------------------------------------------------------------------- on the simulator's grid


def test_arm_inputs_place_the_window_after_the_landed_dose(flagship_sim):
    sch, inputs = flagship_sim.schedules, flagship_sim.inputs
    g_k, gate = np.asarray(inputs.g_k), np.asarray(inputs.gate)
    placebo, ketamine = sch.arm_names.index("placebo"), sch.arm_names.index("ketamine")
    # A placebo infusion (amount 0) opens no window and gates nothing.
    np.testing.assert_array_equal(g_k[placebo], 0.0)
    np.testing.assert_array_equal(gate[placebo], 0.0)
    # Ketamine on day 7 at 10:00 lands on the nearest step (09:00); K peaks 24 h later.
    dose_step = int(round((7 + 10 / 24) * sch.steps_per_day))
    assert sch.dose_hours[ketamine, 0] == dose_step * sch.step_hours
    assert np.all(g_k[ketamine, : dose_step + 1] == 0.0)
    assert int(g_k[ketamine].argmax()) == dose_step + int(24 / sch.step_hours)
    assert g_k[ketamine].max() == pytest.approx(2 * math.tanh(0.5), rel=1e-5)  # g(1) at k_max 2
    assert gate[ketamine, dose_step] > 0.15 and gate[ketamine, :dose_step].max() == 0.0
    assert gate[ketamine, dose_step + 1 :].max() == 0.0  # gone by the next step (~2 h)
