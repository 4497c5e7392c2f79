"""Integrated leave-one-patient-out: each patient's likelihood with their own parameters integrated out.

Why. The fit's ``log_likelihood["obs"]`` is conditional: log p(y_i | theta_i, phi), with theta_i
the patient's own (logit alpha0, A, logit S0). Leaving patient i out moves theta_i's posterior
from "fitted to y_i" back to the population distribution, a shift far too large for importance
sampling from the full posterior: PSIS reports Pareto k > 0.7 for many patients (the test fixture:
6 of 18, k up to 0.96; an earlier count of 99-100 of 100 on the flagship trial was inflated by
the XLA bug in :mod:`plasticity_rl._engine.xla`). The quantity a
model comparison should predict is a *new patient's* data given what the others taught us about
the population, p(y_i | phi) = integral of p(y_i | theta, phi) p(theta | phi) dtheta. It depends
on the group parameters only, which no single patient moves much, so PSIS-LOO over it is stable
("integrated" or marginal LOO: Vehtari et al. 2016, JMLR 17:103; Merkle, Furr & Rabe-Hesketh
2019, Psychometrika 84:802).

How. For each retained posterior draw of the group parameters phi_s, the integral is estimated
by importance sampling around a Laplace approximation of the patient's conditional posterior
p(theta_i | y_i, phi_s): a few damped Newton steps from the fit's own draw theta_i^(s) (already a
sample of that conditional) find the mode; the proposal is a Student-t (4 df) with the inverse
Hessian there as scale, mixed with the population distribution N(mu_s, tau_s^2) itself
("defensive" importance sampling, Hesterberg 1995). The conditional posterior moves with phi_s
(kappa and epsilon shift where a patient's schema is best explained), so a proposal fitted to
theta_i's marginal posterior misses it; measured: importance-sampling ESS of 1 and estimates off
by several nats. The likelihood is :func:`plasticity_rl.inference.model.patient_log_lik`, the
one the fit samples. The importance-sampling effective sample size of every (draw, patient)
estimate is reported, so a too-small M shows up instead of hiding; a test checks the estimate
against plain Monte Carlo from the population with many draws.
"""

from __future__ import annotations

import json
import math
from functools import cache, partial

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from plasticity_rl._engine.devices import device_split, on_devices
from plasticity_rl._engine.xla import fit_program, jit_fit_program
from plasticity_rl.inference.model import (
    ModelSpec,
    build,
    cohort_trajectories,
    patient_log_lik,
    window_was_fitted,
)
from plasticity_rl.inference.prepare import FitData, ModelInputs, prepare

T_DF = 4.0  # proposal tails (its covariance is twice the Laplace covariance)
DEFENSIVE = 0.2  # share of proposal draws from the population distribution N(mu_s, tau_s^2)
NEWTON_STEPS = 3  # from the fit's own draw, already near the conditional mode
HELDOUT_NEWTON_STEPS = 8  # from the population mean, for a patient the fit never saw (K-fold)
MAX_STEP = 1.0  # largest Newton move per coordinate (logit / boost units) per step
FD_STEP = 0.01  # central-difference step for the Hessian (logit / boost units)
IS_BATCH = 64  # importance-sampling proposals evaluated at once (vmapped), for all patients


def group_names(spec: ModelSpec) -> list[str]:
    """Posterior variables a patient's marginal likelihood depends on: everything but theta_i."""
    names = [f"{k}_{n}" for n in spec.patient_params for k in ("mu", "tau")]
    return names + list(spec.group_params) + list(spec.window.params) + list(spec.observation_params)


def thin_indices(n_draws: int, max_draws: int) -> np.ndarray:
    """Evenly spaced draw indices (per chain), at most ``max_draws`` per chain."""
    step = max(1, math.ceil(n_draws / max(1, max_draws)))
    return np.arange(0, n_draws, step)


def _positive_definite(H, floor: float = 1e-2):
    """Symmetric (..., P, P) with eigenvalues raised to at least ``floor``."""
    w, v = jnp.linalg.eigh(0.5 * (H + jnp.swapaxes(H, -1, -2)))
    return jnp.einsum("...pk,...k,...qk->...pq", v, jnp.maximum(w, floor), v)


