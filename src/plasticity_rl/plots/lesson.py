"""Lesson figures: the ideas under the model, one function per figure.

- :func:`prediction_error_step`: one prediction-error update drawn step by step, low vs high α;
- :func:`kernel_and_alpha`: the dose kernel K and α(t) for the single, six-infusion and booster
  schedules, with the dissociation gate;
- :func:`timing_heatmap` (data from :func:`plasticity_rl.lessons.timing_grid`): follow-up benefit of therapy over
  (therapy delay × ketamine boost A) — the model's prediction, not a trial result.

Same house style, captions and window shading as :mod:`plasticity_rl.plots.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Patch

from plasticity_rl.config import (
    Config,
    Plasticity,
    Population,
    as_config,
)
from plasticity_rl.plasticity import dissociation, drive, kernel_params, learning_rate, saturate
from plasticity_rl.plots.figures import BELIEF_LABEL, DAYS_LABEL
from plasticity_rl.plots.style import (
    NOTE_GID,
    OKABE_ITO,
    WINDOW_ALPHA,
    WINDOW_COLOR,
    WINDOW_FRACTION,
    WINDOW_GID,
    attach_caption,
    house_style,
    new_figure,
)

if TYPE_CHECKING:
    pass

GOOD, BAD = "#0072B2", "#D55E00"  # Okabe-Ito blue / vermillion: went well / went badly
V_COLOR, S_COLOR = "#000000", "#009E73"
NOTE_BOX = {"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#D55E00", "alpha": 0.95}


def _figure(figsize, **mosaic_kw) -> tuple[Figure, dict]:
    """A pyplot-free constrained-layout figure with a subplot mosaic (house style is active)."""
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplot_mosaic(**mosaic_kw)


def _shade_spans(ax, t_days: np.ndarray, g: np.ndarray, frac: float = WINDOW_FRACTION, label: bool = True):
    """Shade where ``g`` >= ``frac`` of its peak, the same way as :func:`shade_window`."""
    peak = float(np.max(g, initial=0.0))
    if peak <= 0:
        return None
    on = np.concatenate([[0], (g >= frac * peak).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(on))
    dt = float(t_days[1] - t_days[0]) if len(t_days) > 1 else 0.0
    for a, b in zip(edges[::2], edges[1::2]):
        ax.axvspan(
            t_days[a],
            t_days[b - 1] + dt,
            color=WINDOW_COLOR,
            alpha=WINDOW_ALPHA,
            lw=0,
            zorder=0,
            gid=WINDOW_GID,
        )
    return Patch(
        color=WINDOW_COLOR, alpha=WINDOW_ALPHA, lw=0
    ), f"plasticity window (drive ≥ {frac:.0%} of peak)"


# ----------------------------------------------------------------------------- prediction error


def prediction_error_step(
    alpha_low: float = 0.1, alpha_high: float = 0.5, V: float = 0.25, outcome: float = 1.0
) -> Figure:
    """One prediction-error update, V ← V + α (o − V), drawn step by step for a low and a high α.

    Each panel reads left to right: the expectation V, the outcome o, the prediction error
    δ = o − V, the step actually taken α δ, and the new expectation.
    """
    for name, a in (("alpha_low", alpha_low), ("alpha_high", alpha_high)):
        if not 0.0 < a <= 1.0:
            raise ValueError(f"{name} must be in (0, 1], got {a}")
    if not 0.0 <= V <= 1.0 or not 0.0 <= outcome <= 1.0:
        raise ValueError(f"V and outcome must be in [0, 1], got V={V}, outcome={outcome}")
    delta = outcome - V
    o_color = GOOD if delta >= 0 else BAD
    cats = [
        "expectation\nV",
        "outcome\no",
        "prediction\nerror δ = o − V",
        "step\nα · δ",
        "new expectation\nV + α · δ",
    ]
    with house_style():
        fig, axes = new_figure(1, 2, sharey=True, figsize=(14.0, 6.5))
        for ax, a, kind in zip(axes[0], (alpha_low, alpha_high), ("low", "high")):
            new_V = V + a * delta
            ax.axhline(V, color="0.5", ls=":", lw=1.4, zorder=1)
            ax.bar(0, V, width=0.55, color="0.55", zorder=2)
            ax.bar(1, outcome, width=0.55, color=o_color, alpha=0.85, zorder=2)
            for x, y0, y1, c in ((2, V, outcome, o_color), (3, V, new_V, "#CC79A7")):
                if abs(y1 - y0) > 1e-9:
                    ax.add_patch(
                        FancyArrowPatch(
                            (x, y0),
                            (x, y1),
                            arrowstyle="-|>",
                            mutation_scale=26,
                            lw=3.2,
                            color=c,
                            zorder=3,
                            shrinkA=0,
                            shrinkB=0,
                        )
                    )
            ax.bar(4, V, width=0.55, fill=False, ec="0.55", ls="--", lw=1.4, zorder=2)
            ax.bar(4, new_V, width=0.55, color="#CC79A7", alpha=0.85, zorder=2)
            texts = [
                (0, V, f"{V:.2f}"),
                (1, outcome, f"{outcome:.2f}"),
                (2, max(V, outcome), f"δ = {delta:+.2f}"),
                (3, max(V, new_V), f"{a:.2f} × {delta:+.2f}\n= {a * delta:+.3f}"),
                (4, max(V, new_V), f"{new_V:.3f}"),
            ]
            for x, y, s in texts:
                ax.text(x, y + 0.03, s, ha="center", va="bottom", fontsize=13)
            ax.set_xticks(range(5), cats, fontsize=11.5)
            ax.set_xlim(-0.6, 4.6)
            ax.set_ylim(0, 1.25)
            ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
            ax.grid(axis="x", visible=False)
            ax.set_title(f"{kind} learning rate α = {a:g}: V moves {a:.0%} of the way")
        axes[0, 0].set_ylabel(BELIEF_LABEL)
        fig.suptitle("One prediction-error update:  V ← V + α · (o − V)")
    pop, pl = Population(), Plasticity()
    a0 = 1.0 / (1.0 + np.exp(-pop.logit_alpha0.mean))
    a_peak = 1.0 / (
        1.0 + np.exp(-(pop.logit_alpha0.mean + pop.A.mean * pl.saturation * np.tanh(1.0 / pl.saturation)))
    )
    return attach_caption(
        fig,
        f"One prediction-error (Rescorla–Wagner) update drawn step by step. The patient expected an "
        f"experience to go well with probability V = {V:g}; it {'went well' if outcome >= 0.5 else 'went badly'} "
        f"(o = {outcome:g}). The prediction error δ = o − V is the surprise; the learning rate α sets what "
        f"fraction of it is learned: with α = {alpha_low:g} the expectation moves to {V + alpha_low * delta:.3f}, "
        f"with α = {alpha_high:g} to {V + alpha_high * delta:.3f}. Same experience, same surprise, different "
        f"learning. Illustrative values chosen to be visible: in the shipped model the baseline α0 is about "
        f"{a0:.2f} per experience and one infusion raises it to about {a_peak:.2f} at its peak for a boost "
        f"A = {pop.A.mean:g} (A is not measured in humans).",
    )


# ----------------------------------------------------------------------------- kernel and alpha

KERNEL_SCHEDULES: dict[str, str] = {
    "single_infusion": "ketamine",
    "six_infusions": "six",
    "boosters": "boosters",
}


def _alpha_fine(
    cfg: Config,
    dose_days: np.ndarray,
    amounts: np.ndarray,
    t_h: np.ndarray,
    kernel: str | None = None,
    A: float | None = None,
):
    """α(t), drive g(k(t)) and the acute drug state on a fine time grid, for the population mean patient."""
    pl = cfg.plasticity if kernel is None else cfg.plasticity.model_copy(update={"kernel": kernel})
    kp = kernel_params(cfg.model_copy(update={"plasticity": pl}))
    pop = cfg.population
    a, g, gate = _alpha_core(
        jnp.asarray(t_h, jnp.float32),
        jnp.asarray(np.asarray(dose_days) * 24.0, jnp.float32),
        jnp.asarray(amounts, jnp.float32),
        kp,
        pl.gate,
        pl.saturation,
        pl.infusion_minutes / 60.0,
        pl.half_life_hours,
        pl.dissociation_gone_by_hours,
        pop.logit_alpha0.mean,
        pop.A.mean if A is None else A,
    )
    return np.asarray(a, np.float64), np.asarray(g, np.float64), np.asarray(gate, np.float64)


_drive_jit = jax.jit(drive, static_argnames=("kp",))


@partial(jax.jit, static_argnames=("kp", "gated"))
def _alpha_core(t, dh, da, kp, gated, saturation, infusion_h, half_life_h, gone_by_h, logit_alpha0, A):
    """α, g(k) and the acute drug state at times ``t`` (hours): the package's plasticity functions, jitted."""
    g = saturate(drive(t, dh, da, kp), saturation)
    if gated:
        state = dissociation(t[:, None] - dh[None, :], infusion_h, half_life_h, gone_by_h)
        gate = jnp.clip(jnp.sum(jnp.where(da[None, :] > 0, state, 0.0), axis=1), 0.0, 1.0)
    else:
        gate = jnp.zeros_like(g)
    return learning_rate(logit_alpha0, A, g, gate), g, gate


