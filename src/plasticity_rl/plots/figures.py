"""The teaching figures, one function per figure.

Each takes a :class:`plasticity_rl.simulate.Simulation` and returns a matplotlib Figure with a
caption attached (read it with :func:`plasticity_rl.plots.caption_of`). Time is in days from
the start of the experiment; every time-course figure shades the plasticity window with
:func:`plasticity_rl.plots.style.shade_window`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from plasticity_rl.config import sweep_arm_name
from plasticity_rl.plots.style import (
    NOTE_GID,
    WINDOW_FRACTION,
    arm_labels,
    arm_names,
    attach_caption,
    caption_of,
    house_style,
    new_figure,
    reserve_session_zone,
    select_arms,
    shade_window,
    sim_arm_colors,
    title,
)

if TYPE_CHECKING:
    from plasticity_rl.simulate import Simulation

ALPHA_LABEL = "learning rate α (per experience)"
BELIEF_LABEL = "belief (probability an experience goes well)"
DAYS_LABEL = "time (days)"
SCORE_LABEL = "MADRS-like score (points, 0–60; lower = better)"
BAND = (25, 75)  # percentiles of the band across patients in belief_curves
Z95 = 1.959964


def _initial_beliefs(sim: Simulation) -> tuple[np.ndarray, np.ndarray]:
    init = jax.vmap(sim.model.initial)({k: np.asarray(v) for k, v in sim.params.items()})
    return np.asarray(init.V, np.float64), np.asarray(init.S, np.float64)


def _belief_series(sim: Simulation, which: str) -> tuple[np.ndarray, np.ndarray]:
    """Times (days) and (N, T + 1) beliefs: the initial value at 0, then after each step."""
    V0, S0 = _initial_beliefs(sim)
    x = getattr(sim.trajectory, which).astype(np.float64)
    x0 = V0 if which == "V" else S0
    spd = sim.schedules.steps_per_day
    t = np.arange(x.shape[1] + 1) / spd
    return t, np.concatenate([x0[:, None], x], axis=1)


def _mean_ci(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and half-width of a normal 95% interval of the mean (NaN ignored)."""
    n = np.sum(~np.isnan(values), axis=axis)
    mean = np.nanmean(values, axis=axis)
    sd = np.nanstd(values, axis=axis, ddof=1) if values.shape[axis] > 1 else np.zeros_like(mean)
    return mean, Z95 * np.nan_to_num(sd) / np.sqrt(np.maximum(n, 1))


def _legend(ax, handles, labels, **kw):
    kw = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0, **kw}
    return ax.legend(handles, labels, **kw)


def _arm_handles(ax_lines: dict[str, object], sim: Simulation) -> tuple[list, list]:
    labels = arm_labels(sim)
    return list(ax_lines.values()), [labels[n] for n in ax_lines]


def _n_text(sim: Simulation, idx: list[int]) -> str:
    counts = np.bincount(sim.arm_index, minlength=len(arm_names(sim)))[idx]
    if np.all(counts == counts[0]):
        return f"{counts[0]} simulated patients per arm"
    return f"{counts.min()}–{counts.max()} simulated patients per arm"


# ----------------------------------------------------------------------------- alpha


def _zoom_range(sim: Simulation, idx: list[int], before: float = 1.0, after: float = 5.0):
    """(lo, hi) days around the first active dose of the plotted arms, or None without one."""
    sch = sim.schedules
    h = sch.dose_hours[idx][sch.dose_amounts[idx] > 0]
    if h.size == 0:
        return None
    t0 = float(h.min()) / 24.0
    return max(t0 - before, 0.0), min(t0 + after, float(sim.config.experiment.days))


def _stacked_widths(n: int, thin: float = 1.6, thick: float = 5.0) -> list[float]:
    """Line widths from thick to thin, so arms whose curves coincide all stay visible."""
    if n == 1:
        return [2.4]
    return list(np.linspace(thick, thin, n))


def _finish_whole_and_zoom(
    fig, axes, zoom: bool, lines: dict, marks: list, sim: Simulation, suptitle: str
) -> None:
    """Shared tail of the whole-experiment + zoom figures: titles, and one legend (arms, then marks)."""
    fig.suptitle(suptitle)
    if zoom:
        title(axes[0, 0], "whole experiment")
        title(axes[0, 1], "zoom: days around the first infusion")
        axes[0, 1].tick_params(labelleft=False)
    h, lab = _arm_handles(lines, sim)
    _legend(axes[0, -1], h + [m[0] for m in marks], lab + [m[1] for m in marks])