@fit_program(static_argnames=("spec", "M", "newton_steps"))
def marginal_draws(
    spec: ModelSpec, x: ModelInputs, groups: dict, theta_fit, M: int, key, newton_steps: int = NEWTON_STEPS
):
    """Marginal log-likelihood and IS ESS, both (S, N), for S draws of the group parameters.

    ``groups``: name -> (S,) draws of :func:`group_names`; ``theta_fit`` (S, N, P): the fit's
    per-patient parameters at those draws (the Newton start; for patients the fit never saw,
    the population mean with more ``newton_steps``). Jitted with the data as an argument,
    so another data set of the same shape reuses the compilation.
    """
    names = spec.patient_params
    N, P = x.arm_index.shape[0], len(names)
    n_pop = min(M - 1, max(1, int(round(DEFENSIVE * M))))
    k_z, k_chi, k_pop = jax.random.split(key, 3)
    # Common random numbers, shared by every draw of the group parameters.
    z_t = jax.random.normal(k_z, (M - n_pop, N, P))
    chi = jax.random.gamma(k_chi, T_DF / 2.0, (M - n_pop, N, 1)) * (2.0 / T_DF)  # chi2(df) / df
    z_pop = jax.random.normal(k_pop, (n_pop, N, P))

    def one_draw(args):
        g, th_fit = args
        mu = jnp.stack([g[f"mu_{n}"] for n in names])
        tau = jnp.stack([g[f"tau_{n}"] for n in names])
        prior = dist.Independent(dist.Normal(mu, tau), 1)

        def log_lik(th, dense_session_maps=True):  # (N, P) -> (N,)
            theta = {**g, **{n: th[:, j] for j, n in enumerate(names)}}
            if spec.likelihood == "marginal":  # the filter: no trajectories to pass
                return patient_log_lik(spec, theta, x)
            return patient_log_lik(spec, theta, x, cohort_trajectories(spec, theta, x, dense_session_maps))

        def neg_log_joint(th):  # patients are independent given phi: the sum's gradient is per patient
            return -jnp.sum(log_lik(th) + prior.log_prob(th))

        grad = jax.grad(neg_log_joint)

        def hessian_blocks(th):  # (N, P, P): d grad_i / d theta_i by central differences
            # The gradient at theta +- h e_j, one coordinate j at a time (a vmap over the 2P
            # shifts ran ~15 % slower). Differences, not reverse over reverse (the likelihood's
            # recurrence has a custom reverse pass, so forward mode cannot go through it): that
            # program took 1.9 s to trace and 6.3 s to compile against 1.1 s and 4.1 s, and the
            # flagship `schema` LOO ran in 5.6-5.8 s against 5.2-5.3 s (benchmarks/README.md). The Hessian
            # only shapes the Newton steps and the proposal, which the importance weights correct;
            # its O(h^2) error (~1e-4 relative at h = 0.01) and float32 rounding (~1e-5) change
            # the estimates by a median 4e-6 nats per patient and draw.
            shifts = FD_STEP * jnp.eye(P, dtype=th.dtype)[:, None, :]  # (P, 1, P)
            g = jax.lax.map(grad, jnp.concatenate([th + shifts, th - shifts]))  # (2P, N, P)
            H = jnp.moveaxis((g[:P] - g[P:]) / (2.0 * FD_STEP), 0, -1)  # H[n, i, j] = d g_i / d theta_j
            return 0.5 * (H + jnp.swapaxes(H, -1, -2))

        def newton(th, _):
            step = jnp.linalg.solve(_positive_definite(hessian_blocks(th)), grad(th)[..., None])[..., 0]
            return th - jnp.clip(step, -MAX_STEP, MAX_STEP), None

        mode, _ = jax.lax.scan(newton, th_fit, None, length=newton_steps)
        cov = jnp.linalg.inv(_positive_definite(hessian_blocks(mode)))
        tril = jnp.linalg.cholesky(0.5 * (cov + jnp.swapaxes(cov, -1, -2)))
        student = dist.MultivariateStudentT(T_DF, mode, tril)
        t_draws = mode + jnp.einsum("npq,mnq->mnp", tril, z_t) / jnp.sqrt(chi)
        theta = jnp.concatenate([t_draws, mu + tau * z_pop], axis=0)  # (M, N, P)
        log_prior = prior.log_prob(theta)  # (M, N)
        log_q = jnp.logaddexp(
            math.log1p(-n_pop / M) + student.log_prob(theta), math.log(n_pop / M) + log_prior
        )
        # 64 proposals at a time (a 6,400-wide recurrence at flagship size): 35.3 ms per draw of the
        # flagship's group parameters, against 38.2 with 16 at a time and 36.6 with 128
        # Only evaluated: the session maps looked up per step, not written out 64 times over
        # (that layout is for gradients; here it cost the flagship's LOO ~3 s).
        ll = jax.lax.map(
            partial(log_lik, dense_session_maps=False), theta, batch_size=min(M, IS_BATCH)
        )  # (M, N)
        lw = jnp.where(jnp.isfinite(ll), ll + log_prior - log_q, -jnp.inf)
        lse = jax.scipy.special.logsumexp(lw, axis=0)
        ess = jnp.exp(2.0 * lse - jax.scipy.special.logsumexp(2.0 * lw, axis=0))
        return lse - math.log(M), ess

    return jax.lax.map(one_draw, (groups, theta_fit))