def kernel_and_alpha(
    schedules: Mapping[str, str] | None = None,
    *,
    configs: Mapping[str, Config] | None = None,
    A: float | None = None,
    frac: float = WINDOW_FRACTION,
) -> Figure:
    """The dose kernel K(t) (gamma and diffexp) and α(t) for several dose schedules.

    ``schedules`` maps a bundled config name to the arm to draw (default: one infusion from
    ``single_infusion``, six over twelve days from ``six_infusions``, induction + boosters from
    ``boosters``); ``configs`` may supply the Config objects for those names instead of loading them.
    α(t) is that of the population-mean patient (α0 and A at their population means, or ``A``),
    computed on a 10-minute grid so the dissociation gate (α = 0 for about 2 h after an infusion) shows.
    """
    schedules = dict(KERNEL_SCHEDULES if schedules is None else schedules)
    configs = dict(configs or {})
    rows = []
    for name, arm_name in schedules.items():
        cfg = configs.get(name) or as_config(name)
        arms = {a.name: a for a in cfg.all_arms()}
        if arm_name not in arms:
            raise ValueError(f"config {name!r} has no arm {arm_name!r}; it has {sorted(arms)}")
        arm = arms[arm_name]
        times = [(t, d.amount) for d in arm.doses for t in d.times_days() if d.amount > 0]
        if not times:
            raise ValueError(f"arm {arm_name!r} of {name!r} has no active dose")
        rows.append((name, cfg, arm, np.array([t for t, _ in times]), np.array([a for _, a in times])))
    cfg0 = rows[0][1]
    pl = cfg0.plasticity
    horizon = max(c.experiment.days for _, c, *_ in rows)
    t_h = np.arange(0.0, horizon * 24.0, 1.0 / 6.0)  # 10-minute grid
    tau = np.linspace(-12.0, 168.0, 1081)

    with house_style():
        n = len(rows)
        # left column: the kernel over the upper rows, the gate zoom below (needs 2+ rows)
        half = max(1, (n + 1) // 2) if n > 1 else 1
        layout = [["kernel" if i < half else "gate", rows[i][0]] for i in range(n)]
        fig, ax = _figure((15.0, 3.0 + 2.4 * max(n, 2)), mosaic=layout, width_ratios=[1.0, 2.0])

        # (a) kernel shapes
        k_ax = ax["kernel"]
        shapes = {}
        for kind, style, label in (
            ("gamma", "-", "gamma (default)"),
            ("diffexp", "--", "diffexp (long window)"),
        ):
            kp = kernel_params(cfg0.model_copy(update={"plasticity": pl.model_copy(update={"kernel": kind})}))
            k = np.asarray(_drive_jit(jnp.asarray(tau, jnp.float32), jnp.zeros(1), jnp.ones(1), kp=kp))
            shapes[kind] = k
            k_ax.plot(tau, k, ls=style, color="k" if kind == "gamma" else "#56B4E9", label=label)
        k_mark = _shade_spans(k_ax, tau, shapes["gamma"], frac)
        k_ax.axvline(0, color="0.35", ls=":", lw=1.2)
        k_ax.set_xlim(tau[0], tau[-1])
        k_ax.set_xticks(np.arange(0, 169, 24))
        k_ax.set_ylim(0, 1.5)
        k_ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        k_ax.set_xlabel("hours after one infusion")
        k_ax.set_ylabel("kernel K (peak = 1)")
        k_ax.set_title("Dose kernel K(t)")
        kh, kl = k_ax.get_legend_handles_labels()
        if k_mark:
            kh, kl = kh + [k_mark[0]], kl + ["window, gamma (≥ " + f"{frac:.0%} of peak)"]
        k_ax.legend(kh, kl, loc="upper right", fontsize=11)

        # (b) the gate: hours around the first infusion of the first schedule
        if "gate" in ax:
            g_ax = ax["gate"]
            name, cfg, arm, dd, am = rows[0]
            t0 = float(dd.min()) * 24.0
            zh = np.arange(t0 - 3.0, t0 + 12.0, 1.0 / 60.0)
            a_f, g_f, gate_f = _alpha_fine(cfg, dd, am, zh, A=A)
            a_nogate = a_f / np.maximum(1.0 - gate_f, 1e-9)
            x = zh - t0
            g_ax.fill_between(
                x, 0, gate_f * a_nogate.max(), color="0.6", alpha=0.3, lw=0, label="acute drug state (scaled)"
            )
            g_ax.plot(x, a_nogate, color="0.45", ls="--", lw=1.6, label="α without the gate")
            g_ax.plot(x, a_f, color=OKABE_ITO[1], label="α(t)")
            g_ax.axvline(0, color="0.35", ls=":", lw=1.2)
            g_ax.set_xlim(x[0], x[-1])
            g_ax.set_ylim(0, 1.15 * a_nogate.max())
            g_ax.set_xlabel("hours after the infusion starts")
            g_ax.set_ylabel("α (per experience)")
            g_ax.set_title("Dissociation gate (first hours)")
            g_ax.legend(loc="upper left", fontsize=11)

        # (c) alpha(t) per schedule
        top = 0.0
        sched_axes = []
        for i, (name, cfg, arm, dd, am) in enumerate(rows):
            s_ax = ax[name]
            sched_axes.append(s_ax)
            a_g, g_g, _ = _alpha_fine(cfg, dd, am, t_h, A=A)
            a_d, _, _ = _alpha_fine(cfg, dd, am, t_h, kernel="diffexp", A=A)
            x = t_h / 24.0
            mark = _shade_spans(s_ax, x, g_g, frac)
            for t in dd:
                s_ax.axvline(t, color="0.35", ls=":", lw=0.9, zorder=1)
            s_ax.plot(
                dd,
                np.ones_like(dd),
                ls="none",
                marker="v",
                ms=8,
                color="k",
                clip_on=False,
                transform=s_ax.get_xaxis_transform(),
                zorder=5,
            )
            s_ax.plot(x, a_d, color="#56B4E9", ls="--", lw=1.6, label="α(t), diffexp kernel")
            s_ax.plot(x, a_g, color=OKABE_ITO[1], lw=2.0, label="α(t), gamma kernel")
            top = max(top, float(a_g.max()), float(a_d.max()))
            s_ax.set_xlim(0, horizon)
            s_ax.text(
                0.995,
                0.93,
                f"{arm.label or arm.name} ({name}.yaml)",
                transform=s_ax.transAxes,
                ha="right",
                va="top",
                fontsize=12,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
            )
            s_ax.set_ylabel("α")
            if i < len(rows) - 1:
                s_ax.tick_params(labelbottom=False)
        for s_ax in sched_axes:
            s_ax.set_ylim(0, 1.3 * top)
            s_ax.sharex(sched_axes[0])
        sched_axes[-1].set_xlabel(DAYS_LABEL)
        sched_axes[0].set_title("α(t) for three dose schedules (triangles: infusions)", pad=16)
        handles, labels = sched_axes[0].get_legend_handles_labels()
        if mark:
            handles, labels = handles + [mark[0]], labels + [mark[1] + ", gamma"]
        sched_axes[0].legend(handles, labels, loc="upper right", bbox_to_anchor=(1.0, 0.8), fontsize=11)
        fig.suptitle("The plasticity window: dose kernel and learning rate")
    pop = cfg0.population
    A_txt = f"A = {pop.A.mean if A is None else A:g}"
    return attach_caption(
        fig,
        f"Left top: the plasticity kernel K added by one infusion — gamma (default, peak {pl.gamma_shape * pl.tau_k_hours:g} h "
        f"after the dose, shape {pl.gamma_shape:g}, τ_k = {pl.tau_k_hours:g} h) and the difference of exponentials "
        f"(τ_rise {pl.tau_rise_hours:g} h, τ_decay {pl.tau_decay_hours:g} h), the long-window alternative: the "
        f"window's length in humans is not known. Left bottom: the hours after an infusion — α is scaled by "
        f"(1 − dissociation): the plasma-like drug state ({pl.infusion_minutes:g}-min infusion, elimination "
        f"half-life {pl.half_life_hours:g} h) above its level at {pl.dissociation_gone_by_hours:g} h, so α is 0 at "
        f"the end of the infusion, while the patient is dissociated, and back by {pl.dissociation_gone_by_hours:g} h. The "
        f"kernel is still near 0 then anyway; the window opens later. Right: α(t) of the population-mean patient "
        f"(α0 = {1 / (1 + np.exp(-pop.logit_alpha0.mean)):.3f}, {A_txt} — a model parameter, not a measured "
        f"value) for each dose schedule, on a 10-minute grid (the simulation samples it once per step). Close "
        f"doses add up but saturate (g(k) = {pl.saturation:g} tanh(k/{pl.saturation:g})), so α never reaches 1. "
        f"Shaded: the plasticity window (gamma kernel drive ≥ {frac:.0%} of its peak).",
    )


# ----------------------------------------------------------------------------- timing heatmap


def _edges(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, np.float64)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2.0
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])


