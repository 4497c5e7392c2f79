"""The lesson figures every run draws beside its own: one patient's story, published scores.

- :func:`single_patient`: one simulated patient's V and S, with the everyday outcomes and the
  sessions they experienced (the figure that makes a cohort's means concrete);
- ``clinician_vs_published`` (:mod:`plasticity_rl.plots.validation`), where the design matches
  published trials.

:func:`render_lesson_figures` saves those that apply to a simulation into its figures folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from plasticity_rl.plots.figures import DAYS_LABEL, _belief_series
from plasticity_rl.plots.lesson import BAD, GOOD, S_COLOR, V_COLOR
from plasticity_rl.plots.style import (
    WINDOW_FRACTION,
    arm_labels,
    arm_names,
    attach_caption,
    house_style,
    new_figure,
    reserve_session_zone,
    shade_window,
    sim_arm_colors,
    title,
)

if TYPE_CHECKING:
    from plasticity_rl.simulate import Simulation


def default_patient(sim: Simulation) -> int:
    """The first patient of the first arm with both a ketamine dose and therapy (else sessions, else 0)."""
    sch = sim.schedules
    dosed = (sch.dose_amounts > 0).any(axis=1)
    therapy = (sch.session_n > 0).any(axis=1)
    for want in (dosed & therapy, therapy, dosed):
        arms = np.flatnonzero(want)
        if arms.size:
            return int(np.flatnonzero(sim.arm_index == arms[0])[0])
    return 0


def single_patient(sim: Simulation, patient: int | None = None, *, frac: float = WINDOW_FRACTION) -> Figure:
    """V and S of one simulated patient, with what they experienced.

    Bottom row: each everyday outcome as a tick (up: went well, 1; down: went badly, 0);
    corrective experiences of therapy sessions as diamonds stacked above/below at the session.
    ``patient`` is the patient id (row of the simulation); default :func:`default_patient`.
    """
    N = sim.n_patients
    patient = default_patient(sim) if patient is None else int(patient)
    if not 0 <= patient < N:
        raise ValueError(f"patient must be in 0..{N - 1}, got {patient}")
    names = arm_names(sim)
    arm = names[int(sim.arm_index[patient])]
    label = arm_labels(sim)[arm]
    color = sim_arm_colors(sim)[arm]
    color = color if color != "#000000" else "#0072B2"
    spd = sim.schedules.steps_per_day
    days = sim.config.experiment.days
    ex = sim.experiences
    tr = sim.trajectory
    t_V, V = _belief_series(sim, "V")
    _, S = _belief_series(sim, "S")
    t_step = np.arange(tr.V.shape[1]) / spd
    with house_style():
        fig, axes = new_figure(3, 1, figsize=(14.0, 9.0), sharex=True, height_ratios=[3.0, 1.0, 1.5])
        b_ax, a_ax, e_ax = axes[:, 0]
        for ax in axes[:, 0]:
            ax.set_xlim(0, days)
        marks = shade_window(b_ax, sim, arms=[arm], frac=frac)
        shade_window(a_ax, sim, arms=[arm], frac=frac, doses=False, sessions=False)
        shade_window(e_ax, sim, arms=[arm], frac=frac, doses=False, sessions=False)
        handles, labels = [], []
        (h,) = b_ax.plot(t_V, V[patient], color=V_COLOR, lw=2.2)
        handles.append(h), labels.append("V: day-to-day expectation")
        if sim.model.has_schema:
            (h,) = b_ax.plot(t_V, S[patient], color=S_COLOR, lw=2.8)
            handles.append(h), labels.append("S: core belief (schema)")
        b_ax.margins(y=0.08)
        b_ax.autoscale_view()
        reserve_session_zone(b_ax)
        b_ax.set_ylabel("belief")
        title(b_ax, f"One simulated patient (id {patient}): {label}")
        b_ax.legend(
            handles + [m[0] for m in marks],
            labels + [m[1] for m in marks],
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
            fontsize=11,
        )

        a_ax.plot(
            t_step, np.asarray(tr.alpha[patient], np.float64), color=color, lw=1.8, drawstyle="steps-post"
        )
        a_ax.set_ylim(0, None)
        a_ax.set_ylabel("α")

        o = np.asarray(ex.everyday[patient], np.float64)
        x = t_step + 0.5 / spd
        up, down = o > 0.5, o <= 0.5
        e_ax.vlines(x[up], 0, 1, color=GOOD, lw=0.8)
        e_ax.vlines(x[down], -1, 0, color=BAD, lw=0.8)
        e_ax.axhline(0, color="0.3", lw=0.8)
        n_corr = np.asarray(ex.n_corr[patient])
        cs = np.asarray(ex.corrective[patient])
        at = np.flatnonzero(n_corr > 0)
        cx_good, cy_good, cx_bad, cy_bad = [], [], [], []
        for j in at:
            c = cs[j, : n_corr[j]]
            g, b = int((c > 0.5).sum()), int((c <= 0.5).sum())
            cx_good += [t_step[j] + 0.5 / spd] * g
            cy_good += list(1.35 + 0.3 * np.arange(g))
            cx_bad += [t_step[j] + 0.5 / spd] * b
            cy_bad += list(-1.35 - 0.3 * np.arange(b))
        e_ax.plot(cx_good, cy_good, ls="none", marker="D", ms=5, color=GOOD, mec="k", mew=0.6)
        e_ax.plot(cx_bad, cy_bad, ls="none", marker="D", ms=5, color=BAD, mec="k", mew=0.6)
        n_max = int(max(n_corr.max(initial=0), 1))
        lim = 1.35 + 0.3 * n_max if at.size else 1.2
        e_ax.set_ylim(-lim, lim)
        e_ax.set_yticks([-0.5, 0.5], ["bad", "good"])
        e_ax.grid(axis="y", visible=False)
        e_ax.set_ylabel("experiences")
        e_ax.set_xlabel(DAYS_LABEL)
        ev = [Line2D([], [], color=GOOD, lw=2), Line2D([], [], color=BAD, lw=2)]
        ev_l = ["everyday: went well (1)", "everyday: went badly (0)"]
        if at.size:
            ev += [
                Line2D([], [], ls="none", marker="D", ms=6, color=GOOD, mec="k", mew=0.6),
                Line2D([], [], ls="none", marker="D", ms=6, color=BAD, mec="k", mew=0.6),
            ]
            ev_l += ["corrective (session): went well", "corrective (session): went badly"]
        e_ax.legend(ev, ev_l, loc="upper left", bbox_to_anchor=(1.01, 1.05), borderaxespad=0.0, fontsize=11)
    n_good = int(o.sum())
    return attach_caption(
        fig,
        f"One simulated patient (id {patient}, arm '{label}'). Top: V, the day-to-day expectation that an "
        f"experience goes well, and S, the slow core belief V relaxes toward. Middle: the learning rate α at "
        f"each {24 / spd:g} h step. Bottom: every everyday experience as a tick, up if it went well "
        f"({n_good} of {o.size}), down if it went badly; diamonds stacked at a therapy session are its "
        f"corrective experiences. Shaded: the plasticity window. While α is high, each experience moves V "
        f"more; corrective experiences delivered then also move S, so the gain lasts. Simulated data from "
        f"the model, not a real patient.",
    )


def lesson_figures_for(sim: Simulation) -> list[str]:
    """Names of the per-simulation lesson figures that apply to ``sim`` (cheap: no extra simulation)."""
    from plasticity_rl.plots.validation import published_comparison_applies

    out = ["single_patient"]
    if published_comparison_applies(sim):
        out.append("clinician_vs_published")
    return out


def render_lesson_figures(
    sim: Simulation, out_dir: str | Path, formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """Save the lesson figures that apply to ``sim`` beside the run's figures; return the paths.

    Appends a section per figure to ``out_dir/captions.md`` (the file :func:`render_figures` writes),
    so a report picks the captions up. Not part of :func:`render_figures` itself.
    """
    from plasticity_rl.plots.figures import save_figure
    from plasticity_rl.plots.style import caption_of
    from plasticity_rl.plots.validation import clinician_vs_published

    makers = {"single_patient": single_patient, "clinician_vs_published": clinician_vs_published}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    captions_md = out_dir / "captions.md"
    text = (
        captions_md.read_text() if captions_md.is_file() else f"# Figures of {sim.config.experiment.name}\n\n"
    )
    paths: list[Path] = []
    for name in lesson_figures_for(sim):
        fig = makers[name](sim)
        paths += save_figure(fig, out_dir, name, formats)
        text = text.rstrip("\n") + f"\n\n## {name}\n\n{caption_of(fig)}\n"
        fig.clear()
    captions_md.write_text(text)
    return paths
