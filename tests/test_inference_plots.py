"""Fit-result figures from small synthetic tables: labels, legends, the window, the fit flag, pixels.

No fitting and no JAX work: every table is built here with the columns the analysis, recovery
and SBC code (and arviz.compare) produce.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from plasticity_rl.plots import (
    TITLE_NOTE_COLOR,
    TITLE_NOTE_GID,
    WINDOW_GID,
    arm_colors,
    caption_of,
    contrast_forest,
    figure_title,
    loo_comparison,
    posterior_belief_curves,
    recovery_scatter,
    sbc_ecdf,
    sbc_ranks,
    window_posterior,
)
from plasticity_rl.plots.style import WINDOW_ALPHA, WINDOW_COLOR

ARMS = ["placebo", "ketamine", "ketamine_cbt_window", "ketamine_cbt_delayed", "cbt_alone"]
LABELS = {a: a.replace("_", " ").upper() for a in ARMS}
WINDOW = [(7.75, 9.6)]
NOTE = "FIT FAILED DIAGNOSTICS: R-hat 1.05"
DAYS = 12  # short series keep the tests fast; the figures do not depend on the length
WINDOW_DAYS = 16  # alpha(t): long enough that the zoom (raised days +- 2) is narrower than the run


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def curves():
    rows = []
    for belief, (k, a) in itertools.product(("V", "S"), enumerate(ARMS)):
        for day in np.arange(DAYS + 1, dtype=float):
            m = 0.3 + 0.04 * k * (day > 8) + (0.02 if belief == "V" else 0.0)
            rows.append(
                {"belief": belief, "arm": a, "day": day, "mean": m, "hdi_low": m - 0.03, "hdi_high": m + 0.03}
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def contrasts(rng):
    rows = []
    for belief, (a, b), day in itertools.product(
        ("V", "S"), itertools.combinations(ARMS[:3], 2), (9.0, 12.0)
    ):
        m = float(rng.normal(0, 0.1))
        rows.append(
            {
                "belief": belief,
                "arm_a": a,
                "arm_b": b,
                "day": day,
                "mean": m,
                "sd": 0.05,
                "hdi_94%_low": m - 0.1,
                "hdi_94%_high": m + 0.1,
                "p_gt_0": float(rng.uniform()),
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def window_table():
    spd = 8
    steps = np.arange(WINDOW_DAYS * spd)
    rows = []
    for a in ARMS:
        dosed = a.startswith("ketamine")
        for j in steps:
            day = j / spd
            alpha = 0.01 + (0.12 * np.exp(-((day - 8.5) ** 2) / 0.3) if dosed else 0.0)
            if dosed and j == 7 * spd + 3:
                alpha *= 0.75  # the gated infusion step
            rows.append(
                {
                    "arm": a,
                    "step": int(j),
                    "day": day,
                    "alpha_mean": alpha,
                    "hdi_low": 0.7 * alpha,
                    "hdi_high": 1.4 * alpha,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def recovery(rng):
    rows = []
    for level, name, n in (("group", "mu_A", 12), ("group", "phi", 12), ("patient", "A", 300)):
        t = rng.normal(2.0, 0.5, n)
        m = t + rng.normal(0, 0.2, n)
        rows += [
            {
                "level": level,
                "parameter": name,
                "true": ti,
                "mean": mi,
                "sd": 0.18,
                "low": mi - 0.3,
                "high": mi + 0.3,
            }
            for ti, mi in zip(t, m)
        ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def sbc(rng):
    rows = [
        {"parameter": p, "replicate": f"sbc-{r:04d}", "rank": int(rng.integers(0, 100)), "n_draws": 99}
        for p in ("mu_A", "tau_A", "phi")
        for r in range(60)
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def compare_df():
    return pd.DataFrame(
        {
            "rank": [0, 1, 2],
            "elpd_loo": [-100.0, -104.0, -130.0],
            "p_loo": [12.0, 10.0, 8.0],
            "elpd_diff": [0.0, 4.0, 30.0],
            "weight": [0.8, 0.2, 0.0],
            "se": [5.0, 5.5, 6.0],
            "dse": [0.0, 2.0, 4.0],
            "warning": [False, True, False],
            "scale": ["log"] * 3,
        },
        index=["schema", "schema_asym", "rw"],
    )


def build(name, tables, **kw):
    """Call figure function ``name`` on its synthetic table(s)."""
    if name == "posterior_belief_curves":
        return posterior_belief_curves(tables["curves"], LABELS, WINDOW, **kw)
    if name == "contrast_forest":
        return contrast_forest(tables["contrasts"], **kw)
    if name == "window_posterior":
        return window_posterior(tables["window"], LABELS, **kw)
    if name == "recovery_scatter":
        return recovery_scatter(tables["recovery"], **kw)
    if name == "sbc_ranks":
        return sbc_ranks(tables["sbc"], **kw)
    if name == "sbc_ecdf":
        return sbc_ecdf(tables["sbc"], **kw)
    return loo_comparison(tables["compare"], **kw)


NAMES = [
    "posterior_belief_curves",
    "contrast_forest",
    "window_posterior",
    "recovery_scatter",
    "sbc_ranks",
    "sbc_ecdf",
    "loo_comparison",
]


@pytest.fixture(scope="module")
def tables(curves, contrasts, window_table, recovery, sbc, compare_df):
    return {
        "curves": curves,
        "contrasts": contrasts,
        "window": window_table,
        "recovery": recovery,
        "sbc": sbc,
        "compare": compare_df,
    }


def legend_texts(fig: Figure) -> list[str]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [t.get_text() for leg in legends if leg is not None for t in leg.get_texts()]


def legend_colors(fig: Figure) -> dict[str, str]:
    out = {}
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is not None:
            for h, t in zip(leg.legend_handles, leg.get_texts()):
                if hasattr(h, "get_color"):
                    out[t.get_text()] = to_hex(h.get_color())
    return out


def assert_not_blank(fig: Figure) -> None:
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    assert img.std() > 10.0, "figure looks blank"
    assert (img.mean(axis=2) < 128).mean() > 0.005, "almost nothing dark drawn"


def labelled(fig: Figure) -> tuple[list[str], list[str]]:
    xs = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
    ys = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    return xs, ys


@pytest.mark.parametrize("name", NAMES)
def test_every_figure_renders_with_caption_labels_and_title(name, tables):
    fig = build(name, tables)
    assert isinstance(fig, Figure)
    assert len(caption_of(fig)) > 80
    xs, ys = labelled(fig)
    assert xs and ys, f"{name}: unlabelled axes"
    assert all("(" in x for x in xs), f"{name}: x label without units: {xs}"
    assert figure_title(fig)
    assert not [a for a in fig.artists if a.get_gid() == TITLE_NOTE_GID]
    assert NOTE not in figure_title(fig)
    assert_not_blank(fig)


@pytest.mark.parametrize("name", NAMES)
def test_title_note_is_in_the_title_in_red(name, tables):
    fig = build(name, tables, title_note=NOTE)
    assert NOTE in figure_title(fig)
    notes = [a for a in fig.artists if a.get_gid() == TITLE_NOTE_GID]
    assert len(notes) == 1 and to_hex(notes[0].get_color()) == TITLE_NOTE_COLOR.lower()
    assert "failed its diagnostics" in caption_of(fig)
    fig.canvas.draw()
    # the note sits above the title and inside the canvas
    r = fig.canvas.get_renderer()
    note_box, title_box = notes[0].get_window_extent(r), fig._suptitle.get_window_extent(r)
    assert note_box.y0 >= title_box.y0 and note_box.y1 <= fig.bbox.height + 1
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 60) & (img[..., 2] < 60)
    assert red.sum() > 50, "no red pixels for the fit flag"


def test_belief_curves_panels_legend_and_window(tables):
    fig = build("posterior_belief_curves", tables)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["V: day-to-day expectation (mood)", "S: core belief (schema)"]
    assert axes[0].get_xlabel() == "time (days)"
    assert axes[0].get_ylabel() == "belief (probability an experience goes well)"
    texts = legend_texts(fig)
    for a in ARMS:
        assert texts.count(LABELS[a]) == 1
    colors = legend_colors(fig)
    assert [colors[LABELS[a]] for a in ARMS] == [to_hex(arm_colors(ARMS)[a]) for a in ARMS]
    spans = [a for ax in axes for a in ax.get_children() if a.get_gid() == WINDOW_GID]
    assert len(spans) == 2  # one span per panel
    for s in spans:
        assert to_hex(s.get_facecolor()) == to_hex(WINDOW_COLOR) and s.get_alpha() == WINDOW_ALPHA
        x = s.get_x() if hasattr(s, "get_x") else s.get_xy()[0][0]
        assert x == pytest.approx(7.75)
    assert "plasticity window" in texts


def test_belief_curves_without_window_or_labels(tables):
    fig = posterior_belief_curves(tables["curves"][tables["curves"]["belief"] == "V"])
    assert len(fig.axes) == 1
    assert not [a for a in fig.axes[0].get_children() if a.get_gid() == WINDOW_GID]
    assert set(ARMS) <= set(legend_texts(fig))


def test_contrast_forest_rows_zero_line_and_probabilities(tables):
    df = tables["contrasts"]
    fig = contrast_forest(df, title_note=None)
    assert figure_title(fig) == "Differences between arms (posterior, 94% HDI)"
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert len(ax.get_yticks()) == 3  # three pairs
    n_rows = len(df[df["belief"] == "V"])
    p_texts = [t for t in ax.texts if t.get_text() not in ("P(diff > 0)",)]
    assert len(p_texts) == n_rows
    assert any(t.get_text() == "P(diff > 0)" for t in ax.texts)
    assert any(np.allclose(line.get_xdata(), 0.0) for line in ax.get_lines())
    assert {"day 9", "day 12"} <= set(legend_texts(fig))


def test_window_posterior_zoom_bands_and_legend(tables):
    fig = build("window_posterior", tables)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert 5.0 <= lo <= 6.0 and 11.0 <= hi <= 12.5  # the raised days (~7.5-9.5) +- 2 days, not days 0-16
    assert ax.get_ylabel() == "learning rate α (per experience)"
    texts = legend_texts(fig)
    for a in ARMS:
        assert LABELS[a] in texts
    assert "striped: arms with the same α(t)" in texts  # three ketamine arms share one alpha(t)
    assert len(ax.collections) == 1  # one band for the shared ketamine curve, none for baseline arms
    assert len(ax.get_lines()) == len(ARMS)


def test_window_posterior_flat_alpha_shows_everything(tables):
    flat = tables["window"].assign(alpha_mean=0.01, hdi_low=0.009, hdi_high=0.011)
    fig = window_posterior(flat)
    lo, hi = fig.axes[0].get_xlim()
    assert lo == pytest.approx(0.0) and hi == pytest.approx(WINDOW_DAYS)
    assert not fig.axes[0].collections


def test_recovery_scatter_titles_and_identity(tables):
    from plasticity_rl.recovery import expected_r

    rec = tables["recovery"]
    fig = build("recovery_scatter", tables)
    assert len(fig.axes) == 3
    for ax, (name, g) in zip(fig.axes, rec.groupby("parameter", sort=False)):
        r = np.corrcoef(g["true"], g["mean"])[0, 1]
        cover = ((g["true"] >= g["low"]) & (g["true"] <= g["high"])).mean()
        assert ax.get_title().startswith(name)
        assert f"r = {r:.2f}" in ax.get_title() and f"{cover:.0%}" in ax.get_title()
        # per-patient panels also give the r the posteriors' widths allow; group panels do not
        expected = f"(expected {expected_r(g['true'].to_numpy(), g['sd'].to_numpy()):.2f})"
        assert (expected in ax.get_title()) == (g["level"].iloc[0] == "patient")
    texts = legend_texts(fig)
    assert any(t.startswith("group-level") for t in texts) and any(
        t.startswith("patient-level") for t in texts
    )
    fig2 = recovery_scatter(rec.drop(columns="level"))  # level is optional
    assert len(fig2.axes) == 3


def test_sbc_ranks_bins_expectation_and_pvalue(tables):
    from scipy.stats import chisquare

    s = tables["sbc"]
    fig = build("sbc_ranks", tables)
    assert len(fig.axes) == 3
    g = s[s["parameter"] == "mu_A"]
    bins = max(2, min(20, len(g) // 5))
    counts, _ = np.histogram(g["rank"], bins=bins, range=(0, 100))
    ax = fig.axes[0]
    bars = ax.containers[0]
    assert len(bars) == bins
    assert [p.get_height() for p in bars] == list(counts)
    p = chisquare(counts).pvalue
    assert (f"p = {p:.2f}" if p >= 0.01 else "p < 0.01") in ax.get_title()
    assert any(np.allclose(line.get_ydata(), len(g) / bins) for line in ax.get_lines())


def test_sbc_ecdf_flags_a_miscalibrated_parameter_and_passes_a_calibrated_one():
    rng = np.random.default_rng(0)
    n, L = 200, 99
    ranks = {
        "calibrated": rng.integers(0, L + 1, n),  # uniform ranks
        "too_wide": np.clip(rng.normal(50, 12, n).round(), 0, L),  # a hump: intervals too wide
    }
    sbc = pd.DataFrame(
        [
            {"parameter": p, "replicate": f"sbc-{i:04d}", "rank": int(r), "n_draws": L}
            for p, rs in ranks.items()
            for i, r in enumerate(rs)
        ]
    )
    fig = sbc_ecdf(sbc)
    titles = {ax.get_title().split("\n")[0]: ax.get_title() for ax in fig.axes if ax.get_title()}
    assert titles["calibrated"].endswith("inside the band")
    assert titles["too_wide"].endswith("outside the band")
    assert "outside the band: too_wide" in caption_of(fig)


def test_loo_comparison_best_on_top_and_warning(tables):
    fig = build("loo_comparison", tables)
    ax, dax = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "schema" and "schema_asym" in labels[1] and "warning" in labels[1]
    assert ax.yaxis_inverted()  # row 0 (the best model) on top
    assert "higher = better" in ax.get_xlabel()
    assert any("LOO warning" in t for t in legend_texts(fig))
    assert [t.get_text() for t in dax.texts][:1] == ["0.80"]


def test_missing_columns_are_reported(tables):
    with pytest.raises(ValueError, match="hdi_low"):
        posterior_belief_curves(tables["curves"].drop(columns="hdi_low"))
    with pytest.raises(ValueError, match="n_draws"):
        sbc_ranks(tables["sbc"].drop(columns="n_draws"))
