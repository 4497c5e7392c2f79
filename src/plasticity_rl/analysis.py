"""What a fit says: belief-curve contrasts between arms, synergy, and the plasticity window.

Everything here reads an ArviZ InferenceData written by :func:`plasticity_rl.inference.fit`:
``posterior_predictive.V_arm`` / ``S_arm`` (draw x arm x day, the arm's mean belief at the start
of each day) and the posterior of the group parameters. Tables are tidy pandas frames.
"""

from __future__ import annotations

import itertools
import json

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from plasticity_rl.config import Config
from plasticity_rl.inference.model import window_was_fitted
from plasticity_rl.plasticity import KernelParams, arm_drive, diffexp_peak_hours, learning_rate

HDI_PROB = 0.94


def _draws(da) -> np.ndarray:
    """(chain, draw, ...) -> (chain * draw, ...)."""
    v = np.asarray(da)
    return v.reshape((v.shape[0] * v.shape[1],) + v.shape[2:])  # not -1: v may be empty (no visits)


def _hdi(x: np.ndarray, prob: float = HDI_PROB) -> tuple[float, float]:
    lo, hi = az.hdi(np.asarray(x, np.float64), hdi_prob=prob)
    return float(lo), float(hi)


def _hdi_each(draws: np.ndarray, prob: float = HDI_PROB) -> tuple[np.ndarray, np.ndarray]:
    """HDI of every trailing element of (draws, ...) -> (low, high), each shaped like draws[0]."""
    out = az.hdi(np.asarray(draws, np.float64)[None], hdi_prob=prob)  # (1, n, ...) = (chain, draw, ...)
    return out[..., 0], out[..., 1]


def _summary_row(x: np.ndarray) -> dict:
    lo, hi = _hdi(x)
    return {
        "mean": float(np.mean(x)),
        "sd": float(np.std(x)),
        f"hdi_{HDI_PROB:.0%}_low": lo,
        f"hdi_{HDI_PROB:.0%}_high": hi,
        "p_gt_0": float(np.mean(x > 0)),
    }


def default_contrast_days(cfg: Config) -> list[int]:
    """From the design itself: the end of the first therapy block given with an active dose,
    the end of the last therapy block of any arm, and the last day."""
    days = cfg.experiment.days
    ends = {
        arm.name: max(t for s in arm.sessions for t in s.times_days())
        for arm in cfg.all_arms()
        if arm.sessions
    }
    with_drug = [ends[a.name] for a in cfg.all_arms() if a.name in ends and _is_active(a)]
    picks = ([int(np.ceil(min(with_drug)))] if with_drug else []) + (
        [int(np.ceil(max(ends.values())))] if ends else []
    )
    return sorted({d for d in picks + [days] if 0 <= d <= days})


def _is_active(arm) -> bool:
    return any(d.amount > 0 for d in arm.doses)


def _session_times(arm) -> list[float]:
    return sorted(t for s in arm.sessions for t in s.times_days())


def synergy_roles(cfg: Config) -> tuple[dict[str, str] | None, str]:
    """The 2 x 2 of drug x therapy in the window, read from the arms' ingredients.

    placebo: no active dose, no therapy; ketamine: an active dose, no therapy; combination: an
    active dose and the therapy that starts soonest after it; therapy: no active dose and the
    combination's session times. Returns (roles, "") or (None, why the design has no 2 x 2).
    """
    arms = list(cfg.all_arms())
    with_drug = [a for a in arms if _is_active(a) and a.sessions]
    if not with_drug:
        return None, "no arm gives therapy with an active dose"

    def delay(a):
        first_dose = min(t for d in a.doses if d.amount > 0 for t in [d.day + d.hour / 24.0])
        return _session_times(a)[0] - first_dose

    # the soonest therapy after the dose (a therapy before it is not in its window)
    combination = min(with_drug, key=lambda a: (delay(a) < 0, abs(delay(a))))
    candidates = {
        "placebo": [a for a in arms if not _is_active(a) and not a.sessions],
        "ketamine": [a for a in arms if _is_active(a) and not a.sessions],
        "therapy": [
            a for a in arms if not _is_active(a) and _session_times(a) == _session_times(combination)
        ],
    }
    roles, problems = {"combination": combination.name}, []
    for role, found in candidates.items():
        if len(found) != 1:
            what = "none" if not found else ", ".join(a.name for a in found)
            problems.append(f"{role} arm: {what}")
        else:
            roles[role] = found[0].name
    if problems:
        return None, f"no unique 2 x 2 around {combination.name!r} (" + "; ".join(problems) + ")"
    return roles, ""


