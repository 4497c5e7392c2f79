"""Figures of fit results: one function per figure, from the tidy tables of a fit.

Every function takes the pandas table that :mod:`plasticity_rl.analysis` (or the recovery / SBC
code, or :func:`arviz.compare`) produces and returns a :class:`matplotlib.figure.Figure` in the
house style of :mod:`plasticity_rl.plots.style`, with a caption attached (read it with
:func:`plasticity_rl.plots.caption_of`). No fitting, no JAX: the figures only draw tables.

- :func:`posterior_belief_curves`: each arm's population-mean V(t) and S(t), posterior mean and
  94% HDI (``analysis.arm_curves``), the plasticity window shaded;
- :func:`contrast_forest`: differences between arms at chosen days (``analysis.belief_contrasts``);
- :func:`window_posterior`: the fitted learning rate α(t) per arm (``analysis.window_curve``);
- :func:`recovery_scatter`: parameter recovery, true vs estimated (``recovery.recover``);
- :func:`sbc_ranks`: simulation-based calibration rank histograms (``recovery.sbc``);
- :func:`loo_comparison`: PSIS-LOO model comparison (``arviz.compare``).

A fit that failed its diagnostics must say so on every figure drawn from it: pass ``title_note``
(e.g. ``"FIT FAILED DIAGNOSTICS: R-hat 1.05"``); it is printed in red, bold, on the line above
the figure title (an annotation with gid :data:`TITLE_NOTE_GID`; :func:`figure_title` reads the
title and the note back).
"""

from __future__ import annotations

import math
import re
import textwrap
from typing import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Annotation
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory
from scipy import stats

from plasticity_rl.trust import expected_r, recovery_r
from plasticity_rl.params import true_on_support_bound, unit_of
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

TITLE_NOTE_COLOR = "#C00000"  # plain red: a failed fit, not an arm (no arm line uses it)
TITLE_NOTE_GID = "title_note"
BAND_ALPHA = 0.18
BELIEF_TITLES = {"V": "V: day-to-day expectation (mood)", "S": "S: core belief (schema)"}
POINT_COLOR = "#000000"
WARN_COLOR = "#D55E00"  # Okabe-Ito vermillion, as the house's "read with care" notes
LEVEL_COLORS = {"group": "#000000", "patient": "#0072B2"}
ZOOM_FACTOR = 1.5  # window_posterior zooms on days where alpha > ZOOM_FACTOR x the arm's resting level
ZOOM_PAD_DAYS = 2.0
STRIPE = 3.0  # dash length (x line width) of the striped line shared by arms with the same alpha(t)
WINDOW_LW = 3.0
SHARED_BAND_COLOR = "0.45"
MAX_POINTS = 250  # recovery_scatter draws at most this many estimates per panel (statistics use all)


# ----------------------------------------------------------------------------- shared


def _suptitle(fig: Figure, text: str, note: str | None) -> None:
    """Figure title; a fit's flag (``note``) in red bold on the line(s) above it.

    The suptitle reserves blank lines for the note so constrained layout keeps room for it;
    the note is an annotation anchored to the top of the suptitle.
    """
    if not note:
        fig.suptitle(text)
        return
    size = FontProperties(size=mpl.rcParams["figure.titlesize"]).get_size_in_points()
    width = max(30, int(fig.get_figwidth() * 72 / (0.6 * size)))  # characters that fit the figure
    lines = textwrap.wrap(" ".join(str(note).split()), width) or [str(note)]
    sup = fig.suptitle("\n" * len(lines) + text)
    ann = Annotation("\n".join(lines), xy=(0.5, 1.0), xycoords=sup, ha="center", va="top",
                     fontsize=sup.get_fontsize(), fontweight="bold", color=TITLE_NOTE_COLOR,
                     gid=TITLE_NOTE_GID, annotation_clip=False)
    ann.set_in_layout(False)
    fig.add_artist(ann)


def figure_title(fig: Figure) -> str:
    """The figure title and, when present, the red fit flag above it (one string)."""
    parts = [fig._suptitle.get_text().strip()] if fig._suptitle is not None else []
    parts += [a.get_text() for a in fig.artists if a.get_gid() == TITLE_NOTE_GID]
    return "\n".join(p for p in parts if p)