def alpha_curves(
    sim: Simulation, *, arms: Sequence[str] | None = None, frac: float = WINDOW_FRACTION
) -> Figure:
    """Mean learning rate alpha(t) per arm, the window shaded, doses and sessions marked.

    Left: the whole experiment; right (when an arm has a ketamine dose): a zoom on the days
    around the first infusion, where the window is wide enough to see.
    """
    idx = select_arms(sim, arms)
    names, colors = arm_names(sim), sim_arm_colors(sim)
    alpha = np.asarray(sim.trajectory.alpha, np.float64)
    t = np.asarray(sim.schedules.t_hours) / 24.0
    zoom = _zoom_range(sim, idx)
    widths = _stacked_widths(len(idx))
    with house_style():
        if zoom:
            fig, axes = new_figure(1, 2, sharey=True, width_ratios=[2.0, 1.0])
        else:
            fig, axes = new_figure()
        lines = {}
        axes[0, 0].set_xlim(0, sim.config.experiment.days)
        if zoom:
            axes[0, 1].set_xlim(*zoom)
        for ax in axes[0]:
            marks = shade_window(ax, sim, arms=[names[i] for i in idx], frac=frac)
            for k, i in enumerate(idx):
                m = alpha[sim.arm_index == i].mean(axis=0)
                (lines[names[i]],) = ax.plot(
                    t, m, color=colors[names[i]], lw=widths[k], drawstyle="steps-post"
                )
            ax.set_xlabel(DAYS_LABEL)
        top = float(max(ln.get_ydata().max() for ln in lines.values()))
        axes[0, 0].set_ylim(0, 1.08 * top)
        reserve_session_zone(axes[0, 0], floor=0.0)  # y is shared: once
        axes[0, 0].set_ylabel(ALPHA_LABEL + (" (α⁺ for good news)" if sim.model.asymmetric else ""))
        _finish_whole_and_zoom(
            fig, axes, zoom, lines, marks, sim, "Ketamine opens a short window of raised plasticity"
        )
    step_h = 24.0 / sim.schedules.steps_per_day
    return attach_caption(
        fig,
        f"Learning rate α per arm (mean over patients; {_n_text(sim, idx)}), one value per {step_h:g} h step"
        f"{'; right: zoom on the days around the first infusion' if zoom else ''}. Shaded: the plasticity "
        f"window, where the dose kernel's drive g(k) is at least {frac:.0%} of its peak. Triangles above "
        f"the axes and dotted lines: ketamine infusions; ticks at the bottom: therapy sessions. Lines are "
        f"drawn from thick to thin so arms with the same dose schedule stay visible. α drops to 0 for about "
        f"2 h after each infusion (no learning while dissociated). The size of the boost A is not measured "
        f"in humans: it is a model parameter, swept and fitted, not a known value.",
    )