def arm_curves(idata: az.InferenceData) -> pd.DataFrame:
    """Posterior mean and 94% HDI of each arm's mean V(t) and S(t), one row per arm x day."""
    pp = idata.posterior_predictive
    rows = []
    for belief in ("V", "S"):
        draws = _draws(pp[f"{belief}_arm"])  # (n, arm, time)
        lo, hi = _hdi_each(draws)
        for a, arm in enumerate(pp["arm"].values):
            for t, day in enumerate(pp["time"].values):
                rows.append(
                    {
                        "belief": belief,
                        "arm": str(arm),
                        "day": float(day),
                        "mean": float(draws[:, a, t].mean()),
                        "hdi_low": float(lo[a, t]),
                        "hdi_high": float(hi[a, t]),
                    }
                )
    return pd.DataFrame(rows)


PPC_COLUMNS = [
    "channel",
    "arm",
    "day",
    "n",
    "observed",
    "replicated_mean",
    "replicated_low",
    "replicated_high",
]


def ppc_arm_means(idata: az.InferenceData, prob: float = HDI_PROB) -> pd.DataFrame:
    """Posterior predictive check by arm: each arm's observed mean rating against the same mean
    of the fit's replicated data sets, per day (EMA) and per visit day (clinician scores).

    One row per channel x arm x day with ``n`` ratings recorded: ``observed`` their mean;
    ``replicated_mean`` / ``_low`` / ``_high`` the mean and central ``prob`` interval over the
    draws of the same ratings replicated (``posterior_predictive.ema`` / ``visits``, NaN where
    none was recorded, so both means are over the same patients). EMA day d rates V at the end
    of the day: its ``day`` is d + 1, the time axis of the belief curves. Days are in days since
    the start of the trial. An observed mean outside its band is a misfit the model did not
    predict. Empty (with the columns) for a fit without replicated ratings.
    """
    pp, obs = idata.posterior_predictive, idata.observed_data
    if "ema" not in pp or "visits" not in pp:
        return pd.DataFrame(columns=PPC_COLUMNS)
    arm_index = np.asarray(idata.constant_data["arm_index"])
    arms = [str(a) for a in pp["arm"].values]
    visit_day = np.asarray(idata.constant_data["visit_day"], np.float64)
    channels = {
        "ema": np.broadcast_to(np.arange(obs.sizes["day"], dtype=np.float64) + 1.0, obs["ema"].shape),
        "visits": np.round(visit_day, 3),
    }
    lo_q, hi_q = (1 - prob) / 2, (1 + prob) / 2
    rows = []
    for channel, day_of in channels.items():
        observed = np.asarray(obs[channel], np.float64)
        replicated = _draws(pp[channel]).astype(np.float64)  # (S, N, ...); stored as float16
        recorded = np.isfinite(observed)
        for a, arm in enumerate(arms):
            in_arm = recorded & (arm_index == a).reshape((-1,) + (1,) * (observed.ndim - 1))
            for day in np.unique(day_of[in_arm]):
                sel = in_arm & (day_of == day)
                rep = replicated[:, sel].mean(axis=1)
                rows.append(
                    {
                        "channel": channel,
                        "arm": arm,
                        "day": float(day),
                        "n": int(sel.sum()),
                        "observed": float(observed[sel].mean()),
                        "replicated_mean": float(rep.mean()),
                        "replicated_low": float(np.quantile(rep, lo_q)),
                        "replicated_high": float(np.quantile(rep, hi_q)),
                    }
                )
    return pd.DataFrame(rows, columns=PPC_COLUMNS)


