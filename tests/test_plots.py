"""Teaching figures: labels, legends, the shaded window, non-blank images, files on disk."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from plasticity_rl.config import bundled_config_path, config_from_dict, load_config
from plasticity_rl.plots import (
    NOTE_GID,
    OKABE_ITO,
    SESSION_GID,
    WINDOW_GID,
    alpha_curves,
    applicable_figures,
    belief_curves,
    caption_of,
    clinician_scores,
    render_figures,
    timing_curve,
    window_spans,
)
from plasticity_rl.simulate import simulate

PATIENTS = (
    4  # per arm: shapes shared with tests/conftest.py and tests/test_experiments.py (JAX compiles once)
)


def small_sim(name: str, patients: int = PATIENTS):
    data = load_config(bundled_config_path(name)).model_dump(mode="json")
    data["experiment"]["patients_per_arm"] = patients
    for arm in data["arms"]:
        arm["patients"] = None
    return simulate(config_from_dict(data))


@pytest.fixture(scope="module")
def flagship(flagship_sim):
    """The session-wide small flagship cohort of tests/conftest.py (4 patients per arm)."""
    return flagship_sim


@pytest.fixture(scope="module")
def sweep():
    return small_sim("timing_sweep")


def labels(sim):
    return [a.label or a.name for a in sim.config.all_arms()]


def window_artists(fig: Figure, gid: str = WINDOW_GID):
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]


def legend_texts(fig: Figure) -> list[str]:
    out = []
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is not None:
            out += [t.get_text() for t in leg.get_texts()]
    return out


def assert_not_blank(fig: Figure):
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 10.0, "figure renders (almost) blank"
    # some non-grey colour drawn (the arms), not only text and axes
    assert np.abs(img - img.mean(axis=2, keepdims=True)).max() > 50


def assert_axes_labelled(fig: Figure, skip_twins: bool = True):
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        assert ax.get_xlabel() or ax.get_shared_x_axes().get_siblings(ax) != [ax], "x axis without a label"
    assert any(ax.get_ylabel() for ax in fig.axes)
    assert all(
        ax.get_xlabel()
        for ax in fig.axes
        if ax.get_xlabel() is not None
        and ax.get_subplotspec() is not None
        and ax.get_subplotspec().is_last_row()
    )


def test_window_spans_half_maximum_of_one_gamma_dose(flagship):
    # dose day 7 10:00 lands on the 09:00 step; g >= 50% of peak from ~8.75 h to ~51 h after it
    spans = window_spans(flagship)
    assert len(spans) == 1
    start, end = spans[0]
    assert start == pytest.approx(7 + 18 / 24)
    assert end == pytest.approx(7 + 63 / 24)
    assert window_spans(flagship, arms=["placebo", "cbt_alone"]) == []
    with pytest.raises(ValueError, match="unknown arm"):
        window_spans(flagship, arms=["nope"])


@pytest.mark.parametrize("make", [alpha_curves, belief_curves, clinician_scores])
def test_time_course_figures(flagship, make):
    fig = make(flagship)
    assert isinstance(fig, Figure)
    assert caption_of(fig) and "window" in caption_of(fig)
    assert_axes_labelled(fig)
    texts = legend_texts(fig)
    for lab in labels(flagship):
        assert texts.count(lab) == 1, f"legend should name arm {lab!r} once: {texts}"
    assert window_artists(fig), "plasticity window not shaded"
    assert window_artists(fig, SESSION_GID), "therapy sessions not marked"
    assert_not_blank(fig)


def test_arm_colours_follow_config_order(flagship):
    fig = belief_curves(flagship)
    leg = fig.axes[-1].get_legend()
    by_label = {
        t.get_text(): to_hex(h.get_color())
        for t, h in zip(leg.get_texts(), leg.legend_handles)
        if t.get_text() in labels(flagship)
    }
    assert [by_label[lab] for lab in labels(flagship)] == [
        c.lower() for c in OKABE_ITO[: len(labels(flagship))]
    ]


def test_belief_curves_subset_and_labels(flagship):
    fig = belief_curves(flagship, beliefs=("V",), arms=["placebo", "ketamine"])
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert "belief" in ax.get_ylabel() and "days" in ax.get_xlabel()
    assert legend_texts(fig)[:2] == ["placebo infusion", "ketamine alone"]
    assert "percentile" in caption_of(fig)


def test_timing_curve(sweep):
    fig = timing_curve(sweep)
    assert_axes_labelled(fig)
    assert "not a trial result" in caption_of(fig)
    notes = window_artists(fig, NOTE_GID)
    assert notes and "PREDICTION" in notes[0].get_text()
    assert window_artists(fig)
    texts = legend_texts(fig)
    assert any("no therapy" in t for t in texts)
    ax = fig.axes[0]
    assert "follow-up" in ax.get_ylabel() and "delay" in fig.axes[1].get_xlabel()
    assert_not_blank(fig)


def test_timing_curve_needs_a_sweep(flagship):
    with pytest.raises(ValueError, match="timing_sweep"):
        timing_curve(flagship)


def test_render_figures(flagship, sweep, tmp_path):
    paths = render_figures(flagship, tmp_path / "flag", formats=("png",))
    assert sorted(p.name for p in paths) == ["alpha_curves.png", "belief_curves.png", "clinician_scores.png"]
    assert all(p.stat().st_size > 5000 for p in paths)
    assert "## belief_curves" in (tmp_path / "flag" / "captions.md").read_text()
    assert "timing_curve" in applicable_figures(sweep)
    assert "clinician_scores" not in applicable_figures(sweep)  # visits disabled in the sweep
    paths = render_figures(sweep, tmp_path / "sweep", formats=("svg",))
    assert {p.name for p in paths} == {"alpha_curves.svg", "belief_curves.svg", "timing_curve.svg"}
    assert (tmp_path / "sweep" / "timing_curve.svg").read_text().lstrip().startswith("<?xml")


def test_good_and_bad_news_figure_for_asymmetric_learning(flagship):
    from plasticity_rl.plots import good_and_bad_news

    sim = small_sim("asymmetric")
    assert "good_and_bad_news" in applicable_figures(sim)
    assert "good_and_bad_news" not in applicable_figures(flagship)  # one α: nothing to balance
    fig = good_and_bad_news(sim)
    assert_axes_labelled(fig)
    assert window_artists(fig) and "window" in caption_of(fig)
    texts = legend_texts(fig)
    assert "α⁺ (good news)" in texts and "α⁻ (bad news)" in texts
    for lab in labels(sim):
        assert texts.count(lab) == 1
    (ratio,) = [ln.get_ydata() for ln in fig.axes[1].get_lines() if ln.get_label() == "ketamine"]
    assert ratio[0] < 1.0 < ratio.max()  # bad news wins at baseline, good news in the window
    assert_not_blank(fig)
    with pytest.raises(ValueError, match="asymmetric variant"):
        good_and_bad_news(flagship)