def good_and_bad_news(sim: Simulation, *, arm: str | None = None, frac: float = WINDOW_FRACTION) -> Figure:
    """Asymmetric variants: the learning rates for good news (α⁺) and bad news (α⁻) of one
    ketamine arm, and their ratio for every arm, around the first infusion.

    ``arm``: the arm on the left (default: the first arm with a ketamine dose).
    """
    if not sim.model.asymmetric or sim.trajectory.alpha_neg is None:
        raise ValueError(f"good_and_bad_news needs an asymmetric variant; {sim.model.name!r} has one α")
    names, colors = arm_names(sim), sim_arm_colors(sim)
    dosed = [i for i in range(len(names)) if (sim.schedules.dose_amounts[i] > 0).any()]
    if arm is None and not dosed:
        raise ValueError(f"good_and_bad_news needs an arm with a ketamine dose; arms: {names}")
    if arm is not None and arm not in names:
        raise ValueError(f"unknown arm {arm!r}; this simulation has {names}")
    k = names.index(arm) if arm is not None else dosed[0]
    pos = np.asarray(sim.trajectory.alpha, np.float64)
    neg = np.asarray(sim.trajectory.alpha_neg, np.float64)
    t = np.asarray(sim.schedules.t_hours) / 24.0
    zoom = _zoom_range(sim, [k], before=2.0, after=7.0) or (0.0, float(sim.config.experiment.days))
    rows = sim.arm_index == k
    with house_style():
        fig, axes = new_figure(1, 2)
        left, right = axes[0]
        for ax in (left, right):
            ax.set_xlim(*zoom)
            ax.set_xlabel(DAYS_LABEL)
        marks = shade_window(left, sim, arms=[names[k]], frac=frac)
        shade_window(right, sim, arms=[names[k]], frac=frac)
        c = colors[names[k]]
        (h_pos,) = left.plot(t, pos[rows].mean(axis=0), color=c, lw=2.6, drawstyle="steps-post")
        (h_neg,) = left.plot(t, neg[rows].mean(axis=0), color=c, lw=2.0, ls="--", drawstyle="steps-post")
        left.set_ylim(0, None)
        left.set_ylabel(ALPHA_LABEL)
        title(left, f"{arm_labels(sim)[names[k]]}: good and bad news")
        lines = {}
        widths = _stacked_widths(len(names))
        for j, i in enumerate(range(len(names))):
            m = sim.arm_index == i
            ratio = pos[m].mean(axis=0) / neg[m].mean(axis=0)
            (lines[names[i]],) = right.plot(
                t, ratio, color=colors[names[i]], lw=widths[j], drawstyle="steps-post", label=names[i]
            )
        right.axhline(1.0, color="0.35", lw=1.2, ls=":")
        right.set_ylim(0, None)
        right.set_ylabel("α⁺ / α⁻ (above 1: good news wins)")
        title(right, "the balance of good and bad news, every arm")
        h, lab = _arm_handles(lines, sim)
        _legend(
            right,
            [h_pos, h_neg, *h, *(m[0] for m in marks)],
            ["α⁺ (good news)", "α⁻ (bad news)", *lab, *(m[1] for m in marks)],
        )
        fig.suptitle("Ketamine rebalances learning from good and bad news")
    base = float(pos[rows][:, 0].mean() / neg[rows][:, 0].mean())
    peak = float((pos[rows].mean(axis=0) / neg[rows].mean(axis=0)).max())
    return attach_caption(
        fig,
        f"{sim.model.name}: separate learning rates for experiences that went better than expected "
        f"(α⁺, solid) and worse (α⁻, dashed), mean over the {int(rows.sum())} patients of "
        f"{arm_labels(sim)[names[k]]!r} (left), and their ratio in every arm (right; dotted: equal rates). Before the "
        f"infusion bad news is learned faster (α⁺/α⁻ = {base:.2f}), as measured in depression; in the "
        f"window ketamine raises α⁺ more than α⁻ and the ratio peaks at {peak:.1f} in {arm_labels(sim)[names[k]]!r}. Shaded: the plasticity "
        f'window. "Ketamine raises α" elsewhere in this package is the teaching simplification of this '
        f"rebalancing; the boosts A⁺ and A⁻ are model parameters, not measured values.",
    )


# ----------------------------------------------------------------------------- beliefs


def belief_curves(
    sim: Simulation,
    *,
    beliefs: Sequence[str] = ("V", "S"),
    arms: Sequence[str] | None = None,
    band: tuple[float, float] = BAND,
    frac: float = WINDOW_FRACTION,
) -> Figure:
    """V (day-to-day expectation) and S (core belief) per arm: mean line, percentile band."""
    beliefs = [b for b in beliefs if b in ("V", "S")]
    if not beliefs:
        raise ValueError("beliefs must name 'V' and/or 'S'")
    if not sim.model.has_schema:
        beliefs = [b for b in beliefs if b == "V"] or ["V"]
    idx = select_arms(sim, arms)
    names, colors = arm_names(sim), sim_arm_colors(sim)
    many = len(idx) > 8
    titles = {"V": "V: day-to-day expectation (mood)", "S": "S: core belief (schema)"}
    with house_style():
        fig, axes = new_figure(1, len(beliefs), sharey=True)
        lines = {}
        marks = []
        for ax, which in zip(axes[0], beliefs):
            ax.set_xlim(0, sim.config.experiment.days)
            marks = shade_window(ax, sim, arms=[names[i] for i in idx], frac=frac)
            t, x = _belief_series(sim, which)
            for i in idx:
                xi = x[sim.arm_index == i]
                c = colors[names[i]]
                if not many:
                    lo, hi = np.percentile(xi, band, axis=0)
                    ax.fill_between(t, lo, hi, color=c, alpha=0.15, lw=0)
                (lines[names[i]],) = ax.plot(t, xi.mean(axis=0), color=c)
            ax.set_xlim(0, sim.config.experiment.days)
            ax.set_xlabel(DAYS_LABEL)
            title(ax, titles[which])
        axes[0, 0].set_ylabel(BELIEF_LABEL)
        axes[0, 0].margins(y=0.05)
        axes[0, 0].autoscale_view()
        reserve_session_zone(axes[0, 0])
        h, lab = _arm_handles(lines, sim)
        _legend(axes[0, -1], h + [m[0] for m in marks], lab + [m[1] for m in marks])
    band_txt = "" if many else f" Bands: {band[0]:g}th–{band[1]:g}th percentile across patients."
    return attach_caption(
        fig,
        f"Beliefs per arm: lines are the mean over patients ({_n_text(sim, idx)}).{band_txt} "
        "V is the day-to-day expectation that an experience goes well (mood follows it); S is the "
        "slow core belief (schema) that V relaxes toward. Shaded: the plasticity window. A gain in V "
        "that never reaches S fades within one to two weeks; corrective experiences delivered while "
        "the window is open move S, so the gain lasts. Simulated data from the model, not a trial.",
    )