def timing_heatmap(
    grid: pd.DataFrame,
    *,
    config: Config | str | Path | None = None,
    frac: float = WINDOW_FRACTION,
) -> Figure:
    """Follow-up benefit of therapy over (therapy delay × ketamine boost A): the model's prediction.

    ``grid``: the table :func:`plasticity_rl.lessons.timing_grid` simulates (columns ``A_mean``,
    ``delay_days``, ``benefit``, ``n_patients``); ``config``: the sweep it was simulated from
    (default: ``grid.attrs["sweep_config"]``, else the bundled ``timing_sweep``).
    The figure only draws: it neither simulates nor fits.
    """
    cfg = as_config(config if config is not None else grid.attrs.get("sweep_config", "timing_sweep"))
    sweep = cfg.timing_sweep
    table = grid.pivot(index="A_mean", columns="delay_days", values="benefit").sort_index().sort_index(axis=1)
    delays, As, Z = table.columns.to_numpy(float), table.index.to_numpy(float), table.to_numpy()

    # plasticity drive of the sweep's infusion, in the heatmap's x coordinate (delay in days)
    origin = sweep.dose.day + sweep.therapy.hour / 24.0
    dose_t = sweep.dose.day + sweep.dose.hour / 24.0
    xs = np.linspace(delays.min() - 1.0, delays.max() + 1.0, 2000)
    _, g, _ = _alpha_fine(
        cfg, np.array([dose_t]), np.array([max(sweep.dose.amount, 1e-9)]), (xs + origin) * 24.0
    )
    g = g / g.max() if g.max() > 0 else g

    with house_style():
        fig, ax = _figure(
            (12.0, 8.0),
            mosaic=[["drive", "."], ["heat", "cbar"]],
            height_ratios=[1.0, 3.4],
            width_ratios=[1.0, 0.03],
        )
        d_ax, h_ax = ax["drive"], ax["heat"]
        vmax = float(np.nanmax(np.abs(Z))) or 1.0
        diverging = np.nanmin(Z) < -0.02 * vmax
        cmap = "PuOr_r" if diverging else "viridis"
        norm = (
            dict(vmin=-vmax, vmax=vmax) if diverging else dict(vmin=0.0, vmax=max(float(np.nanmax(Z)), 1e-9))
        )
        mesh = h_ax.pcolormesh(_edges(delays), _edges(As), Z, cmap=cmap, shading="flat", **norm)
        cb = fig.colorbar(mesh, cax=ax["cbar"])
        ax["cbar"].grid(False)
        cb.set_label(
            f"gain in V at day {grid.attrs.get('followup_day', cfg.followup_day)}\nover ketamine without therapy"
        )
        best = np.nanargmax(Z, axis=1)
        h_ax.plot(
            delays[best],
            As,
            ls="-",
            marker="*",
            ms=16,
            color="white",
            mec="k",
            mew=1.0,
            lw=1.4,
            label="best delay for this A",
        )
        h_ax.set_xlim(_edges(delays)[0], _edges(delays)[-1])
        h_ax.set_xticks(delays, [f"{d:g}" for d in delays])
        h_ax.set_yticks(As)
        h_ax.grid(False)
        h_ax.set_xlabel("therapy delay: first session, days after the infusion day")
        h_ax.set_ylabel("ketamine boost A (population mean)")
        h_ax.legend(loc="lower right", fontsize=11, frameon=True)
        h_ax.text(
            0.015,
            0.03,
            "MODEL PREDICTION, not a trial result:\nno trial has randomised therapy timing",
            transform=h_ax.transAxes,
            ha="left",
            va="bottom",
            fontsize=12,
            color="#D55E00",
            fontweight="bold",
            gid=NOTE_GID,
            bbox=NOTE_BOX,
        )

        d_ax.sharex(h_ax)
        mark = _shade_spans(d_ax, xs, g, frac)
        d_ax.fill_between(xs, 0, g, color="0.55", alpha=0.3, lw=0)
        d_ax.plot(xs, g, color="0.3", lw=1.6)
        d_ax.axvline(dose_t - origin, color="0.35", ls=":", lw=1.2)
        d_ax.set_ylim(0, 1.1)
        d_ax.set_yticks([0, 1])
        d_ax.set_ylabel("drive\n(of peak)")
        d_ax.tick_params(labelbottom=False)
        d_ax.set_title("Does therapy timing matter? It depends on the boost A")
        if mark:
            d_ax.legend([mark[0]], [mark[1]], loc="upper right", fontsize=11)
    n = int(grid["n_patients"].min())
    return attach_caption(
        fig,
        f"MODEL PREDICTION, not a trial result: no trial has randomised therapy timing after ketamine, and "
        f"the boost A has never been measured in humans. Each cell: mean belief V at the end of day "
        f"{grid.attrs.get('followup_day', cfg.followup_day)} for a block of {sweep.therapy.repeat} CBT session(s) "
        f"({sweep.therapy.n_c} corrective experiences each) starting x days after the infusion day, minus V "
        f"with the same infusion and no therapy, simulated with the population mean of A on the y axis "
        f"({n} simulated patients per arm and A; same random draws for every A). Stars: the best delay for "
        f"each A. Top: the plasticity drive of the infusion (fraction of peak) in the same x coordinate; "
        f"shaded: the window (drive ≥ {frac:.0%} of peak). With A = 0 the timing hardly matters; the larger "
        f"the boost, the more the benefit concentrates on therapy inside the window.",
    )


