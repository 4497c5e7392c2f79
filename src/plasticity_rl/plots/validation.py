"""Simulated clinician scores against published group means (the calibration targets).

The published numbers ship with the package (``plasticity_rl/validation_targets.csv``, read by
:func:`plasticity_rl.validation.published_targets`), so the figure needs nothing outside the
installed package; ``plasticity-rl check-targets`` scores the same rows as hit or miss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from plasticity_rl.plots.figures import SCORE_LABEL, Z95
from plasticity_rl.plots.style import (
    arm_labels,
    arm_names,
    attach_caption,
    house_style,
    new_figure,
    shade_window,
    sim_arm_colors,
    title,
)
from plasticity_rl.validation import published_targets, single_infusion_arms

if TYPE_CHECKING:
    from plasticity_rl.simulate import Simulation


def _single_dose_arms(sim: Simulation) -> tuple[int | None, int | None]:
    """(ketamine arm, placebo arm) indices: :func:`plasticity_rl.validation.single_infusion_arms`."""
    names = arm_names(sim)
    return tuple(None if a is None else names.index(a) for a in single_infusion_arms(sim.config))


def published_comparison_applies(sim: Simulation) -> bool:
    """True when the simulation has visits, a one-infusion ketamine arm and a placebo-infusion arm."""
    if not (sim.config.observations.visits.enabled and sim.visits.shape[1]):
        return False
    ket, plc = _single_dose_arms(sim)
    return ket is not None and plc is not None


def clinician_vs_published(
    sim: Simulation, *, ketamine_arm: str | None = None, placebo_arm: str | None = None
) -> Figure:
    """Simulated MADRS-like scores per arm against published group means (Lii 2023; Murrough 2013).

    Designed for ``configs/single_infusion.yaml``; any simulation with clinician visits, an arm with
    one ketamine infusion and an arm with a placebo infusion works (chosen automatically, or named).
    Left: absolute scores, days after the infusion. Right: change from the last visit before it.
    """
    names = arm_names(sim)
    ket_i, plc_i = _single_dose_arms(sim)
    if ketamine_arm is not None:
        ket_i = names.index(ketamine_arm) if ketamine_arm in names else None
    if placebo_arm is not None:
        plc_i = names.index(placebo_arm) if placebo_arm in names else None
    if ket_i is None or plc_i is None or not (sim.config.observations.visits.enabled and sim.visits.shape[1]):
        raise ValueError(
            f"clinician_vs_published needs clinician visits, an arm with one ketamine infusion and an arm with a "
            f"placebo infusion (e.g. configs/single_infusion.yaml); {sim.config.experiment.name!r} has arms {names}"
        )
    sch = sim.schedules
    dose_day = float(sch.dose_hours[ket_i][sch.dose_amounts[ket_i] > 0][0]) / 24.0
    vdays = np.asarray(sim.visit_days, np.float64)
    rel = vdays - dose_day
    pre = np.flatnonzero(rel < 0)
    base_k = int(pre[-1]) if pre.size else 0
    colors, labels = sim_arm_colors(sim), arm_labels(sim)

    def stats(values):
        n = np.sum(~np.isnan(values), axis=0)
        mean = np.nanmean(values, axis=0)
        sd = np.nanstd(values, axis=0, ddof=1)
        return mean, Z95 * np.nan_to_num(sd) / np.sqrt(np.maximum(n, 1))

    pub = published_targets()
    lii = pub[pub["group"] == "lii2023"]
    mur = pub[(pub["group"] == "murrough2013a") & (pub["statistic"] == "change")]
    lii_src = lii["source"].iloc[0] if len(lii) else ""
    mur_src = mur["source"].iloc[0] if len(mur) else ""
    hi_x = min(float(rel.max()), max(15.0, float(lii["time_days"].max() if len(lii) else 0) + 1.0)) + 0.5

    with house_style():
        fig, axes = new_figure(1, 2, figsize=(15.0, 6.5))
        handles, hlabels = [], []
        for p, ax in enumerate(axes[0]):
            ax.set_xlim(-1.0, hi_x)
            marks = shade_window(ax, sim, arms=[names[plc_i], names[ket_i]], origin=dose_day, sessions=False)
            for i, pub_arm in ((plc_i, "placebo"), (ket_i, "ketamine")):
                rows = sim.arm_index == i
                scores = sim.visits[rows]
                if p == 1:
                    scores = scores - scores[:, [base_k]]
                mean, half = stats(scores)
                keep = (rel >= -1.0) & (rel <= hi_x)
                c = colors[names[i]]
                h_sim = ax.errorbar(
                    rel[keep],
                    mean[keep],
                    yerr=half[keep],
                    color=c,
                    marker="o",
                    ms=6,
                    capsize=3,
                    lw=2.2,
                    elinewidth=1.4,
                )
                d = lii[lii["arm"] == pub_arm].sort_values("time_days")
                if len(d):
                    y = d["mean"].to_numpy() - (d["mean"].iloc[0] if p == 1 else 0.0)
                    yerr = None if p == 1 else d["sem"].to_numpy()
                    h_pub = ax.errorbar(
                        d["time_days"].to_numpy() + 0.08,
                        y,
                        yerr=yerr,
                        color=c,
                        marker="s",
                        ms=8,
                        mfc="white",
                        mew=1.8,
                        capsize=4,
                        lw=1.6,
                        ls="--",
                        elinewidth=1.4,
                    )
                if p == 0:
                    handles += [h_sim, h_pub] if len(d) else [h_sim]
                    hlabels += [f"simulated: {labels[names[i]]} (mean, 95% CI)"]
                    if len(d):
                        hlabels += [f"published: {lii_src}, {pub_arm} (mean ± SEM)"]
            if p == 1 and len(mur):
                for _, r in mur.iterrows():
                    c = colors[names[ket_i]] if r["arm"] == "ketamine" else colors[names[plc_i]]
                    ax.plot(
                        r["time_days"] - 0.08,
                        r["mean"],
                        ls="none",
                        marker="D",
                        ms=11,
                        mfc="white",
                        mec=c,
                        mew=2.2,
                        zorder=6,
                    )
                ax.axhline(0, color="0.4", lw=1.0)
            ax.set_xlabel("days after the infusion")
        axes[0, 0].set_ylabel(SCORE_LABEL)
        axes[0, 1].set_ylabel("change from baseline (MADRS points)")
        title(axes[0, 0], "Scores: simulated vs published means")
        title(axes[0, 1], "Change from the pre-infusion baseline")
        if len(mur):
            handles.append(Line2D([], [], ls="none", marker="D", ms=11, mfc="white", mec="0.2", mew=2.2))
            hlabels.append(f"published: {mur_src}, 24 h (ketamine; midazolam as placebo)")
        handles += [m[0] for m in marks]
        hlabels += [m[1] for m in marks]
        fig.legend(handles, hlabels, loc="outside lower center", ncols=2, fontsize=11)
        fig.suptitle("Does the model reproduce the published single-infusion trials?")
    n_k, n_p = int(np.sum(sim.arm_index == ket_i)), int(np.sum(sim.arm_index == plc_i))
    return attach_caption(
        fig,
        f"Simulated clinician scores (MADRS-like, 0–60, lower is better; filled circles, mean and 95% CI; "
        f"{n_k} ketamine and {n_p} placebo simulated patients) against PUBLISHED group means (hollow markers, "
        f"dashed): {lii_src} — ketamine and placebo (a placebo masked by anaesthesia), error bars SD/√n — and "
        f"{mur_src}, MADRS change at 24 h (ketamine −16.5; midazolam, an active placebo, −8.8). Published values "
        f"as reported in the sources (listed in the package's validation_targets.csv). x: days after the "
        f"infusion; published '0 d' is the pre-infusion baseline. Right: change from the last visit before the "
        f"infusion (simulated) or from the baseline mean (Lii 2023, no error bars: the paired SD is not "
        f"reported). Shaded: the plasticity window. Where the model misses the published values, the defaults "
        f"need recalibrating; note that the masked placebo in Lii 2023 improved as much as ketamine.",
    )
