"""Figures of fit results: one function per figure, from the tidy tables of a fit.

Every function takes the pandas table that :mod:`plasticity_rl.analysis` (or the recovery / SBC
code, or :func:`arviz.compare`) produces and returns a :class:`matplotlib.figure.Figure` in the
house style of :mod:`plasticity_rl.plots.style`, with a caption attached (read it with
:func:`plasticity_rl.plots.caption_of`). No fitting, no JAX: the figures only draw tables.

- :func:`posterior_belief_curves`: each arm's population-mean V(t) and S(t), posterior mean and
  94% HDI (``analysis.arm_curves``), the plasticity window shaded;
- :func:`contrast_forest`: differences between arms at chosen days (``analysis.belief_contrasts``);
- :func:`window_posterior`: the fitted learning rate α(t) per arm (``analysis.window_curve``);
- :func:`posterior_predictive_check`: each arm's observed mean ratings against the fit's replicated
  data (``analysis.ppc_arm_means``).

The figures that say whether to trust a fit (recovery, SBC, LOO) are in :mod:`plasticity_rl.plots.trust`.

A fit that failed its diagnostics must say so on every figure drawn from it: pass ``title_note``
(e.g. ``"FIT FAILED DIAGNOSTICS: R-hat 1.05"``); it is printed in red, bold, on the line above
the figure title (an annotation with gid :data:`TITLE_NOTE_GID`; :func:`figure_title` reads the
title and the note back).
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from plasticity_rl.plots._panels import (
    _arms_in_order,
    _flag_caption,
    _fmt_p,
    _label,
    _require,
    _suptitle,
)
from plasticity_rl.plots.figures import ALPHA_LABEL, BELIEF_LABEL, DAYS_LABEL, _legend
from plasticity_rl.plots.style import (
    FIGSIZE,
    FIGSIZE_WIDE,
    SEQUENTIAL_CMAP,
    arm_colors,
    attach_caption,
    house_style,
    new_figure,
    shade_spans,
    title,
)

BAND_ALPHA = 0.18
BELIEF_TITLES = {"V": "V: day-to-day expectation (mood)", "S": "S: core belief (schema)"}
ZOOM_FACTOR = 1.5  # window_posterior zooms on days where alpha > ZOOM_FACTOR x the arm's resting level
ZOOM_PAD_DAYS = 2.0
STRIPE = 3.0  # dash length (x line width) of the striped line shared by arms with the same alpha(t)
WINDOW_LW = 3.0
SHARED_BAND_COLOR = "0.45"


# ----------------------------------------------------------------------------- 1. belief curves


def posterior_belief_curves(
    curves: pd.DataFrame,
    arm_labels: Mapping[str, str] | None = None,
    window: Sequence[tuple[float, float]] | None = None,
    *,
    title_note: str | None = None,
    observed: pd.DataFrame | None = None,
) -> Figure:
    """Each arm's population-mean V(t) and S(t): posterior mean line, 94% HDI band.

    ``curves``: columns belief ('V' / 'S'), arm, day, mean, hdi_low, hdi_high (as
    ``analysis.arm_curves``). ``arm_labels``: arm -> legend label. ``window``: (start, end)
    days of the plasticity window, shaded as :func:`plasticity_rl.plots.shade_window` does.
    ``observed``: the data on V's panel, each arm's mean EMA rating per day (columns arm, day,
    observed: the ``ema`` rows of ``analysis.ppc_arm_means``); a rating's expectation is V.
    """
    _require(curves, ["belief", "arm", "day", "mean", "hdi_low", "hdi_high"], "posterior_belief_curves")
    beliefs = [b for b in ("V", "S") if (curves["belief"] == b).any()]
    if not beliefs:
        raise ValueError("posterior_belief_curves: column 'belief' has neither 'V' nor 'S'")
    arms = _arms_in_order(curves["arm"])
    colors = arm_colors(arms)
    lo_day, hi_day = float(curves["day"].min()), float(curves["day"].max())
    with house_style():
        fig, axes = new_figure(1, len(beliefs), sharey=True)
        lines: dict[str, object] = {}
        marks: list = []
        for ax, which in zip(axes[0], beliefs):
            ax.set_xlim(lo_day, hi_day)
            marks = shade_spans(ax, window or [], label="plasticity window")
            sub = curves[curves["belief"] == which]
            per_arm = {a: sub[sub["arm"].astype(str) == a].sort_values("day") for a in arms}
            per_arm = {a: d for a, d in per_arm.items() if not d.empty}
            for arm, d in per_arm.items():  # every band first, so no band hides another arm's line
                ax.fill_between(
                    d["day"], d["hdi_low"], d["hdi_high"], color=colors[arm], alpha=BAND_ALPHA, lw=0
                )
            for arm, d in per_arm.items():
                (lines[arm],) = ax.plot(d["day"], d["mean"], color=colors[arm])
            if which == "V" and observed is not None and not observed.empty:
                for arm in per_arm:
                    o = observed[observed["arm"].astype(str) == arm]
                    ax.plot(o["day"], o["observed"], "o", color=colors[arm], ms=3.5, alpha=0.75, mew=0)
            ax.set_xlabel(DAYS_LABEL)
            title(ax, BELIEF_TITLES[which])
        axes[0, 0].set_ylabel(BELIEF_LABEL)
        axes[0, 0].margins(y=0.05)
        band = Patch(color="0.4", alpha=BAND_ALPHA + 0.1, lw=0)
        dots = (
            []
            if observed is None or observed.empty
            else [Line2D([], [], ls="none", marker="o", ms=5, color="0.3")]
        )
        _legend(
            axes[0, -1],
            list(lines.values()) + [band] + dots + [m[0] for m in marks],
            [_label(arm_labels, a) for a in lines]
            + ["94% HDI (band)"]
            + ["observed: arm's mean EMA rating (dots)"] * len(dots)
            + [m[1] for m in marks],
        )
        _suptitle(fig, "Fitted beliefs per arm (posterior mean, 94% HDI)", title_note)
    win_txt = (
        " Shaded: the plasticity window (" + ", ".join(f"days {a:g}–{b:g}" for a, b in window) + ")."
        if window
        else ""
    )
    return attach_caption(
        fig,
        f"Posterior of each arm's population-mean belief over time: lines are posterior means, bands the "
        f"94% highest-density intervals (HDI), for V, the day-to-day expectation that an experience goes "
        f"well (left), and S, the slow core belief (schema) V relaxes toward"
        f"{' (right)' if len(beliefs) > 1 else ''}.{win_txt} Estimated from the fitted model, so the "
        f"bands carry the uncertainty of the fit, not the spread between patients."
        + (
            " Dots: the data, each arm's mean daily EMA rating (a rating's expectation is V at the end "
            "of its day), over the patients who rated that day."
            if observed is not None and not observed.empty
            else ""
        )
        + _flag_caption(title_note),
    )


PPC_LABELS = {
    "ema": "mean EMA rating\n(0–1; higher = better)",
    "visits": "clinician score\n(MADRS-like points)",
}
WARN_DOT = "#D55E00"  # Okabe-Ito vermillion: an observed mean outside its band


def posterior_predictive_check(
    ppc: pd.DataFrame,
    arm_labels: Mapping[str, str] | None = None,
    window: Sequence[tuple[float, float]] | None = None,
    *,
    title_note: str | None = None,
) -> Figure:
    """Observed arm means (dots) against the same means of the fit's replicated data (bands).

    ``ppc``: as ``analysis.ppc_arm_means`` (channel, arm, day, n, observed, replicated_mean,
    replicated_low, replicated_high). One panel per channel recorded.
    """
    _require(
        ppc,
        ["channel", "arm", "day", "observed", "replicated_low", "replicated_high"],
        "posterior_predictive_check",
    )
    channels = [c for c in ("ema", "visits") if (ppc["channel"] == c).any()]
    if not channels:
        raise ValueError(
            "posterior_predictive_check: no ratings to check (column 'channel' has neither ema nor visits)"
        )
    arms = _arms_in_order(ppc["arm"])
    colors = arm_colors(arms)
    inside = (ppc["observed"] >= ppc["replicated_low"]) & (ppc["observed"] <= ppc["replicated_high"])
    size = (max(7.0, 3.1 * len(arms) + 1.2), 3.3 * len(channels) + 1.6)
    with house_style():
        # One panel per arm and channel: overlaid, five arms' bands hide one another.
        fig, axes = new_figure(len(channels), len(arms), figsize=size, sharex=True, sharey="row")
        marks: list = []
        for row, channel in enumerate(channels):
            sub = ppc[ppc["channel"] == channel]
            daily = sub.groupby("arm")["day"].nunique().max() > 12  # daily: a band; a few visits: bars
            for col, arm in enumerate(arms):
                ax = axes[row, col]
                marks = shade_spans(ax, window or [], label="plasticity window")
                d = sub[sub["arm"].astype(str) == arm].sort_values("day")
                c = colors[arm]
                if daily:
                    ax.fill_between(
                        d["day"], d["replicated_low"], d["replicated_high"], color=c, alpha=0.3, lw=0
                    )
                else:
                    err = np.vstack(
                        [
                            d["replicated_mean"] - d["replicated_low"],
                            d["replicated_high"] - d["replicated_mean"],
                        ]
                    )
                    ax.errorbar(d["day"], d["replicated_mean"], yerr=err, color=c, lw=7, alpha=0.3, ls="none")
                out = ~inside[d.index]
                ax.plot(d["day"][~out], d["observed"][~out], "o", color="black", ms=4 if daily else 6)
                ax.plot(
                    d["day"][out],
                    d["observed"][out],
                    "o",
                    color=WARN_DOT,
                    mfc="white",
                    mew=1.8,
                    ms=5 if daily else 7,
                )
                if row == 0:
                    title(ax, textwrap.fill(_label(arm_labels, arm), 22))  # five columns: wrap long labels
                if row == len(channels) - 1:
                    ax.set_xlabel(DAYS_LABEL)
            n_in, n_all = int(inside[sub.index].sum()), len(sub)
            axes[row, 0].set_ylabel(f"{PPC_LABELS[channel]}\n{n_in} of {n_all} inside", fontsize=12)
        handles = [
            Line2D([], [], ls="none", marker="o", color="black", ms=6),
            Line2D([], [], ls="none", marker="o", color=WARN_DOT, mfc="white", mew=1.8, ms=6),
            Patch(color="0.4", alpha=0.35, lw=0),
        ] + [m[0] for m in marks]
        labels = [
            "observed arm mean",
            "observed, outside the band",
            "replicated data: 94% interval of the arm mean",
        ] + [m[1] for m in marks]
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=12)
        _suptitle(
            fig, "Posterior predictive check: the data against data replicated from the fit", title_note
        )
    share = f"{int(inside.sum())} of {len(ppc)} ({inside.mean():.0%})"
    return attach_caption(
        fig,
        f"Posterior predictive check. Dots: each arm's observed mean rating on each day (left: daily "
        f"EMA ratings, 0–1, higher is better; a day's rating is placed at the day's end) or at each "
        f"visit (clinician scores, MADRS-like, lower is better). Bands or bars: the central 94% of the "
        f"same mean over data sets replicated from the fitted model (one per posterior draw, the same "
        f"patients and the same recorded ratings; with the everyday outcomes unrecorded, each replicate "
        f"draws those outcomes too). {share} observed means fall inside their band; about 94% should "
        f"if the model fits, and a run of dots outside is a misfit worth a look.{_flag_caption(title_note)}",
    )


# ----------------------------------------------------------------------------- 2. contrasts


def _hdi_columns(df: pd.DataFrame) -> tuple[str, str, str]:
    for col in df.columns:
        m = re.fullmatch(r"hdi_(\d+(?:\.\d+)?)%_low", str(col))
        if m and f"hdi_{m.group(1)}%_high" in df.columns:
            return col, f"hdi_{m.group(1)}%_high", m.group(1)
    raise ValueError(
        f"contrast_forest needs columns 'hdi_94%_low' and 'hdi_94%_high' (has {list(df.columns)})"
    )


def contrast_forest(
    contrasts: pd.DataFrame,
    arm_labels: Mapping[str, str] | None = None,
    *,
    title_note: str | None = None,
) -> Figure:
    """Forest plot of arm_a − arm_b at each contrast day, for V and S (``analysis.belief_contrasts``).

    One row per (pair, day): point = posterior mean, line = 94% HDI; the days of a pair are
    grouped (colour and marker = day); P(diff > 0) is printed at the right of each row.
    """
    _require(contrasts, ["belief", "arm_a", "arm_b", "day", "mean", "p_gt_0"], "contrast_forest")
    lo_col, hi_col, prob = _hdi_columns(contrasts)
    beliefs = [b for b in ("V", "S") if (contrasts["belief"] == b).any()]
    if not beliefs:
        raise ValueError("contrast_forest: column 'belief' has neither 'V' nor 'S'")
    df = contrasts.assign(arm_a=contrasts["arm_a"].astype(str), arm_b=contrasts["arm_b"].astype(str))
    pairs = list(dict.fromkeys(zip(df["arm_a"], df["arm_b"])))
    days = sorted(float(d) for d in df["day"].unique())
    nd = len(days)
    cmap = mpl.colormaps[SEQUENTIAL_CMAP]
    day_color = {d: mpl.colors.to_hex(cmap(0.6 * k / max(nd - 1, 1))) for k, d in enumerate(days)}
    markers = ("o", "s", "D", "^", "v", "P", "X", "h")
    day_marker = {d: markers[k % len(markers)] for k, d in enumerate(days)}
    step = min(0.26, 0.8 / max(nd, 1))
    offset = {d: (k - (nd - 1) / 2) * step for k, d in enumerate(days)}
    height = max(5.5, 0.62 * len(pairs) * max(1.0, nd / 3) + 2.6)
    with house_style():
        width = FIGSIZE_WIDE[0] if len(beliefs) > 1 else FIGSIZE[0] + 1.0
        fig, axes = new_figure(1, len(beliefs), figsize=(width, height), sharey=True)
        handles = {}
        for ax, which in zip(axes[0], beliefs):
            sub = df[df["belief"] == which]
            side = blended_transform_factory(ax.transAxes, ax.transData)
            for g, pair in enumerate(pairs):
                if g % 2 == 0:
                    ax.axhspan(g - 0.5, g + 0.5, color="0.5", alpha=0.08, lw=0, zorder=0)
                rows = sub[(sub["arm_a"] == pair[0]) & (sub["arm_b"] == pair[1])]
                for _, r in rows.iterrows():
                    d = float(r["day"])
                    y = g + offset[d]
                    m, lo, hi = float(r["mean"]), float(r[lo_col]), float(r[hi_col])
                    handles[d] = ax.errorbar(
                        [m],
                        [y],
                        xerr=[[max(m - lo, 0.0)], [max(hi - m, 0.0)]],
                        color=day_color[d],
                        marker=day_marker[d],
                        ms=7,
                        lw=2.2,
                        capsize=0,
                        ls="none",
                    )
                    ax.text(
                        1.02,
                        y,
                        _fmt_p(float(r["p_gt_0"])),
                        transform=side,
                        ha="left",
                        va="center",
                        fontsize=12,
                        color=day_color[d],
                    )
            ax.text(1.02, 1.0, "P(diff > 0)", transform=ax.transAxes, ha="left", va="bottom", fontsize=12)
            ax.axvline(0.0, color="0.3", ls="--", lw=1.4, zorder=1)
            ax.grid(False, axis="y")
            ax.set_xlabel(f"difference in mean {which}\n(probability units; > 0: first arm higher)")
            ax.set_title(BELIEF_TITLES[which], pad=22)
        ax0 = axes[0, 0]
        ax0.set_ylim(len(pairs) - 0.5, -0.5)  # first pair on top
        ax0.set_yticks(
            range(len(pairs)),
            [f"{_label(arm_labels, a)}\n− {_label(arm_labels, b)}" for a, b in pairs],
            fontsize=12,
        )
        ax0.set_ylabel("contrast: arm_a − arm_b")
        order = [d for d in days if d in handles]
        fig.legend(
            [handles[d] for d in order],
            [f"day {d:g}" for d in order],
            loc="outside lower center",
            ncols=len(order),
            title=f"day of the contrast (point: posterior mean; line: {prob}% HDI)",
        )
        _suptitle(fig, f"Differences between arms (posterior, {prob}% HDI)", title_note)
    return attach_caption(
        fig,
        f"Posterior differences between arms in the population-mean belief V (day-to-day expectation) and "
        f"S (core belief), at days {', '.join(f'{d:g}' for d in days)}. Each row is one contrast arm_a − "
        f"arm_b on one day: the point is the posterior mean, the line the {prob}% highest-density "
        f"interval; right of each panel: the posterior probability that the difference is above zero. A "
        f"line that crosses the dashed zero line means the data do not settle the sign of that "
        f"difference.{_flag_caption(title_note)}",
    )


# ----------------------------------------------------------------------------- 3. the window


def _resting_level(alpha: np.ndarray) -> float:
    """An arm's resting learning rate: the 5th percentile of its nonzero α over time.

    Not the minimum: α is gated (partly) to zero for the step of each infusion, which would
    make the minimum, and anything proportional to it, meaningless.
    """
    pos = alpha[np.isfinite(alpha) & (alpha > 0)]
    return float(np.quantile(pos, 0.05)) if pos.size else 0.0


def _window_length_caption(window: pd.DataFrame) -> str:
    how = window.attrs.get("window_length")
    if how == "fitted":
        return (
            " Its length is fitted too (the kernel's time constants, window_parameters.csv), and the "
            "bands carry that uncertainty."
        )
    if how == "fixed":
        return " Its length is the config's kernel, held fixed in this fit."
    return ""


def window_posterior(
    window: pd.DataFrame,
    arm_labels: Mapping[str, str] | None = None,
    *,
    title_note: str | None = None,
) -> Figure:
    """The fitted learning rate α(t) per arm at the population-mean parameters, 94% HDI band.

    ``window``: columns arm, step, day, alpha_mean, hdi_low, hdi_high (``analysis.window_curve``).
    Zoomed on the days where any arm's α exceeds 1.5x its resting level, ± 2 days; bands only
    for those arms (the others sit at the baseline, drawn as lines).
    """
    _require(window, ["arm", "step", "day", "alpha_mean", "hdi_low", "hdi_high"], "window_posterior")
    arms = _arms_in_order(window["arm"])
    colors = arm_colors(arms)
    data = {a: window[window["arm"].astype(str) == a].sort_values("step") for a in arms}
    raised = {}
    for a, d in data.items():
        al = d["alpha_mean"].to_numpy(np.float64)
        raised[a] = al > ZOOM_FACTOR * _resting_level(al) if al.size else np.zeros(0, bool)
    hot = np.concatenate([d["day"].to_numpy(np.float64)[raised[a]] for a, d in data.items()])
    d_lo, d_hi = float(window["day"].min()), float(window["day"].max())
    step = float(np.median(np.diff(np.sort(window["day"].unique())))) if window["day"].nunique() > 1 else 0.0
    d_end = d_hi + step  # the last step covers [d_hi, d_hi + step)
    if hot.size:  # whole days, so the tick labels and the title stay round
        x_lo = max(d_lo, math.floor(float(hot.min()) - ZOOM_PAD_DAYS))
        x_hi = min(d_end, math.ceil(float(hot.max()) + step + ZOOM_PAD_DAYS))
    else:
        x_lo, x_hi = d_lo, d_end
    groups = _same_curve_groups(data)
    with house_style():
        fig, axes = new_figure(figsize=(FIGSIZE[0] + 2.0, FIGSIZE[1]))
        ax = axes[0, 0]
        top = 0.0
        visible = {}
        for a in arms:
            d = data[a]
            visible[a] = d[(d["day"] >= x_lo - step - 1e-9) & (d["day"] <= x_hi + 1e-9)]
        for group in groups:  # bands first; one band per group of arms with the same alpha(t)
            d = visible[group[0]]
            if d.empty or not any(raised[a].any() for a in group):
                continue
            c = colors[group[0]] if len(group) == 1 else SHARED_BAND_COLOR
            ax.fill_between(
                d["day"], d["hdi_low"], d["hdi_high"], color=c, alpha=BAND_ALPHA, lw=0, step="post"
            )
            top = max(top, float(d["hdi_high"].max()))
        for group in groups:
            for i, a in enumerate(group):
                d = visible[a]
                if d.empty:
                    continue
                # arms sharing one curve: one striped line, dashes of each arm's colour in turn
                ls = "-" if len(group) == 1 else (i * STRIPE, (STRIPE, (len(group) - 1) * STRIPE))
                ax.plot(
                    d["day"], d["alpha_mean"], color=colors[a], lw=WINDOW_LW, ls=ls, drawstyle="steps-post"
                )
                top = max(top, float(d["alpha_mean"].max()))
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(0.0, 1.08 * top if top > 0 else 1.0)
        ax.set_xlabel(DAYS_LABEL)
        ax.set_ylabel(ALPHA_LABEL)
        zoomed = (x_lo, x_hi) != (d_lo, d_end)
        title(
            ax,
            (f"zoom: days {x_lo:g}–{x_hi:g}" if zoomed else f"days {d_lo:g}–{d_end:g}")
            + " · population-mean parameters",
        )
        handles = [Line2D([], [], color=colors[a], lw=WINDOW_LW) for a in arms]
        labels = [_label(arm_labels, a) for a in arms]
        handles.append(Patch(color="0.4", alpha=BAND_ALPHA + 0.1, lw=0))
        labels.append("94% HDI (band)")
        if any(len(g) > 1 for g in groups):
            handles.append(Line2D([], [], color="0.2", lw=WINDOW_LW, ls=(0, (STRIPE, STRIPE))))
            labels.append("striped: arms with the same α(t)")
        _legend(ax, handles, labels)
        _suptitle(fig, "Fitted plasticity window: learning rate α(t) per arm", title_note)
    shared = [g for g in groups if len(g) > 1]
    shared_txt = (
        " Arms with the same α(t) (the same dose schedule) share one striped line, dashes in each "
        "arm's colour in turn, and one grey band: "
        + "; ".join(", ".join(_label(arm_labels, a) for a in g) for g in shared)
        + "."
        if shared
        else ""
    )
    return attach_caption(
        fig,
        f"The learning rate α per arm implied by the fitted population-mean parameters (mean baseline "
        f"α0 and ketamine boost A) and each arm's dose schedule: lines are posterior means, bands 94% "
        f"highest-density intervals, drawn for arms whose α rises above {ZOOM_FACTOR:g}x its resting "
        f"level (the others stay at the baseline). Zoomed on the days where it does, ± {ZOOM_PAD_DAYS:g} "
        f"days (of days {d_lo:g}–{d_end:g}).{shared_txt} α drops toward 0 in the step of each infusion (no "
        f"learning while dissociated). The height of the window is the fitted boost A, which has not been "
        f"measured in humans.{_window_length_caption(window)}{_flag_caption(title_note)}",
    )


def _same_curve_groups(data: Mapping[str, pd.DataFrame]) -> list[list[str]]:
    """Arms grouped by identical α(t) (posterior mean and band), in first-appearance order."""
    groups: list[list[str]] = []
    for a, d in data.items():
        x = d[["alpha_mean", "hdi_low", "hdi_high"]].to_numpy(np.float64)
        for g in groups:
            y = data[g[0]][["alpha_mean", "hdi_low", "hdi_high"]].to_numpy(np.float64)
            if x.shape == y.shape and np.allclose(x, y, rtol=1e-6, atol=1e-12, equal_nan=True):
                g.append(a)
                break
        else:
            groups.append([a])
    return groups