def belief_contrasts(
    idata: az.InferenceData, days: list[int], pairs: list[tuple[str, str]] | None = None
) -> pd.DataFrame:
    """Posterior of arm_a - arm_b in mean V and S at the given days: mean, HDI, P(diff > 0)."""
    pp = idata.posterior_predictive
    arms = [str(a) for a in pp["arm"].values]
    times = list(pp["time"].values)
    # Default: every pair, later arm first (the config lists controls first: "ketamine - placebo").
    pairs = pairs or [(b, a) for a, b in itertools.combinations(arms, 2)]
    rows = []
    for belief in ("V", "S"):
        draws = _draws(pp[f"{belief}_arm"])
        for a, b in pairs:
            for day in days:
                t = times.index(min(times, key=lambda x: abs(x - day)))
                diff = draws[:, arms.index(a), t] - draws[:, arms.index(b), t]
                rows.append(
                    {"belief": belief, "arm_a": a, "arm_b": b, "day": float(times[t]), **_summary_row(diff)}
                )
    return pd.DataFrame(rows)


def synergy(idata: az.InferenceData, day: float, roles: dict[str, str]) -> pd.DataFrame:
    """Drug x in-window therapy interaction at ``day`` (``roles``: :func:`synergy_roles`):
    (combination - ketamine) - (therapy - placebo), for V and S. Empty if an arm is missing."""
    pp = idata.posterior_predictive
    arms = [str(a) for a in pp["arm"].values]
    if not all(r in arms for r in roles.values()):
        return pd.DataFrame()
    times = list(pp["time"].values)
    t = times.index(min(times, key=lambda x: abs(x - day)))
    rows = []
    for belief in ("V", "S"):
        d = _draws(pp[f"{belief}_arm"])[:, :, t]
        col = {k: d[:, arms.index(v)] for k, v in roles.items()}
        inter = (col["combination"] - col["ketamine"]) - (col["therapy"] - col["placebo"])
        rows.append(
            {
                "belief": belief,
                "day": float(times[t]),
                "contrast": f"({roles['combination']} - {roles['ketamine']}) - ({roles['therapy']} - {roles['placebo']})",
                **_summary_row(inter),
            }
        )
    return pd.DataFrame(rows)


def _fitted_drive(idata: az.InferenceData) -> np.ndarray | None:
    """(draws, arm, step) g(k_j) at each draw's fitted time constants; None if the window was fixed.

    The same function the fit and the simulator use (plasticity.arm_drive), per posterior draw.
    """
    post, const, attrs = idata.posterior, idata.constant_data, idata.posterior.attrs
    if not window_was_fitted(post) or "dose_hours" not in const:
        return None
    gamma = attrs.get("window_kernel", "gamma") == "gamma"
    names = ("tau_k_hours",) if gamma else ("tau_rise_hours", "tau_decay_hours")
    taus = {n: jnp.asarray(_draws(post[n]), jnp.float32) for n in names}
    t = jnp.asarray(const["t_hours"], jnp.float32)
    dh, da = jnp.asarray(const["dose_hours"], jnp.float32), jnp.asarray(const["dose_amounts"], jnp.float32)
    shape, k_max = float(attrs["window_gamma_shape"]), float(attrs["window_saturation"])

    def one(th):
        kp = KernelParams(
            0 if gamma else 1,
            shape,
            th.get("tau_k_hours", 1.0),
            th.get("tau_rise_hours", 1.0),
            th.get("tau_decay_hours", 2.0),
        )
        return arm_drive(t, dh, da, kp, k_max)

    return np.asarray(jax.jit(lambda th: jax.lax.map(one, th, batch_size=256))(taus), np.float64)


def _group_mean_draws(idata: az.InferenceData, names: tuple[str, ...]) -> np.ndarray:
    """Draws of the population mean of the first of ``names`` the fit has (fitted, or held fixed)."""
    post = idata.posterior
    fixed = json.loads(post.attrs.get("fixed", "{}"))
    for name in names:
        if f"mu_{name}" in post:
            return _draws(post[f"mu_{name}"])
        if name in fixed:
            return np.full(post.sizes["chain"] * post.sizes["draw"], float(fixed[name]))
    raise KeyError(f"the fit has none of {[f'mu_{n}' for n in names]}")