@cache
def _on_devices(spec: ModelSpec, M: int, n_devices: int, newton_steps: int):
    """:func:`marginal_draws` as one ``pmap`` over ``n_devices`` local devices (one thread each)."""
    return jit_fit_program(
        jax.pmap(
            lambda shared, b: marginal_draws.inline(spec, shared[0], b[0], b[1], M, shared[1], newton_steps),
            in_axes=(None, 0),
            devices=jax.local_devices()[:n_devices],
        )
    )


def marginal_draws_on_devices(
    spec: ModelSpec, x: ModelInputs, groups: dict, theta_fit, M: int, key, newton_steps: int = NEWTON_STEPS
):
    """:func:`marginal_draws` with the S draws split over the local devices, when there are several.

    The draws are independent and share the common random numbers (one ``key``), so the split
    changes nothing but the wall time: with the CLI's host devices a 2-core machine runs two
    draws at once (the flagship's integrated LOO: 26 s -> 16 s, benchmarks/README.md).
    """
    D = device_split(theta_fit.shape[0])
    if D < 2:
        return marginal_draws(spec, x, groups, theta_fit, M, key, newton_steps)
    return on_devices(_on_devices(spec, M, D, newton_steps), (x, key), (groups, theta_fit), D)


def marginal_loo_data(
    idata: az.InferenceData,
    data,
    cfg=None,
    variant: str | None = None,
    max_draws: int = 50,
    importance_samples: int = 128,
    seed: int = 0,
) -> az.InferenceData:
    """InferenceData whose ``log_likelihood["obs"]`` is each patient's marginal log-likelihood.

    ``idata`` is a fit of ``variant`` to ``data`` (what :func:`plasticity_rl.inference.fit` took).
    ``max_draws`` per chain are kept (evenly spaced); its ``posterior`` holds those draws of the
    group parameters, so ``arviz.loo`` computes the relative efficiency from them. ``attrs``
    record M and the importance-sampling effective sample sizes (min, 1st percentile, median).
    """
    variant = variant or str(idata.posterior.attrs.get("variant"))
    fd = prepare(data, cfg, variant)
    post = idata.posterior
    spec, x = fitted_model(idata, fd)
    names = spec.patient_params
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    if post.sizes.get("patient") != fd.n_patients:
        raise ValueError(f"the fit has {post.sizes.get('patient')} patients, the data {fd.n_patients}")
    keep = thin_indices(n_draw, max_draws)
    gnames = group_names(spec)
    groups = group_draws(post, gnames, keep)
    theta_fit = np.stack([post[n].values[:, keep].reshape(n_chain * keep.size, -1) for n in names], axis=-1)
    ll, ess = marginal_draws_on_devices(
        spec, x, groups, jnp.asarray(theta_fit, jnp.float32), importance_samples, jax.random.key(seed)
    )  # (S, N) each
    ll = np.asarray(ll, np.float64).reshape(n_chain, keep.size, -1)
    ess = np.asarray(ess, np.float64)
    if not np.all(np.isfinite(ll)):
        raise FloatingPointError("non-finite marginal log-likelihood; the fit's posterior may be degenerate")

    coords = {"patient": post["patient"].values, "draw": post["draw"].values[keep]}
    kept = {n: post[n].values[:, keep] for n in gnames}
    out = az.from_dict(posterior=kept, log_likelihood={"obs": ll}, coords=coords, dims={"obs": ["patient"]})
    attrs = {
        "variant": variant,
        "loo": "integrated: each patient's log-likelihood with their own parameters integrated "
        "over the population distribution (importance sampling)",
        "importance_samples": int(importance_samples),
        "proposal": f"{1 - DEFENSIVE:.0%} Student-t ({T_DF:g} df) at the Laplace approximation of each "
        f"patient's conditional posterior, {DEFENSIVE:.0%} the population distribution",
        "is_ess_min": float(ess.min()),
        "is_ess_p01": float(np.quantile(ess, 0.01)),
        "is_ess_median": float(np.median(ess)),
        "draws_per_chain": int(keep.size),
    }
    for group in out.groups():
        out[group].attrs.update(attrs)
    return out


