"""Lesson figures: they draw, carry captions, say what is a prediction and what is published data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plasticity_rl.config import bundled_config_path, config_from_dict, load_config
from plasticity_rl.lessons import timing_grid
from plasticity_rl.plots import (
    NOTE_GID,
    WINDOW_GID,
    caption_of,
    clinician_vs_published,
    default_patient,
    kernel_and_alpha,
    prediction_error_step,
    published_targets,
    render_lesson_figures,
    single_patient,
    timing_heatmap,
)
from plasticity_rl.simulate import simulate


def rendered(fig) -> np.ndarray:
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float)
    assert img.std() > 10.0, "figure renders (almost) blank"
    return img


def gids(fig, gid):
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]


@pytest.fixture(scope="module")
def single():
    data = load_config(bundled_config_path("single_infusion")).model_dump(mode="json")
    data["experiment"]["patients_per_arm"] = 4
    return simulate(config_from_dict(data))


def test_prediction_error_step_numbers():
    fig = prediction_error_step(alpha_low=0.1, alpha_high=0.5, V=0.25, outcome=1.0)
    rendered(fig)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "0.325" in texts and "0.625" in texts  # 0.25 + 0.1 * 0.75, 0.25 + 0.5 * 0.75
    assert "δ = +0.75" in texts
    assert "α = 0.1" in fig.axes[0].get_title() and "α = 0.5" in fig.axes[1].get_title()
    assert "not measured in humans" in caption_of(fig)
    with pytest.raises(ValueError, match="alpha_low"):
        prediction_error_step(alpha_low=0.0)


def test_kernel_and_alpha_shows_the_gate():
    fig = kernel_and_alpha()
    rendered(fig)
    gate_ax = next(ax for ax in fig.axes if "gate" in ax.get_title().lower())
    alpha_line = next(ln for ln in gate_ax.get_lines() if ln.get_label() == "α(t)")
    x, y = alpha_line.get_xdata(), alpha_line.get_ydata()
    before = y[x < 0].max()
    assert y[(x > 0.6) & (x < 0.75)].min() < 0.05 * before  # alpha dips to ~0 while dissociated
    assert len(fig.axes) == 5 and gids(fig, WINDOW_GID)
    cap = caption_of(fig)
    assert "diffexp" in cap.lower() or "difference of exponentials" in cap
    assert "not a measured value" in cap
    with pytest.raises(ValueError, match="no arm"):
        kernel_and_alpha({"single_infusion": "nope"})


def test_single_patient(flagship_sim):
    p = default_patient(flagship_sim)
    arm = flagship_sim.schedules.arm_names[flagship_sim.arm_index[p]]
    assert arm == "ketamine_cbt_window"
    fig = single_patient(flagship_sim)
    rendered(fig)
    assert f"id {p}" in fig.axes[0].get_title()
    legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert any("corrective" in t for t in legend) and any("went badly" in t for t in legend)
    assert gids(fig, WINDOW_GID)
    with pytest.raises(ValueError, match="patient must be"):
        single_patient(flagship_sim, 10_000)


def test_published_targets_are_packaged():
    df = published_targets()
    lii = df[df["group"] == "lii2023"]
    assert len(lii) == 14 and set(lii["arm"]) == {"ketamine", "placebo"}
    row = df.set_index("id").loc["lii2023_k1"]
    assert row["mean"] == 12.7 and row["n"] == 20 and row["sem"] == pytest.approx(7.6 / np.sqrt(20))
    m = df.set_index("id").loc["murrough2013a_k24"]
    assert m["mean"] == -16.5 and m["time_days"] == 1.0
    assert df["study"].str.len().min() > 5 and "grade" in df.columns  # sources kept


def test_clinician_vs_published(single, flagship_sim, tmp_path):
    fig = clinician_vs_published(single)
    rendered(fig)
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    assert "published: Lii et al. 2023" in legend and "Murrough et al. 2013" in legend
    assert "PUBLISHED" in caption_of(fig)
    paths = render_lesson_figures(single, tmp_path, formats=("png",))
    assert {p.name for p in paths} == {"single_patient.png", "clinician_vs_published.png"}
    assert "## clinician_vs_published" in (tmp_path / "captions.md").read_text()
    sweep_like = load_config(bundled_config_path("timing_sweep"))
    assert sweep_like.observations.visits.enabled is False  # no visits: the comparison does not apply


def test_timing_heatmap_from_a_grid():
    delays = [-3.0, 0.0, 1.0, 2.0, 7.0]
    rows = [
        {
            "A_mean": A,
            "delay_days": d,
            "V_followup": 0.3,
            "V_no_therapy": 0.25,
            "benefit": 0.05 + 0.04 * A * np.exp(-((d - 1.0) ** 2)),
            "n_patients": 3,
        }
        for A in (0.0, 2.0, 4.0)
        for d in delays
    ]
    fig = timing_heatmap(pd.DataFrame(rows))
    rendered(fig)
    assert gids(fig, NOTE_GID)
    assert "MODEL PREDICTION" in caption_of(fig) and "not a trial result" in caption_of(fig)
    star = next(ln for ln in fig.axes[1].get_lines() if ln.get_label() == "best delay for this A")
    assert list(star.get_xdata())[1:] == [1.0, 1.0]


def test_timing_grid_small():
    grid = timing_grid(A_means=(0.0, 4.0), patients_per_arm=4)
    table = grid.pivot(index="A_mean", columns="delay_days", values="benefit")
    assert table.shape == (2, 13)
    # a bigger boost makes therapy inside the window (day +1) worth more, and timing matter more
    assert table.loc[4.0, 1.0] > table.loc[0.0, 1.0] + 0.05
    assert np.ptp(table.loc[4.0]) > 2 * np.ptp(table.loc[0.0])