# ----------------------------------------------------------------------------- grid sweeps

SWEEP_LABELS = {
    "V_followup": "V at follow-up",
    "S_followup": "S at follow-up",
    "V_baseline": "V at the start",
}


def sweep_curves(table: pd.DataFrame, params: list[str], outcome: str = "V_followup") -> Figure:
    """A grid sweep's outcome per arm against the first swept parameter (one panel per arm).

    ``table``: :func:`plasticity_rl.sweep.run_sweep`'s rows; ``params``: the swept parameters in
    grid order. A second parameter draws one line per value (the others are averaged over, and
    the caption says so). The figure only draws: it neither simulates nor fits.
    """
    from plasticity_rl.params import PARAMS

    if outcome not in SWEEP_LABELS:
        raise ValueError(f"outcome {outcome!r}; allowed: {', '.join(SWEEP_LABELS)}")
    x, hue = params[0], (params[1] if len(params) > 1 else None)
    arms = list(dict.fromkeys(table["arm"]))
    ncols = min(len(arms), 3)
    nrows = -(-len(arms) // ncols)
    xlabel = PARAMS[x].label if x in PARAMS else x
    with house_style():
        fig, axes = new_figure(
            nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows + 0.6), sharex=True, sharey=True
        )
        hues = sorted(table[hue].unique()) if hue else [None]
        for ax, arm in zip(axes.flat, arms):
            rows = table[table["arm"] == arm]
            for j, h in enumerate(hues):
                sub = rows if h is None else rows[rows[hue] == h]
                line = sub.groupby(x)[outcome].mean().sort_index()
                unit = f" {PARAMS[hue].unit}" if hue in PARAMS and PARAMS[hue].unit else ""
                label = None if h is None else f"{PARAMS[hue].symbol if hue in PARAMS else hue} = {h:g}{unit}"
                ax.plot(
                    line.index,
                    line.to_numpy(),
                    marker="o",
                    color=OKABE_ITO[(j + 2) % len(OKABE_ITO)],
                    label=label,
                )
            ax.set_title(arm)
        for ax in axes[-1, :]:
            ax.set_xlabel(xlabel)
        for ax in axes[:, 0]:
            ax.set_ylabel(SWEEP_LABELS[outcome] + " (belief)")
        for k in range(len(arms), nrows * ncols):  # an empty panel: the one above it gets the x axis
            axes.flat[k].set_visible(False)
            above = axes.flat[k - ncols]
            above.set_xlabel(xlabel)
            above.tick_params(labelbottom=True)
        if hue:
            axes.flat[0].legend(loc="best", fontsize="small")
    rest = [p for p in params[2:]]
    day = int(table["followup_day"].iloc[0]) if "followup_day" in table else None
    return attach_caption(
        fig,
        f"Grid sweep (simulated; a model prediction, not a trial result): each arm's mean "
        f"{SWEEP_LABELS[outcome]}{f' (day {day})' if day else ''} against {xlabel}"
        + (f", one line per value of {hue}" if hue else "")
        + (f"; averaged over {', '.join(rest)}" if rest else "")
        + ". Every point keeps the config's seed (common random numbers), so differences between "
        "points come from the parameters, not the draws.",
    )