def fitted_model(idata: az.InferenceData, fd: FitData) -> tuple[ModelSpec, ModelInputs]:
    """The model ``idata`` was fitted with (variant, window, fixed values, likelihood), on ``fd``."""
    post = idata.posterior
    _, spec, x = build(
        fd,
        fit_window=window_was_fitted(post),
        fixed=json.loads(post.attrs.get("fixed", "{}")),
        likelihood=post.attrs.get("likelihood"),
    )
    return spec, x


def group_draws(post, names: list[str], keep: np.ndarray) -> dict:
    """name -> (chains * len(keep),) float32 draws of the group parameters ``names``."""
    return {n: jnp.asarray(post[n].values[:, keep].reshape(-1), jnp.float32) for n in names}


def heldout_log_lik(
    idata: az.InferenceData,
    heldout: FitData,
    max_draws: int = 50,
    importance_samples: int = 128,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Log-likelihood of patients the fit never saw, their own parameters integrated out.

    (S, N) each: log p(y_i | phi_s) and its importance-sampling ESS, for S retained draws of the
    group parameters of ``idata`` (a fit to *other* patients of the same design, as K-fold
    cross-validation makes) and the N patients of ``heldout``. The same estimator as
    :func:`marginal_loo_data`, started from the population mean, with no draw of theta_i to
    start from. log mean_s exp(ll[s, i]) is patient i's out-of-sample predictive density.
    """
    post = idata.posterior
    spec, x = fitted_model(idata, heldout)
    keep = thin_indices(post.sizes["draw"], max_draws)
    groups = group_draws(post, group_names(spec), keep)
    mu = np.stack([np.asarray(groups[f"mu_{n}"]) for n in spec.patient_params], axis=-1)  # (S, P)
    start = np.broadcast_to(mu[:, None, :], (mu.shape[0], heldout.n_patients, mu.shape[1]))
    ll, ess = marginal_draws_on_devices(
        spec,
        x,
        groups,
        jnp.asarray(start, jnp.float32),
        importance_samples,
        jax.random.key(seed),
        HELDOUT_NEWTON_STEPS,
    )
    ll, ess = np.asarray(ll, np.float64), np.asarray(ess, np.float64)
    if not np.all(np.isfinite(ll)):
        raise FloatingPointError("non-finite held-out log-likelihood; the fit's posterior may be degenerate")
    return ll, ess