def window_curve(idata: az.InferenceData, steps_per_day: int) -> pd.DataFrame:
    """alpha(t) per arm at the population-mean parameters, posterior mean and 94% HDI.

    alpha_j = (1 - gate_j) sigmoid(mu_logit_alpha0 + mu_A g(k_j)) (alpha+ in asymmetric
    variants), from the fitted group means, the arm's doses and gate, and - when the fit
    estimated the kernel's time constants - each draw's own window g(k_j); otherwise the
    config's.
    """
    post, const = idata.posterior, idata.constant_data
    la0 = _group_mean_draws(idata, ("logit_alpha0", "logit_alpha0_pos"))
    A = _group_mean_draws(idata, ("A", "A_pos"))
    gate = np.asarray(const["gate"])  # (arm, step)
    g_draws = _fitted_drive(idata)
    fitted = g_draws is not None
    if not fitted:
        g_draws = np.asarray(const["g_k"])[None]  # one window for every draw
    arms = (
        [str(a) for a in const["arm"].values]
        if "arm" in const.coords
        else [str(a) for a in post["arm"].values]
    )
    rows = []
    for i, arm in enumerate(arms):
        alpha = np.asarray(
            learning_rate(la0[:, None], A[:, None], g_draws[:, i], gate[i][None, :]), np.float64
        )
        lo, hi = _hdi_each(alpha)
        for j in range(gate.shape[1]):
            rows.append(
                {
                    "arm": arm,
                    "step": j,
                    "day": j / steps_per_day,
                    "alpha_mean": float(alpha[:, j].mean()),
                    "hdi_low": float(lo[j]),
                    "hdi_high": float(hi[j]),
                }
            )
    out = pd.DataFrame(rows)
    out.attrs["window_length"] = "fitted" if fitted else "fixed"  # read by the figure's caption
    return out


def window_parameters(idata: az.InferenceData, cfg: Config | None = None) -> pd.DataFrame:
    """The window's shape and size: kernel time constants, the kernel's peak time (hours after a
    dose) and the ketamine boost mu_A, each with posterior mean, SD and 94% HDI.

    Rows say whether each value was fitted or fixed at the config's value (then SD 0; given
    ``cfg``, the fit's config).
    """
    post, attrs = idata.posterior, idata.posterior.attrs
    gamma = attrs.get("window_kernel", "gamma") == "gamma"
    shape = float(attrs.get("window_gamma_shape", np.nan))
    names = ("tau_k_hours",) if gamma else ("tau_rise_hours", "tau_decay_hours")
    values = {}
    for n in names:
        if n in post:
            values[n] = (_draws(post[n]), "fitted")
        elif cfg is not None:
            values[n] = (np.array([float(getattr(cfg.plasticity, n))]), "fixed (config)")
    if gamma and "tau_k_hours" in values:
        tk, how = values["tau_k_hours"]
        values["peak_hours"] = (shape * tk, how)
    elif "tau_rise_hours" in values and "tau_decay_hours" in values:
        r, d = values["tau_rise_hours"][0], values["tau_decay_hours"][0]
        values["peak_hours"] = (np.asarray(diffexp_peak_hours(r, d), np.float64), values["tau_rise_hours"][1])
    for n in ("mu_A", "mu_A_pos"):
        if n in post:
            values[n] = (_draws(post[n]), "fitted")
    rows = []
    for n, (x, how) in values.items():
        lo, hi = _hdi(x) if x.size > 1 else (float(x[0]), float(x[0]))
        rows.append(
            {
                "parameter": n,
                "how": how,
                "mean": float(np.mean(x)),
                "sd": float(np.std(x)),
                f"hdi_{HDI_PROB:.0%}_low": lo,
                f"hdi_{HDI_PROB:.0%}_high": hi,
            }
        )
    return pd.DataFrame(rows)