# ----------------------------------------------------------------------------- timing curve


def followup_step(sim: Simulation) -> int:
    return int(min(max(sim.config.followup_step, 0), sim.trajectory.V.shape[1] - 1))


def timing_curve(sim: Simulation, *, frac: float = WINDOW_FRACTION) -> Figure:
    """Follow-up V against the delay of therapy after the infusion (a timing_sweep config)."""
    cfg = sim.config
    sweep = cfg.timing_sweep
    if sweep is None:
        raise ValueError(
            f"timing_curve needs a config with a 'timing_sweep' section; {cfg.experiment.name!r} has none "
            "(see configs/timing_sweep.yaml)"
        )
    names = arm_names(sim)
    step = followup_step(sim)
    V = np.asarray(sim.trajectory.V, np.float64)[:, step]
    delays = np.asarray(sweep.delays_days, np.float64)
    means, halfs = [], []
    for d in delays:
        i = names.index(sweep_arm_name(d))
        m, h = _mean_ci(V[sim.arm_index == i])
        means.append(float(m)), halfs.append(float(h))
    means, halfs = np.asarray(means), np.asarray(halfs)
    order = np.argsort(delays)

    # x = day offset of the first session from the infusion day; x = 0 is the therapy hour on
    # the infusion day, so absolute time t maps to t - origin.
    origin = sweep.dose.day + sweep.therapy.hour / 24.0
    sch = sim.schedules
    ref = names.index(sweep_arm_name(delays[0]))
    g = np.asarray(sim.inputs.g_k, np.float64)[ref]
    g = g / g.max() if g.max() > 0 else g
    t_rel = sch.t_hours / 24.0 - origin
    lo_x, hi_x = delays.min() - 1.0, delays.max() + 1.0
    keep = (t_rel >= lo_x) & (t_rel <= hi_x)

    # plasticity the block of sessions actually meets: mean normalised drive at its sessions
    gmax = np.asarray(sim.inputs.g_k, np.float64).max()
    block = []
    for d in delays[order]:
        i = names.index(sweep_arm_name(d))
        at = sch.session_n[i] > 0
        block.append(float(np.asarray(sim.inputs.g_k)[i][at].mean() / gmax) if at.any() and gmax > 0 else 0.0)

    with house_style():
        fig, axes = new_figure(2, 1, figsize=(10.0, 8.0), sharex=True, height_ratios=[2.6, 1.0])
        ax, kax = axes[0, 0], axes[1, 0]
        kax.set_xlim(lo_x, hi_x)
        marks = shade_window(ax, sim, frac=frac, origin=origin, sessions=False)
        shade_window(kax, sim, frac=frac, origin=origin, sessions=False, doses=False)
        handles, labels = [], []
        color = "#0072B2"
        ax.fill_between(
            delays[order], (means - halfs)[order], (means + halfs)[order], color=color, alpha=0.2, lw=0
        )
        eb = ax.errorbar(
            delays[order], means[order], yerr=halfs[order], color=color, marker="o", ms=8, capsize=4, lw=2.4
        )
        (
            handles.append(eb),
            labels.append(f"ketamine + {sweep.therapy.repeat} CBT session(s), mean and 95% CI"),
        )
        if sweep.include_no_therapy and "no_therapy" in names:
            m, h = _mean_ci(V[sim.arm_index == names.index("no_therapy")])
            ref_line = ax.axhline(float(m), color="k", ls="--", lw=1.8)
            ax.axhspan(float(m - h), float(m + h), color="k", alpha=0.08, lw=0)
            handles.append(ref_line), labels.append("ketamine, no therapy (reference)")
        ax.margins(y=0.12)
        ax.set_ylabel(f"belief V at follow-up\n(end of day {cfg.followup_day})")
        title(ax, "When should therapy start after ketamine?")
        ax.text(
            0.985,
            0.96,
            "MODEL PREDICTION, not a trial result:\nno trial has randomised therapy timing",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=12,
            color="#D55E00",
            fontweight="bold",
            gid=NOTE_GID,
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#D55E00", "alpha": 0.95},
        )
        ax.legend(
            handles + [m[0] for m in marks], labels + [m[1] for m in marks], loc="center right", fontsize=11
        )

        kax.fill_between(t_rel[keep], 0, g[keep], color="0.55", alpha=0.25, lw=0, step="post")
        (k_line,) = kax.plot(t_rel[keep], g[keep], color="0.3", lw=1.6, drawstyle="steps-post")
        (b_line,) = kax.plot(delays[order], block, color="#0072B2", lw=1.6, ls="--", marker="s", ms=5)
        kax.set_ylim(0, 1.08)
        kax.set_yticks([0, 0.5, 1.0])
        kax.set_ylabel("plasticity drive\n(fraction of peak)")
        kax.set_xlim(lo_x, hi_x)
        kax.set_xlabel("therapy delay: first session, days after the infusion day")
        kax.legend(
            [k_line, b_line],
            ["kernel drive g(k) at the first session", "mean drive over the block's sessions"],
            loc="upper right",
            fontsize=11,
        )
    n_sess = sweep.therapy.repeat
    return attach_caption(
        fig,
        f"The therapy-timing curve (model prediction, not a trial result: no trial has randomised "
        f"therapy timing after ketamine). One infusion on day {sweep.dose.day} at {sweep.dose.hour:g}:00; "
        f"a block of {n_sess} CBT session(s), {sweep.therapy.n_c} corrective experiences each, starting "
        f"x days after the infusion day at {sweep.therapy.hour:g}:00. Points: mean belief V at the end of "
        f"day {cfg.followup_day} with a 95% confidence interval of the mean ({_n_text(sim, [ref])}); dashed "
        f"black line: ketamine without therapy. Grey (right axis): the plasticity drive g(k) at the time of "
        f"the first session, and (dashed) its mean over the block's sessions (lower panel); shaded: the window where "
        f"the drive is at least {frac:.0%} of its peak. The benefit is largest when the block of sessions "
        f"overlaps the window and falls off as it closes.",
    )