def _flag_caption(note: str | None) -> str:
    return f" WARNING: {note}: the fit failed its diagnostics, so these estimates may not be trustworthy." if note else ""


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} needs columns {list(columns)}; missing {missing} (has {list(df.columns)})")
    if df.empty:
        raise ValueError(f"{what}: the table is empty")


def _arms_in_order(values) -> list[str]:
    return [str(a) for a in pd.unique(pd.Series(values).astype(str))]


def _label(arm_labels: Mapping[str, str] | None, arm: str) -> str:
    return str((arm_labels or {}).get(arm, arm))


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    ncols = max(1, min(n, max_cols, math.ceil(math.sqrt(n))))
    return math.ceil(n / ncols), ncols


def _panel_figure(n: int, width: float = 3.5, height: float = 3.3, max_cols: int = 4):
    """One small panel per parameter, near-square grid; unused cells are removed.

    Returns the figure, the used axes, and which of them are in the left column / at the
    bottom of their column (those carry the y / x axis labels).
    """
    nrows, ncols = _grid(n, max_cols)
    fig, axes = new_figure(nrows, ncols, figsize=(max(width * ncols + 1.2, 7.0), height * nrows + 1.6))
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    left = [k % ncols == 0 for k in range(n)]
    bottom = [k + ncols >= n for k in range(n)]
    return fig, flat[:n], left, bottom


def _param_unit(name: str) -> str:
    """The scale a fitted parameter lives on (plain words, for axis titles), from the parameter table."""
    base = re.sub(r"^(mu|tau)_", "", name)
    if base.startswith("logit_") or base in ("A", "A_pos", "A_neg"):
        return "logit units"
    return unit_of(name)


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "n/a"
    if p >= 0.995:
        return "> 0.99"
    if p <= 0.005:
        return "< 0.01"
    return f"{p:.2f}"


# ----------------------------------------------------------------------------- 1. belief curves


