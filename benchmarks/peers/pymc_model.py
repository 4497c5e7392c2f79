"""The plasticity_rl ``schema`` model written in PyMC, for benchmarks/compare.py.

Same priors, same unconstrained parameterisation (log for the SDs and positive scales, logit for
the (0, 1) parameters) and the same likelihood as ``src/plasticity_rl/inference/model.py``.
Sampled by nutpie (numba backend) and by PyMC's own NUTS.

Everything that does not depend on the parameters is precomputed by compare.py
(``peer_arrays``) and passed in as constants; this file implements the parameter transforms, the
plasticity drive g(k_j) from the sampled window length tau_k (gamma kernel, as
``plasticity_rl.plasticity.arm_drive``), the belief recurrence and the observation densities.

The recurrence is one ``pytensor.scan`` over the T steps, vectorised over patients. Sessions are
rare (8 of 448 steps in the flagship trial), so their closed-form updates
(x <- (1 - a)^n x + sum_k a (1 - a)^(n-1-k) c_k) are computed outside the scan, only at the steps
that have one, and enter the scan as a per-step multiplier and addend (1 and 0 elsewhere).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

GROUP = (
    "mu_logit_alpha0",
    "mu_A",
    "mu_logit_S0",
    "tau_logit_alpha0",
    "tau_A",
    "tau_logit_S0",
    "kappa",
    "epsilon",
    "omega",
    "phi",
    "sigma_baseline",
    "sigma_treated",
    "tau_k_hours",
)


def _arm_drive(d: dict, meta: dict, tau_k):
    """(arms, T) g(k_j) = k_max tanh(sum_d amount_d K(t_j - t_d) / k_max), K the gamma kernel."""
    n, k_max = meta["gamma_shape"], meta["k_max"]
    tau = d["t_hours"][None, :, None] - d["dose_hours"][:, None, :]  # (arms, T, doses)
    after = tau > 0
    tau_pos = np.where(after, tau, 1.0)  # a safe value where K is 0, so no log(0) in the graph
    log_k = n * pt.log(tau_pos / (n * tau_k)) + n - tau_pos / tau_k
    k = pt.sum(d["dose_amounts"][:, None, :] * pt.switch(after, pt.exp(log_k), 0.0), axis=2)
    return k_max * pt.tanh(k / k_max)


def _session_terms(alpha_s, n, c, n_max):
    """Closed form of n delta-rule updates at rate alpha_s toward c[..., 0..n-1].

    alpha_s, n: (S, N); c: (S, N, n_max). Returns (keep^n, sum_k rate keep^(n-1-k) c_k).
    """
    keep = 1.0 - alpha_s
    k = np.arange(n_max)
    expo = np.maximum(n[..., None] - 1 - k, 0).astype("float64")  # (S, N, n_max)
    live = (k < n[..., None]).astype("float64")
    weights = live * (1.0 - keep)[..., None] * keep[..., None] ** expo
    return keep ** n.astype("float64"), pt.sum(weights * c, axis=-1)


def build_model(d: dict, meta: dict) -> pm.Model:
    """``d``: the arrays of compare.py's ``peer_arrays`` (0-based indices); ``meta``: priors and constants."""
    N, T, n_max = int(d["N"]), int(d["T"]), int(d["n_max"])
    pr = meta["priors"]
    arm = d["arm"]
    gate = np.ascontiguousarray(d["gate"][arm].T)
    o = np.ascontiguousarray(d["everyday"].T.astype("float64"))  # (T, N)
    # session steps: (S,) steps where some patient has corrective outcomes
    n_corr = np.zeros((N, T), np.int64)
    corr = np.zeros((N, T, n_max))
    n_corr[d["sess_i"], d["sess_t"]] = d["sess_n"]
    corr[d["sess_i"], d["sess_t"]] = d["sess_c"]
    steps = np.flatnonzero((n_corr > 0).any(axis=0))
    n_s = n_corr[:, steps].T  # (S, N)
    c_s = np.transpose(corr[:, steps], (1, 0, 2))  # (S, N, n_max)

    init = meta["init"]
    with pm.Model() as model:
        lp = {}
        for name, loc, sd in zip(("logit_alpha0", "A", "logit_S0"), pr["mu_loc"], pr["mu_sd"]):
            mu = pm.Normal(f"mu_{name}", loc, sd, initval=init[f"mu_{name}"])
            tau = pm.HalfNormal(f"tau_{name}", pr["tau_scale"], initval=init[f"tau_{name}"])
            z = pm.Normal(f"z_{name}", 0.0, 1.0, shape=N, initval=np.zeros(N))
            lp[name] = mu + tau * z
        # LogitNormal has no default transform in PyMC: give it the logit one NumPyro uses
        logodds = pm.distributions.transforms.logodds
        kappa = pm.LogitNormal(
            "kappa", pr["logit_kappa_loc"], pr["logit_sd"], initval=init["kappa"], default_transform=logodds
        )
        epsilon = pm.LogitNormal(
            "epsilon",
            pr["logit_epsilon_loc"],
            pr["logit_sd"],
            initval=init["epsilon"],
            default_transform=logodds,
        )
        omega = pm.Beta("omega", pr["omega_a"], pr["omega_b"], initval=init["omega"])
        phi = pm.LogNormal("phi", pr["log_phi_loc"], pr["log_sd_phi"], initval=init["phi"])
        sb = pm.LogNormal(
            "sigma_baseline", pr["log_sb_loc"], pr["log_sd_sigma"], initval=init["sigma_baseline"]
        )
        st = pm.LogNormal(
            "sigma_treated", pr["log_st_loc"], pr["log_sd_sigma"], initval=init["sigma_treated"]
        )
        tau_k = pm.LogNormal(
            "tau_k_hours", pr["log_tau_k_loc"], pr["log_sd_window"], initval=init["tau_k_hours"]
        )
        g = _arm_drive(d, meta, tau_k)[arm].T  # (T, N) drive of each patient's arm

        la0, boost, lS0 = lp["logit_alpha0"], lp["A"], lp["logit_S0"]
        amax = meta["alpha_max"]
        alpha = (1.0 - gate) * pt.minimum(pm.math.sigmoid(la0[None, :] + boost[None, :] * g), amax)  # (T, N)

        # session multipliers/addends at the session steps only; identity elsewhere
        a_s = alpha[steps]
        mV_s, aV_s = _session_terms(a_s, n_s, c_s, n_max)
        mS_s, aS_s = _session_terms(omega * a_s, n_s, c_s, n_max)
        mV = pt.set_subtensor(pt.ones((T, N))[steps], mV_s)
        aV = pt.set_subtensor(pt.zeros((T, N))[steps], aV_s)
        mS = pt.set_subtensor(pt.ones((T, N))[steps], mS_s)
        aS = pt.set_subtensor(pt.zeros((T, N))[steps], aS_s)

        # initial beliefs (BeliefModel.initial)
        mu_o = meta["mu_o"]
        S0 = pm.math.sigmoid(lS0)
        a0 = pt.minimum(pm.math.sigmoid(la0), amax)
        learn = 1.0 - kappa
        V_eq = (learn * a0 * mu_o + kappa * S0) / (learn * (a0 * mu_o + a0 * (1.0 - mu_o)) + kappa)
        V0 = pt.clip(V_eq + meta["V0_offset"], 1e-4, 1.0 - 1e-4)

        def step(a_t, o_t, mV_t, aV_t, mS_t, aS_t, V, S, kappa, epsilon):
            V = mV_t * V + aV_t
            S = mS_t * S + aS_t
            V_new = (1.0 - kappa) * (V + a_t * (o_t - V)) + kappa * S
            S_new = S + epsilon * a_t * (o_t - S)
            return V_new, S_new

        (V_traj, _), _ = pytensor.scan(
            step,
            sequences=[alpha, pt.as_tensor_variable(o), mV, aV, mS, aS],
            outputs_info=[V0, S0],
            non_sequences=[kappa, epsilon],
            strict=True,
            return_list=True,
        )
        V_pad = pt.concatenate([V0[None, :], V_traj], axis=0)  # (T + 1, N)

        eps = meta["eps_v"]
        if d["ema_i"].size:
            v = pt.clip(V_pad[d["ema_s"], d["ema_i"]], eps, 1.0 - eps)
            pm.Beta("ema", alpha=v * phi, beta=(1.0 - v) * phi, observed=d["ema_y"])
        m_max = meta["m_max"]
        if d["vis_i"].size:
            mean = m_max * (1.0 - V_pad[d["vis_s"], d["vis_i"]]) - d["vis_offset"]
            sd = pt.switch(d["vis_treated"].astype(bool), st, sb)
            pm.Normal("visit", mu=mean, sigma=sd, observed=d["vis_y"])
        if d["cens_i"].size:
            mean_c = m_max * (1.0 - V_pad[d["cens_s"], d["cens_i"]]) - d["cens_offset"]
            sd_c = pt.switch(d["cens_treated"].astype(bool), st, sb)
            # log Phi((lo - mean)/sd) at the floor, log Phi((mean - hi)/sd) at the ceiling
            side = d["cens_side"].astype("float64")
            lo, hi = meta["score_range"]
            zc = pt.switch(side < 0, (lo - mean_c) / sd_c, (mean_c - hi) / sd_c)
            pm.Potential("visit_censored", pm.logcdf(pm.Normal.dist(0.0, 1.0), zc).sum())
    return model