# ----------------------------------------------------------------------------- clinician


def clinician_scores(
    sim: Simulation,
    *,
    arms: Sequence[str] | None = None,
    visits: pd.DataFrame | None = None,
    frac: float = WINDOW_FRACTION,
) -> Figure:
    """Mean clinician (MADRS-like) score per arm at each visit, with 95% CI error bars.

    ``visits`` defaults to ``plasticity_rl.data.visits_table(sim)`` (columns arm, day, score).
    When at least three visits fall in the days around the first infusion, a right panel zooms
    on them (the rapid, hours-scale response).
    """
    from plasticity_rl.data import visits_table

    if visits is None:
        if not (sim.config.observations.visits.enabled and sim.visits.shape[1]):
            raise ValueError(
                f"config {sim.config.experiment.name!r} has no clinician visits (observations.visits)"
            )
        visits = visits_table(sim)
    idx = select_arms(sim, arms)
    names, colors = arm_names(sim), sim_arm_colors(sim)
    days = sim.config.experiment.days
    zoom = _zoom_range(sim, idx, before=1.0, after=4.0)
    if zoom and np.sum((visits["day"].unique() >= zoom[0]) & (visits["day"].unique() <= zoom[1])) < 3:
        zoom = None
    stats = {}
    for i in idx:
        d = visits[(visits["arm"] == names[i]) & visits["score"].notna()]
        grouped = d.groupby("day")["score"]
        half = Z95 * grouped.std(ddof=1).fillna(0.0) / np.sqrt(grouped.count())
        stats[i] = (grouped.mean().index.to_numpy(np.float64), grouped.mean().to_numpy(), half.to_numpy())
    with house_style():
        if zoom:
            fig, axes = new_figure(1, 2, sharey=True, width_ratios=[2.0, 1.0])
        else:
            fig, axes = new_figure()
        lines = {}
        axes[0, 0].set_xlim(-0.5, days + 0.5)
        if zoom:
            axes[0, 1].set_xlim(*zoom)
        for p, ax in enumerate(axes[0]):
            marks = shade_window(ax, sim, arms=[names[i] for i in idx], frac=frac)
            span = days if p == 0 else zoom[1] - zoom[0]
            dodge = 0.006 * span
            for k, i in enumerate(idx):
                x, mean, half = stats[i]
                x = x + (k - (len(idx) - 1) / 2) * dodge
                lines[names[i]] = ax.errorbar(
                    x,
                    mean,
                    yerr=half,
                    color=colors[names[i]],
                    marker="o",
                    ms=6,
                    capsize=3,
                    lw=2.0,
                    elinewidth=1.4,
                )
            ax.set_xlabel(DAYS_LABEL)
        axes[0, 0].set_ylim(0, None)
        reserve_session_zone(axes[0, 0], floor=0.0)  # y is shared: once
        axes[0, 0].set_ylabel(SCORE_LABEL)
        _finish_whole_and_zoom(fig, axes, zoom, lines, marks, sim, "What a clinician would measure")
    return attach_caption(
        fig,
        f"Mean simulated clinician score (MADRS-like, 0–60, lower is better) per arm at each visit, with "
        f"95% confidence intervals of the mean ({_n_text(sim, idx)}; arms slightly offset in time so the "
        f"bars do not overlap{'; right: zoom on the visits around the first infusion' if zoom else ''}). "
        f"The score is m_max (1 − V) minus the acute drug-state lift D(t) (within hours, needs no window) "
        f"and the non-specific response to any infusion E(t) (placebo too), plus visit noise. Shaded: "
        f"the plasticity window.",
    )