def posterior_belief_curves(
    curves: pd.DataFrame,
    arm_labels: Mapping[str, str] | None = None,
    window: Sequence[tuple[float, float]] | None = None,
    *,
    title_note: str | None = None,
) -> Figure:
    """Each arm's population-mean V(t) and S(t): posterior mean line, 94% HDI band.

    ``curves``: columns belief ('V' / 'S'), arm, day, mean, hdi_low, hdi_high (as
    ``analysis.arm_curves``). ``arm_labels``: arm -> legend label. ``window``: (start, end)
    days of the plasticity window, shaded as :func:`plasticity_rl.plots.shade_window` does.
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
                ax.fill_between(d["day"], d["hdi_low"], d["hdi_high"], color=colors[arm], alpha=BAND_ALPHA, lw=0)
            for arm, d in per_arm.items():
                (lines[arm],) = ax.plot(d["day"], d["mean"], color=colors[arm])
            ax.set_xlabel(DAYS_LABEL)
            title(ax, BELIEF_TITLES[which])
        axes[0, 0].set_ylabel(BELIEF_LABEL)
        axes[0, 0].margins(y=0.05)
        band = Patch(color="0.4", alpha=BAND_ALPHA + 0.1, lw=0)
        _legend(axes[0, -1], list(lines.values()) + [band] + [m[0] for m in marks],
                [_label(arm_labels, a) for a in lines] + ["94% HDI (band)"] + [m[1] for m in marks])
        _suptitle(fig, "Fitted beliefs per arm (posterior mean, 94% HDI)", title_note)
    win_txt = (" Shaded: the plasticity window (" + ", ".join(f"days {a:g}–{b:g}" for a, b in window) + ")."
               if window else "")
    return attach_caption(
        fig,
        f"Posterior of each arm's population-mean belief over time: lines are posterior means, bands the "
        f"94% highest-density intervals (HDI), for V, the day-to-day expectation that an experience goes "
        f"well (left), and S, the slow core belief (schema) V relaxes toward"
        f"{' (right)' if len(beliefs) > 1 else ''}.{win_txt} Estimated from the fitted model, so the "
        f"bands carry the uncertainty of the fit, not the spread between patients.{_flag_caption(title_note)}",
    )


# ----------------------------------------------------------------------------- 2. contrasts


def _hdi_columns(df: pd.DataFrame) -> tuple[str, str, str]:
    for col in df.columns:
        m = re.fullmatch(r"hdi_(\d+(?:\.\d+)?)%_low", str(col))
        if m and f"hdi_{m.group(1)}%_high" in df.columns:
            return col, f"hdi_{m.group(1)}%_high", m.group(1)
    raise ValueError(f"contrast_forest needs columns 'hdi_94%_low' and 'hdi_94%_high' (has {list(df.columns)})")


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
                    handles[d] = ax.errorbar([m], [y], xerr=[[max(m - lo, 0.0)], [max(hi - m, 0.0)]],
                                             color=day_color[d], marker=day_marker[d], ms=7, lw=2.2,
                                             capsize=0, ls="none")
                    ax.text(1.02, y, _fmt_p(float(r["p_gt_0"])), transform=side, ha="left", va="center",
                            fontsize=12, color=day_color[d])
            ax.text(1.02, 1.0, "P(diff > 0)", transform=ax.transAxes, ha="left", va="bottom", fontsize=12)
            ax.axvline(0.0, color="0.3", ls="--", lw=1.4, zorder=1)
            ax.grid(False, axis="y")
            ax.set_xlabel(f"difference in mean {which}\n(probability units; > 0: first arm higher)")
            ax.set_title(BELIEF_TITLES[which], pad=22)
        ax0 = axes[0, 0]
        ax0.set_ylim(len(pairs) - 0.5, -0.5)  # first pair on top
        ax0.set_yticks(range(len(pairs)), [f"{_label(arm_labels, a)}\n− {_label(arm_labels, b)}" for a, b in pairs],
                       fontsize=12)
        ax0.set_ylabel("contrast: arm_a − arm_b")
        order = [d for d in days if d in handles]
        fig.legend([handles[d] for d in order], [f"day {d:g}" for d in order], loc="outside lower center",
                   ncols=len(order), title=f"day of the contrast (point: posterior mean; line: {prob}% HDI)")
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
        return (" Its length is fitted too (the kernel's time constants, window_parameters.csv), and the "
                "bands carry that uncertainty.")
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
            ax.fill_between(d["day"], d["hdi_low"], d["hdi_high"], color=c, alpha=BAND_ALPHA, lw=0, step="post")
            top = max(top, float(d["hdi_high"].max()))
        for group in groups:
            for i, a in enumerate(group):
                d = visible[a]
                if d.empty:
                    continue
                # arms sharing one curve: one striped line, dashes of each arm's colour in turn
                ls = "-" if len(group) == 1 else (i * STRIPE, (STRIPE, (len(group) - 1) * STRIPE))
                ax.plot(d["day"], d["alpha_mean"], color=colors[a], lw=WINDOW_LW, ls=ls, drawstyle="steps-post")
                top = max(top, float(d["alpha_mean"].max()))
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(0.0, 1.08 * top if top > 0 else 1.0)
        ax.set_xlabel(DAYS_LABEL)
        ax.set_ylabel(ALPHA_LABEL)
        zoomed = (x_lo, x_hi) != (d_lo, d_end)
        title(ax, (f"zoom: days {x_lo:g}–{x_hi:g}" if zoomed else f"days {d_lo:g}–{d_end:g}")
              + " · population-mean parameters")
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
    shared_txt = (" Arms with the same α(t) (the same dose schedule) share one striped line, dashes in each "
                  "arm's colour in turn, and one grey band: " + "; ".join(", ".join(_label(arm_labels, a) for a in g)
                                                                for g in shared) + "." if shared else "")
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


# ----------------------------------------------------------------------------- 4. recovery


def recovery_scatter(recovery: pd.DataFrame, *, title_note: str | None = None) -> Figure:
    """Parameter recovery: true vs estimated, 90% interval bars, identity line, one panel each.

    ``recovery``: columns parameter, true, mean, low, high (90% interval) and optionally level
    ('group' / 'patient'). Panel titles give the Pearson r and the 90% interval coverage.
    """
    _require(recovery, ["parameter", "true", "mean", "low", "high"], "recovery_scatter")
    params = _arms_in_order(recovery["parameter"])
    has_level = "level" in recovery.columns
    thinned: set[str] = set()
    has_expected = False
    with house_style():
        fig, axes, left, bottom = _panel_figure(len(params), width=3.4, height=3.4)
        seen_levels: dict[str, object] = {}
        for k, (ax, name) in enumerate(zip(axes, params)):
            g = recovery[recovery["parameter"].astype(str) == name]
            t, m = g["true"].to_numpy(np.float64), g["mean"].to_numpy(np.float64)
            lo, hi = g["low"].to_numpy(np.float64), g["high"].to_numpy(np.float64)
            level = str(g["level"].iloc[0]) if has_level else "group"
            c = LEVEL_COLORS.get(level, POINT_COLOR)
            many = len(g) > 60
            shown = np.arange(len(g))
            if len(g) > MAX_POINTS:  # a blob of thousands of bars hides the pattern: draw a fixed subset
                shown = np.sort(np.random.default_rng(0).choice(len(g), MAX_POINTS, replace=False))
                thinned.add(level)
            ts, ms, los, his = t[shown], m[shown], lo[shown], hi[shown]
            h = ax.errorbar(ts, ms, yerr=[np.maximum(ms - los, 0), np.maximum(his - ms, 0)], ls="none", marker="o",
                            ms=3.5 if many else 6, color=c, alpha=0.5 if many else 0.9,
                            elinewidth=0.7 if many else 1.4, capsize=0)
            seen_levels.setdefault(level, h)
            span = np.concatenate([t, lo, hi])
            span = span[np.isfinite(span)]
            a, b = (float(span.min()), float(span.max())) if span.size else (0.0, 1.0)
            pad = 0.05 * (b - a) if b > a else 0.5
            ax.plot([a - pad, b + pad], [a - pad, b + pad], color="0.35", ls="--", lw=1.4, zorder=0)
            ax.set_xlim(a - pad, b + pad)
            ax.set_ylim(a - pad, b + pad)

            r = recovery_r(t, m)  # the summary table's r, so figure and CSV agree
            cover = float(np.mean((t >= lo) & (t <= hi)))
            r_txt = f"r = {r:.2f}" if np.isfinite(r) else "r = n/a"
            if level == "patient" and "sd" in g:
                r_exp = expected_r(t, g["sd"].to_numpy(np.float64))
                if np.isfinite(r_exp):
                    r_txt += f" (expected {r_exp:.2f})"
                    has_expected = True
            on_bound = true_on_support_bound(level, name, t)
            cover_txt = "coverage n/a (true on bound)" if on_bound else f"90% coverage {cover:.0%}"
            sep = "\n" if "expected" in r_txt else ", "  # three short lines rather than two that collide
            ax.set_title(f"{name} ({_param_unit(name)})\n{r_txt}{sep}{cover_txt}", fontsize=13)
            ax.tick_params(labelsize=11)
            if bottom[k]:
                ax.set_xlabel("true value (panel's units)", fontsize=13)
            if left[k]:
                ax.set_ylabel("estimate (posterior mean,\n90% interval; same units)", fontsize=13)
        handles = [seen_levels[k] for k in seen_levels]
        labels = [f"{k}-level ({'one per data set' if k == 'group' else 'one per patient'}"
                  + (f"; {MAX_POINTS} drawn per panel)" if k in thinned else ")") for k in seen_levels]
        handles.append(Line2D([], [], color="0.35", ls="--", lw=1.4))
        labels.append("identity (perfect recovery)")
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=12)
        _suptitle(fig, "Parameter recovery: are the generating values found again?", title_note)
    return attach_caption(
        fig,
        "Parameter recovery: data sets simulated with known parameters were fitted, and each estimate "
        "(posterior mean, bar: central 90% interval) is plotted against the value that generated the "
        "data; the dashed line is perfect recovery. Panel titles: the parameter and its scale, the "
        "Pearson correlation r between true values and estimates, and the share of 90% intervals that "
        "contain the true value (about 90% when the intervals are calibrated)"
        + ("; 'expected' is the r that the per-patient posteriors' own widths allow (a design whose data "
           "say little about each patient cannot do better, whatever the sampler)" if has_expected else "")
        + (f"; both computed from every estimate, though panels with more than {MAX_POINTS} draw a fixed random "
           f"subset of them." if thinned else ".") + _flag_caption(title_note),
    )


# ----------------------------------------------------------------------------- 5. SBC


def sbc_ranks(sbc: pd.DataFrame, *, title_note: str | None = None) -> Figure:
    """SBC rank histograms, one panel per parameter, against the uniform expectation.

    ``sbc``: columns parameter, replicate, rank, n_draws (ranks in 0..n_draws). Bins: max(2,
    min(20, replicates // 5)) over [0, n_draws + 1), as ``recovery.sbc``; grey band: the 99%
    binomial interval of a bin's count under uniformity; title: chi-square uniformity p-value.
    """
    _require(sbc, ["parameter", "replicate", "rank", "n_draws"], "sbc_ranks")
    params = _arms_in_order(sbc["parameter"])
    with house_style():
        fig, axes, left, bottom = _panel_figure(len(params), width=3.6, height=2.9)
        n_draws = int(sbc["n_draws"].max())
        for k, (ax, name) in enumerate(zip(axes, params)):
            g = sbc[sbc["parameter"].astype(str) == name]
            n = len(g)
            L = int(g["n_draws"].max())
            bins = max(2, min(20, n // 5))
            counts, edges = np.histogram(g["rank"].to_numpy(np.float64), bins=bins, range=(0, L + 1))
            expected = n / bins
            lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / bins)
            ax.axhspan(lo, hi, color="0.5", alpha=0.22, lw=0, zorder=0)
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#0072B2", alpha=0.85,
                   edgecolor="white", lw=0.8, zorder=2)
            ax.axhline(expected, color="#000000", ls="--", lw=1.6, zorder=3)
            p = float(stats.chisquare(counts).pvalue) if n else np.nan
            ax.set_xlim(0, L + 1)
            ax.set_ylim(0, max(hi, counts.max(initial=0)) * 1.15 + 0.5)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            p_txt = "n/a" if not np.isfinite(p) else ("p < 0.01" if p < 0.01 else f"p = {p:.2f}")
            ax.set_title(f"{name}\nχ² uniformity {p_txt}", fontsize=13,
                         color=WARN_COLOR if np.isfinite(p) and p < 0.01 else "black")
            ax.tick_params(labelsize=11)
            if bottom[k]:
                ax.set_xlabel(f"rank of the true value\n(0–{n_draws}, among {n_draws} posterior draws)", fontsize=13)
            if left[k]:
                ax.set_ylabel("replicates per bin\n(count)", fontsize=13)
        n_rep = int(sbc.groupby("parameter")["replicate"].nunique().max())
        fig.legend([Line2D([], [], color="#000000", ls="--", lw=1.6), Patch(color="0.5", alpha=0.22, lw=0)],
                   ["expected count if calibrated (uniform)", "99% range of a bin under uniformity"],
                   loc="outside lower center", ncols=2, fontsize=12)
        _suptitle(fig, f"Simulation-based calibration: rank histograms ({n_rep} replicates)", title_note)
    return attach_caption(
        fig,
        f"Simulation-based calibration (Talts et al. 2018): {n_rep} replicates each drew the parameters "
        f"from the prior, simulated a data set and fitted it; the rank of the true value among the "
        f"posterior draws is uniform when the fit is calibrated. Bars: ranks per bin; dashed: the "
        f"uniform expectation; grey: the 99% binomial range of one bin under uniformity. Titles: the "
        f"chi-square test of uniformity (small p: miscalibration; a U shape means intervals too narrow, "
        f"a hump too wide, a slope a biased estimate); titles in orange: p < 0.01." + _flag_caption(title_note),
    )


# ----------------------------------------------------------------------------- 6. LOO


_SCALE_TEXT = {  # arviz.compare scale -> (what is plotted, direction, unit)
    "log": ("ELPD-LOO (expected log predictive density)", "higher = better", "nats"),
    "negative_log": ("−ELPD-LOO (negative log predictive density)", "lower = better", "nats"),
    "deviance": ("LOO deviance (−2 × ELPD)", "lower = better", "deviance units"),
}


def loo_comparison(compare_df: pd.DataFrame, *, title_note: str | None = None, integrated: bool = False) -> Figure:
    """PSIS-LOO model comparison from :func:`arviz.compare`: ELPD ± SE per model (best on top),
    and the difference to the best model ± its SE (dse); models with a LOO warning are marked.

    ``integrated``: the table is of integrated LOO (each left-out patient's own parameters
    integrated over the population: how well a model predicts a new patient), said in the title
    and caption."""
    _require(compare_df, ["elpd_loo", "se", "elpd_diff", "dse"], "loo_comparison")
    df = compare_df.sort_values("rank") if "rank" in compare_df.columns else compare_df
    names = [str(i) for i in df.index]
    warn = df["warning"].astype(bool).to_numpy() if "warning" in df.columns else np.zeros(len(df), bool)
    scale = str(df["scale"].iloc[0]) if "scale" in df.columns else "log"
    what, better, unit = _SCALE_TEXT.get(scale, _SCALE_TEXT["log"])
    y = np.arange(len(df))
    height = max(4.8, 0.7 * len(df) + 3.0)
    with house_style():
        fig, axes = new_figure(1, 2, figsize=(FIGSIZE_WIDE[0], height), sharey=True)
        ax, dax = axes[0]
        for k in range(len(df)):
            c = WARN_COLOR if warn[k] else POINT_COLOR
            mfc = "white" if warn[k] else c
            ax.errorbar(df["elpd_loo"].iloc[k], y[k], xerr=df["se"].iloc[k], color=c, marker="o", ms=9, mfc=mfc,
                        mew=2.0, lw=2.4, capsize=5, ls="none")
            dax.errorbar(df["elpd_diff"].iloc[k], y[k], xerr=df["dse"].iloc[k], color=c, marker="o", ms=9, mfc=mfc,
                         mew=2.0, lw=2.4, capsize=5, ls="none")
        dax.axvline(0.0, color="0.3", ls="--", lw=1.4, zorder=0)
        if "weight" in df.columns:
            side = blended_transform_factory(dax.transAxes, dax.transData)
            for k in range(len(df)):
                dax.text(1.03, y[k], f"{float(df['weight'].iloc[k]):.2f}", transform=side, ha="left", va="center",
                         fontsize=13)
            dax.text(1.03, 1.0, "weight", transform=dax.transAxes, ha="left", va="bottom", fontsize=13)
        ax.set_ylim(len(df) - 0.5, -0.5)  # best on top
        ax.set_yticks(y, [n + ("  (warning)" if w else "") for n, w in zip(names, warn)])
        for lab, w in zip(ax.get_yticklabels(), warn):
            if w:
                lab.set_color(WARN_COLOR)
        ax.grid(False, axis="y")
        dax.grid(False, axis="y")
        ax.set_ylabel("model (best on top)")
        ax.set_xlabel(f"{what}\n({unit}; {better}), ± SE")
        dax.set_xlabel(f"difference from the best model\n({unit}; 0 = best), ± SE of the difference")
        title(ax, "predictive accuracy per model")
        title(dax, "compared with the best model")
        handles = [Line2D([], [], color=POINT_COLOR, marker="o", ms=9, lw=2.4)]
        labels = ["estimate ± standard error"]
        if warn.any():
            handles.append(Line2D([], [], color=WARN_COLOR, marker="o", mfc="white", mew=2.0, ms=9, lw=2.4))
            labels.append("LOO warning (Pareto k too high): estimate unreliable")
        fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=12)
        kind = "a new patient's data, integrated PSIS-LOO" if integrated else "PSIS-LOO"
        _suptitle(fig, f"Model comparison: leave-one-patient-out predictive accuracy ({kind})", title_note)
    return attach_caption(
        fig,
        f"Model comparison by Pareto-smoothed importance-sampling leave-one-out cross-validation "
        f"(PSIS-LOO, arviz.compare). Left: each model's {what} ({better}) with its standard error, best "
        f"model on top. Right: the difference to the best model with the standard error of the "
        f"difference (dse), which is the uncertainty to judge a ranking by: a difference within about "
        f"two dse of zero does not separate the models. Numbers at the right: stacking weights. "
        f"Models marked in orange (hollow) have a LOO warning (some Pareto k too high), so their "
        f"estimate is unreliable."
        + (" Integrated LOO: the left-out patient's own parameters (baseline learning rate, ketamine "
           "boost, initial schema) are integrated over the fitted population distribution by "
           "importance sampling, so each model is scored on predicting a new patient's ratings."
           if integrated else "")
        + _flag_caption(title_note),
    )
