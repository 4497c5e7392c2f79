"""Figures that say whether to trust a fit: recovery, calibration, model comparison.

Each takes the table :mod:`plasticity_rl.recovery` or :func:`arviz.compare` produces and returns a
captioned :class:`matplotlib.figure.Figure`; none fits anything.

- :func:`recovery_scatter`: parameter recovery, true vs estimated (``recovery.recover``);
- :func:`sbc_ranks`: simulation-based calibration rank histograms (``recovery.sbc``);
- :func:`sbc_ecdf`: the same ranks as ECDF differences with simultaneous bands;
- :func:`loo_comparison`: PSIS-LOO model comparison (``arviz.compare``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory
from scipy import stats

from plasticity_rl.params import true_on_support_bound
from plasticity_rl.plots._panels import (
    TITLE_NOTE_COLOR,
    _arms_in_order,
    _flag_caption,
    _panel_figure,
    _param_unit,
    _require,
    _suptitle,
)
from plasticity_rl.plots.style import (
    FIGSIZE_WIDE,
    attach_caption,
    house_style,
    new_figure,
    title,
)
from plasticity_rl.trust import expected_r, recovery_r

POINT_COLOR = "#000000"
WARN_COLOR = "#D55E00"  # Okabe-Ito vermillion, as the house's "read with care" notes
FAIL_COLOR = TITLE_NOTE_COLOR  # a fit that failed its diagnostics, as in the fit figures' titles
LEVEL_COLORS = {"group": "#000000", "patient": "#0072B2"}
MAX_POINTS = 250  # recovery_scatter draws at most this many estimates per panel (statistics use all)


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
            h = ax.errorbar(
                ts,
                ms,
                yerr=[np.maximum(ms - los, 0), np.maximum(his - ms, 0)],
                ls="none",
                marker="o",
                ms=3.5 if many else 6,
                color=c,
                alpha=0.5 if many else 0.9,
                elinewidth=0.7 if many else 1.4,
                capsize=0,
            )
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
        labels = [
            f"{k}-level ({'one per data set' if k == 'group' else 'one per patient'}"
            + (f"; {MAX_POINTS} drawn per panel)" if k in thinned else ")")
            for k in seen_levels
        ]
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
        + (
            "; 'expected' is the r that the per-patient posteriors' own widths allow (a design whose data "
            "say little about each patient cannot do better, whatever the sampler)"
            if has_expected
            else ""
        )
        + (
            f"; both computed from every estimate, though panels with more than {MAX_POINTS} draw a fixed random "
            f"subset of them."
            if thinned
            else "."
        )
        + _flag_caption(title_note),
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
            ax.bar(
                edges[:-1],
                counts,
                width=np.diff(edges),
                align="edge",
                color="#0072B2",
                alpha=0.85,
                edgecolor="white",
                lw=0.8,
                zorder=2,
            )
            ax.axhline(expected, color="#000000", ls="--", lw=1.6, zorder=3)
            p = float(stats.chisquare(counts).pvalue) if n else np.nan
            ax.set_xlim(0, L + 1)
            ax.set_ylim(0, max(hi, counts.max(initial=0)) * 1.15 + 0.5)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            p_txt = "n/a" if not np.isfinite(p) else ("p < 0.01" if p < 0.01 else f"p = {p:.2f}")
            ax.set_title(
                f"{name}\nχ² uniformity {p_txt}",
                fontsize=13,
                color=WARN_COLOR if np.isfinite(p) and p < 0.01 else "black",
            )
            ax.tick_params(labelsize=11)
            if bottom[k]:
                ax.set_xlabel(
                    f"rank of the true value\n(0–{n_draws}, among {n_draws} posterior draws)", fontsize=13
                )
            if left[k]:
                ax.set_ylabel("replicates per bin\n(count)", fontsize=13)
        n_rep = int(sbc.groupby("parameter")["replicate"].nunique().max())
        fig.legend(
            [Line2D([], [], color="#000000", ls="--", lw=1.6), Patch(color="0.5", alpha=0.22, lw=0)],
            ["expected count if calibrated (uniform)", "99% range of a bin under uniformity"],
            loc="outside lower center",
            ncols=2,
            fontsize=12,
        )
        _suptitle(fig, f"Simulation-based calibration: rank histograms ({n_rep} replicates)", title_note)
    return attach_caption(
        fig,
        f"Simulation-based calibration (Talts et al. 2018): {n_rep} replicates each drew the parameters "
        f"from the prior, simulated a data set and fitted it; the rank of the true value among the "
        f"posterior draws is uniform when the fit is calibrated. Bars: ranks per bin; dashed: the "
        f"uniform expectation; grey: the 99% binomial range of one bin under uniformity. Titles: the "
        f"chi-square test of uniformity (small p: miscalibration; a U shape means intervals too narrow, "
        f"a hump too wide, a slope a biased estimate); titles in orange: p < 0.01."
        + _flag_caption(title_note),
    )


def sbc_ecdf(sbc: pd.DataFrame, *, prob: float = 0.95, title_note: str | None = None) -> Figure:
    """SBC as ECDF differences with simultaneous bands, one panel per parameter.

    Each replicate's rank of the true value becomes a fractional rank u = (rank + 0.5) / (n_draws + 1)
    in (0, 1); the line is the ECDF of the u's minus the uniform CDF, and the band is where that
    whole line stays with probability ``prob`` under uniformity, simultaneously over every point
    (Säilynoja, Bürkner & Vehtari 2022, Statistics and Computing 32:32; ArviZ's optimised band).
    Unlike a histogram, it needs no bins and the band is one test for the whole curve.
    """
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    _require(sbc, ["parameter", "replicate", "rank", "n_draws"], "sbc_ecdf")
    params = _arms_in_order(sbc["parameter"])
    outside = []
    with house_style():
        fig, axes, left, bottom = _panel_figure(len(params), width=3.6, height=2.9)
        for k, (ax, name) in enumerate(zip(axes, params)):
            g = sbc[sbc["parameter"].astype(str) == name]
            n, L = len(g), int(g["n_draws"].max())
            u = (g["rank"].to_numpy(np.float64) + 0.5) / (L + 1)
            z = np.linspace(0.0, 1.0, min(max(n, 10), 100) + 1)
            ecdf = np.searchsorted(np.sort(u), z, side="right") / max(n, 1)
            lo, hi = ecdf_confidence_band(n, z, z, prob=prob, method="optimized")
            ax.fill_between(z, lo - z, hi - z, color="0.5", alpha=0.22, lw=0, zorder=0)
            miss = bool(np.any((ecdf < lo - 1e-12) | (ecdf > hi + 1e-12)))
            outside += [name] if miss else []
            ax.plot(z, ecdf - z, color=WARN_COLOR if miss else "#0072B2", lw=2.0, zorder=2)
            ax.axhline(0.0, color="#000000", ls="--", lw=1.2, zorder=1)
            ax.set_xlim(0, 1)
            ax.set_title(
                f"{name}\n{'outside the band' if miss else 'inside the band'}",
                fontsize=13,
                color=WARN_COLOR if miss else "black",
            )
            ax.tick_params(labelsize=11)
            if bottom[k]:
                ax.set_xlabel("fractional rank of the true value\n(0 to 1)", fontsize=13)
            if left[k]:
                ax.set_ylabel("ECDF − uniform CDF\n(fraction of replicates)", fontsize=13)
        n_rep = int(sbc.groupby("parameter")["replicate"].nunique().max())
        fig.legend(
            [Line2D([], [], color="#0072B2", lw=2.0), Patch(color="0.5", alpha=0.22, lw=0)],
            ["ECDF of the ranks minus the uniform CDF", f"{prob:.0%} simultaneous band under uniformity"],
            loc="outside lower center",
            ncols=2,
            fontsize=12,
        )
        _suptitle(fig, f"Simulation-based calibration: ECDF differences ({n_rep} replicates)", title_note)
    verdict = f"outside the band: {', '.join(outside)}" if outside else "every curve stays inside its band"
    return attach_caption(
        fig,
        f"Simulation-based calibration as ECDF differences (Säilynoja, Bürkner & Vehtari 2022): for each "
        f"parameter, the ECDF of the {n_rep} replicates' fractional ranks of the true value minus the "
        f"uniform CDF. A calibrated fit stays inside the grey {prob:.0%} simultaneous band (one test for "
        f"the whole curve, no bins); a curve above zero on the left and below on the right means "
        f"intervals too narrow (the truth often in a tail: a U-shaped rank histogram), below then "
        f"above means too wide (a hump), and a curve mostly on one side of zero a biased estimate. Here: {verdict}."
        + _flag_caption(title_note),
    )


# ----------------------------------------------------------------------------- 6. LOO


_SCALE_TEXT = {  # arviz.compare scale -> (what is plotted, direction, unit)
    "log": ("ELPD-LOO (expected log predictive density)", "higher = better", "nats"),
    "negative_log": ("−ELPD-LOO (negative log predictive density)", "lower = better", "nats"),
    "deviance": ("LOO deviance (−2 × ELPD)", "lower = better", "deviance units"),
}


def loo_comparison(
    compare_df: pd.DataFrame, *, title_note: str | None = None, integrated: bool = False, kind: str = "psis"
) -> Figure:
    """PSIS-LOO model comparison from :func:`arviz.compare`: ELPD ± SE per model (best on top),
    and the difference to the best model ± its SE (dse); models with a LOO warning are marked.

    ``integrated``: the table is of integrated LOO (each left-out patient's own parameters
    integrated over the population: how well a model predicts a new patient), said in the title
    and caption. ``kind="kfold"``: a K-fold table (:func:`plasticity_rl.kfold.kfold_table`,
    column ``elpd_kfold``; a warning marks a model some of whose refits failed diagnostics)."""
    if kind not in ("psis", "kfold"):
        raise ValueError(f"kind: got {kind!r}; allowed: psis, kfold")
    kfold = kind == "kfold"
    elpd = "elpd_kfold" if kfold else "elpd_loo"
    _require(compare_df, [elpd, "se", "elpd_diff", "dse"], "loo_comparison")
    df = compare_df.sort_values("rank") if "rank" in compare_df.columns else compare_df
    names = [str(i) for i in df.index]
    warn = df["warning"].astype(bool).to_numpy() if "warning" in df.columns else np.zeros(len(df), bool)
    failed = (
        ~df["diagnostics_passed"].astype(bool).to_numpy()
        if "diagnostics_passed" in df.columns
        else np.zeros(len(df), bool)
    )
    scale = str(df["scale"].iloc[0]) if "scale" in df.columns else "log"
    what, better, unit = _SCALE_TEXT.get(scale, _SCALE_TEXT["log"])
    if kfold:
        what = "ELPD, K-fold (expected log predictive density of left-out patients)"
    y = np.arange(len(df))
    height = max(4.8, 0.7 * len(df) + 3.0)
    with house_style():
        fig, axes = new_figure(1, 2, figsize=(FIGSIZE_WIDE[0], height), sharey=True)
        ax, dax = axes[0]
        for k in range(len(df)):
            c = WARN_COLOR if warn[k] else POINT_COLOR
            mfc = "white" if warn[k] else c
            point = dict(color=c, marker="o", ms=9, mfc=mfc, mew=2.0, lw=2.4, capsize=5, ls="none")
            ax.errorbar(df[elpd].iloc[k], y[k], xerr=df["se"].iloc[k], **point)
            dax.errorbar(df["elpd_diff"].iloc[k], y[k], xerr=df["dse"].iloc[k], **point)
        dax.axvline(0.0, color="0.3", ls="--", lw=1.4, zorder=0)
        if "weight" in df.columns:
            side = blended_transform_factory(dax.transAxes, dax.transData)
            for k in range(len(df)):
                dax.text(
                    1.03,
                    y[k],
                    f"{float(df['weight'].iloc[k]):.2f}",
                    transform=side,
                    ha="left",
                    va="center",
                    fontsize=13,
                )
            dax.text(1.03, 1.0, "weight", transform=dax.transAxes, ha="left", va="bottom", fontsize=13)
        ax.set_ylim(len(df) - 0.5, -0.5)  # best on top
        ticks = [
            n + ("\n(FAILED diagnostics)" if f else "") + ("  (warning)" if w else "")
            for n, w, f in zip(names, warn, failed)
        ]
        ax.set_yticks(y, ticks)
        for lab, w, f in zip(ax.get_yticklabels(), warn, failed):
            if f:
                lab.set_color(FAIL_COLOR)
                lab.set_fontweight("bold")
            elif w:
                lab.set_color(WARN_COLOR)
        for k in np.flatnonzero(failed):  # a cross over the point: this fit's place is not to be trusted
            for a, x in ((ax, df[elpd].iloc[k]), (dax, df["elpd_diff"].iloc[k])):
                a.plot(x, y[k], marker="X", ms=15, color=FAIL_COLOR, ls="none", zorder=5)
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
            labels.append(
                "some refits failed diagnostics: estimate unreliable"
                if kfold
                else "LOO warning (Pareto k too high): estimate unreliable"
            )
        if failed.any():
            handles.append(Line2D([], [], color=FAIL_COLOR, marker="X", ms=12, ls="none"))
            labels.append("the fit FAILED its diagnostics: its place in the ranking is unreliable")
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 2), fontsize=12)
        if kfold:
            n_folds = compare_df.attrs.get("k", "K")
            _suptitle(
                fig, f"Model comparison: {n_folds}-fold cross-validation by patient (refitted)", title_note
            )
            return attach_caption(
                fig,
                f"Model comparison by {n_folds}-fold cross-validation: the patients are split into folds "
                f"(stratified by arm, the same folds for every model); each model is refitted without each "
                f"fold, and the left-out patients' ratings are scored under the refit, their own parameters "
                f"integrated over the fitted population. Left: each model's {what} ({better}) with its "
                f"standard error, best model on top. Right: the difference to the best model with the "
                f"standard error of the difference (dse): a difference within about two dse of zero does "
                f"not separate the models. Models marked in orange (hollow) had refits that failed their "
                f"diagnostics." + _flag_caption(title_note),
            )
        kind_text = "a new patient's data, integrated PSIS-LOO" if integrated else "PSIS-LOO"
        _suptitle(
            fig, f"Model comparison: leave-one-patient-out predictive accuracy ({kind_text})", title_note
        )
    return attach_caption(
        fig,
        f"Model comparison by Pareto-smoothed importance-sampling leave-one-out cross-validation "
        f"(PSIS-LOO, arviz.compare). Left: each model's {what} ({better}) with its standard error, best "
        f"model on top. Right: the difference to the best model with the standard error of the "
        f"difference (dse), which is the uncertainty to judge a ranking by: a difference within about "
        f"two dse of zero does not separate the models. Numbers at the right: stacking weights. "
        f"Models marked in orange (hollow) have a LOO warning (some Pareto k too high), so their "
        f"estimate is unreliable."
        + (
            f" Crossed in red: {', '.join(n for n, f in zip(names, failed) if f)} FAILED its diagnostics "
            f"(diagnostics.json of its fit): its posterior, and so its place here, cannot be trusted."
            if failed.any()
            else ""
        )
        + (
            " Integrated LOO: the left-out patient's own parameters (baseline learning rate, ketamine "
            "boost, initial schema) are integrated over the fitted population distribution by "
            "importance sampling, so each model is scored on predicting a new patient's ratings."
            if integrated
            else ""
        )
        + _flag_caption(title_note),
    )


# ----------------------------------------------------------------------------- 7. traces and ranks

CHAIN_COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def trace_rank_plots(
    draws: dict[str, np.ndarray], units: dict[str, str] | None = None, *, title_note: str | None = None
) -> Figure:
    """Trace and rank plots of parameters sampled by several chains: one row per parameter.

    ``draws``: name -> (chain, draw) array; ``units``: name -> unit for the axis labels. Left:
    each chain's draws in order (they should overlap as one band, with no trend). Right: each
    chain's histogram of the ranks of its draws among all chains' (Vehtari et al. 2021): flat and
    alike if the chains sample one distribution, the dashed line the count a flat one would have.
    """
    if not draws:
        raise ValueError("trace_rank_plots: no parameters to draw")
    names = list(draws)
    n_chain, n_draw = np.asarray(draws[names[0]]).shape
    if n_chain < 2:
        raise ValueError("trace_rank_plots: rank plots need two or more chains")
    bins = max(5, min(20, n_draw // 25))
    units = units or {}
    with house_style():
        fig, axes = new_figure(
            len(names),
            2,
            figsize=(FIGSIZE_WIDE[0], 1.9 * len(names) + 1.6),
            gridspec_kw={"width_ratios": [2.2, 1]},
        )
        for row, name in enumerate(names):
            x = np.asarray(draws[name], np.float64)
            ranks = stats.rankdata(x.reshape(-1)).reshape(x.shape)
            tax, rax = axes[row]
            for c in range(n_chain):
                color = CHAIN_COLORS[c % len(CHAIN_COLORS)]
                tax.plot(np.arange(n_draw), x[c], color=color, lw=0.6, alpha=0.8)
                counts, edges = np.histogram(ranks[c], bins=bins, range=(0.5, x.size + 0.5))
                rax.stairs(counts, edges, color=color, lw=1.6)
            rax.axhline(n_draw / bins, color="0.3", ls="--", lw=1.2)
            unit = units.get(name, "")
            tax.set_ylabel(f"{name}\n({unit})" if unit else name, fontsize=11)
            rax.set_ylabel("draws per bin", fontsize=11)
            rax.set_ylim(bottom=0)
            if row == len(names) - 1:
                tax.set_xlabel("draw (after warm-up)")
                rax.set_xlabel(f"rank among all {x.size} draws")
        title(axes[0, 0], "trace: each chain's draws in order")
        title(axes[0, 1], "rank histogram per chain")
        handles = [Line2D([], [], color=CHAIN_COLORS[c % len(CHAIN_COLORS)], lw=2) for c in range(n_chain)]
        fig.legend(
            handles, [f"chain {c + 1}" for c in range(n_chain)], loc="outside lower center", ncols=n_chain
        )
        _suptitle(fig, "Sampler check: traces and rank plots of the group parameters", title_note)
    return attach_caption(
        fig,
        f"Trace (left) and rank (right) plots of the group-level parameters, {n_chain} chains of "
        f"{n_draw} draws after warm-up, one colour per chain. A sampler that has converged shows "
        f"traces that overlap as one band with no trend or stuck stretch, and rank histograms that "
        f"are flat and alike across chains (dashed: the count per bin of a flat one); a chain whose "
        f"ranks pile up at one end sampled a different region (Vehtari et al. 2021, Bayesian "
        f"Analysis 16:667). R-hat and ESS for every parameter are in diagnostics.json."
        + _flag_caption(title_note),
    )