# ----------------------------------------------------------------------------- all of them


FIGURES: dict[str, Callable[[Simulation], Figure]] = {
    "alpha_curves": alpha_curves,
    "good_and_bad_news": good_and_bad_news,
    "belief_curves": belief_curves,
    "clinician_scores": clinician_scores,
    "timing_curve": timing_curve,
}


def applicable_figures(sim: Simulation) -> list[str]:
    """Names of the figures that apply to this simulation, in :data:`FIGURES` order."""
    cfg = sim.config
    out = ["alpha_curves"]
    if sim.model.asymmetric and (sim.schedules.dose_amounts > 0).any():
        out.append("good_and_bad_news")
    out.append("belief_curves")
    if cfg.observations.visits.enabled and sim.visits.shape[1]:
        out.append("clinician_scores")
    if cfg.timing_sweep is not None:
        out.append("timing_curve")
    return out


def save_figure(
    fig: Figure, out_dir: str | Path, name: str, formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """Save ``fig`` as ``out_dir/name.<fmt>`` for each format (reproducible metadata)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{name}.{fmt}"
        meta = {"Date": None} if fmt == "svg" else ({"Software": None} if fmt == "png" else {})
        with house_style():
            fig.savefig(path, format=fmt, metadata=meta)
        paths.append(path)
    return paths


def render_figures(
    sim: Simulation, out_dir: str | Path, formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """Save every figure that applies to ``sim`` as ``out_dir/NAME.<fmt>``; return the paths.

    Also writes ``out_dir/captions.md`` (one section per figure with its caption); that file is
    not in the returned list. Figures are released once saved.
    """
    out_dir = Path(out_dir)
    paths: list[Path] = []
    captions = []
    for name in applicable_figures(sim):
        fig = FIGURES[name](sim)
        paths += save_figure(fig, out_dir, name, formats)
        captions.append(f"## {name}\n\n{caption_of(fig)}\n")
        fig.clear()
        del fig
    (out_dir / "captions.md").write_text(
        f"# Figures of {sim.config.experiment.name}\n\n" + "\n".join(captions)
    )
    return paths
