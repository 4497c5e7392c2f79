"""The house style of every teaching figure: palette, fonts, the plasticity window, captions.

- Colours: the Okabe-Ito colour-blind-safe palette, one fixed colour per arm in config order
  (the first arm, usually the placebo or reference arm, is black). Experiments with more arms
  than the palette holds (a timing sweep) use the perceptually uniform, colour-blind-safe
  ``viridis`` map in config order, with a ``no_therapy`` reference arm kept black.
- Fonts: sized for a projector (14 pt text, 16 pt titles) on a 10 x 6 inch canvas.
- The plasticity window is always shaded by :func:`shade_window` the same way: the time steps
  where the plasticity drive ``g(k_j)`` (the saturated dose kernel) of the plotted
  arms (their pointwise maximum) is at least :data:`WINDOW_FRACTION` (one half) of its peak.
  The drive is set by the dose schedule alone, identical for every patient of an arm; a
  patient's boost ``A_i g(k_j)`` scales it, so the half-maximum span is the same for the whole
  population (the population median included). For the default gamma kernel (peak 24 h) one
  dose opens the window from about 9 h to 51 h after the infusion.
- Captions: every figure function returns a :class:`matplotlib.figure.Figure` with its caption
  attached by :func:`attach_caption`; read it with :func:`caption_of` (stored on the figure as
  ``fig._caption``).

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas, never through
``pyplot``: nothing is displayed, no global figure list grows, and no figure has to be closed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import ScaledTranslation, blended_transform_factory

if TYPE_CHECKING:
    from plasticity_rl.simulate import Simulation


# Okabe & Ito (2008), reordered so the first (reference) arm is black and the pale yellow,
# hard to see on white, comes last.
OKABE_ITO: tuple[str, ...] = (
    "#000000",  # black
    "#E69F00",  # orange
    "#0072B2",  # blue
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#56B4E9",  # sky blue
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow
)
SEQUENTIAL_CMAP = "viridis"
REFERENCE_ARMS = ("no_therapy",)

WINDOW_FRACTION = 0.5  # window = steps where g(k_j) >= WINDOW_FRACTION * peak g
WINDOW_COLOR = "#F0E442"  # Okabe-Ito yellow, pale under alpha: no arm line uses it below 8 arms
WINDOW_ALPHA = 0.35
WINDOW_GID = "plasticity_window"
DOSE_GID = "dose"
PLACEBO_GID = "placebo_infusion"
SESSION_GID = "session"
NOTE_GID = "model_prediction_note"

FIGSIZE = (10.0, 6.0)
FIGSIZE_WIDE = (14.0, 6.0)
DPI = 150

RC: dict[str, object] = {
    "font.size": 14,
    "axes.titlesize": 16,
    "axes.labelsize": 15,
    "xtick.labelsize": 13,
    "ytick.labelsize": 13,
    "legend.fontsize": 12,
    "legend.title_fontsize": 12,
    "figure.titlesize": 17,
    "lines.linewidth": 2.4,
    "lines.markersize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "grid.linewidth": 0.8,
    "legend.frameon": False,
    "savefig.dpi": DPI,
    "savefig.bbox": "tight",
    "svg.fonttype": "path",
    "svg.hashsalt": "plasticity_rl",  # same figure, same SVG bytes
}


@contextmanager
def house_style() -> Iterator[None]:
    """rcParams of the house style, applied while a figure's artists are created."""
    with mpl.rc_context(RC):
        yield


def new_figure(nrows: int = 1, ncols: int = 1, figsize=None, **subplot_kw) -> tuple[Figure, np.ndarray]:
    """A pyplot-free figure on an Agg canvas, and its axes as a 2-D array."""
    fig = Figure(figsize=figsize or (FIGSIZE if ncols == 1 else FIGSIZE_WIDE), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


# ----------------------------------------------------------------------------- captions


def attach_caption(fig: Figure, text: str) -> Figure:
    """Attach a caption (plain text) to a figure; :func:`caption_of` reads it back."""
    fig._caption = " ".join(text.split())
    return fig


def caption_of(fig: Figure) -> str:
    return getattr(fig, "_caption", "")


# ----------------------------------------------------------------------------- arms


def arm_names(sim: Simulation) -> list[str]:
    return list(sim.schedules.arm_names)


def arm_labels(sim: Simulation) -> dict[str, str]:
    return {a.name: (a.label or a.name) for a in sim.config.all_arms()}


def arm_colors(names: Sequence[str]) -> dict[str, str]:
    """A fixed colour per arm, in config order (pass every arm of the config, not a subset)."""
    names = list(names)
    if len(names) <= len(OKABE_ITO):
        return {n: OKABE_ITO[i] for i, n in enumerate(names)}
    cmap = mpl.colormaps[SEQUENTIAL_CMAP]
    others = [n for n in names if n not in REFERENCE_ARMS]
    out = {n: "#000000" for n in names if n in REFERENCE_ARMS}
    for i, n in enumerate(others):
        out[n] = mpl.colors.to_hex(cmap(0.92 * i / max(len(others) - 1, 1)))
    return out


def sim_arm_colors(sim: Simulation) -> dict[str, str]:
    return arm_colors(arm_names(sim))


def select_arms(sim: Simulation, arms: Sequence[str] | None) -> list[int]:
    """Indices of the requested arms (all, in config order, if None); clear error if unknown."""
    names = arm_names(sim)
    if arms is None:
        return list(range(len(names)))
    unknown = [a for a in arms if a not in names]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; this simulation has {names}")
    return [names.index(a) for a in arms]


# ----------------------------------------------------------------------------- the window


def window_spans(
    sim: Simulation, arms: Sequence[str] | None = None, frac: float = WINDOW_FRACTION
) -> list[tuple[float, float]]:
    """(start, end) in days of the plasticity window(s) of the given arms.

    The window is where the pointwise maximum over the arms of the plasticity drive g(k_j) is
    at least ``frac`` of its peak; step j covers [t_j, t_j + 1 step). Empty if no arm has an
    active dose.
    """
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"frac must be in (0, 1], got {frac}")
    idx = select_arms(sim, arms)
    g = np.asarray(sim.inputs.g_k, dtype=np.float64)[idx]
    t0 = np.asarray(sim.schedules.t_hours) / 24.0
    return drive_spans(t0, g.max(axis=0), 1.0 / sim.schedules.steps_per_day, frac)


def drive_spans(
    t_days: np.ndarray, drive: np.ndarray, step_days: float, frac: float = WINDOW_FRACTION
) -> list[tuple[float, float]]:
    """(start, end) in days where ``drive`` (one value per step starting at ``t_days``) is at least
    ``frac`` of its peak; empty if it never rises above 0."""
    peak = float(np.max(drive, initial=0.0))
    if peak <= 0.0:
        return []
    on = np.asarray(drive) >= frac * peak
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    return [(float(t_days[a]), float(t_days[b - 1] + step_days)) for a, b in zip(edges[::2], edges[1::2])]


def _dose_schedules(sim: Simulation, idx: list[int]):
    """Per plotted arm: landed active dose times and placebo infusion times (days)."""
    sch = sim.schedules
    active, placebo = {}, {}
    for i in idx:
        h, a, inf = sch.dose_hours[i], sch.dose_amounts[i], sch.infusion_hours[i]
        active[i] = tuple(sorted(set(np.round(h[a > 0] / 24.0, 6))))
        placebo[i] = tuple(sorted(set(np.round(inf[np.isfinite(inf) & (a <= 0)] / 24.0, 6))))
    return active, placebo


def shade_spans(
    ax: Axes,
    spans: Sequence[tuple[float, float]],
    *,
    origin: float = 0.0,
    frac: float = WINDOW_FRACTION,
    label: str | None = None,
) -> list[tuple[object, str]]:
    """Shade given (start, end) spans in days the way :func:`shade_window` shades the window.

    Pale yellow spans (gid ``"plasticity_window"``) at x = day - ``origin``; for spans that do
    not come from a :class:`Simulation` (e.g. a fit's window). ``label`` replaces the default
    legend text ("plasticity window (drive ≥ 50% of peak)"). Returns the (handle, label) legend
    pair, or nothing when there are no spans.
    """
    spans = [(float(a), float(b)) for a, b in spans]
    text = label or f"plasticity window (drive ≥ {frac:.0%} of peak)"
    first = label or f"plasticity window (drive >= {frac:.0%} of peak)"
    for k, (a, b) in enumerate(spans):
        ax.axvspan(
            a - origin,
            b - origin,
            color=WINDOW_COLOR,
            alpha=WINDOW_ALPHA,
            lw=0,
            zorder=0,
            gid=WINDOW_GID,
            label="_" + WINDOW_GID if k else first,
        )
    return [(Patch(color=WINDOW_COLOR, alpha=WINDOW_ALPHA, lw=0), text)] if spans else []


def shade_window(
    ax: Axes,
    sim: Simulation,
    *,
    arms: Sequence[str] | None = None,
    frac: float = WINDOW_FRACTION,
    origin: float = 0.0,
    doses: bool = True,
    sessions: bool = True,
) -> list[tuple[object, str]]:
    """Shade the plasticity window and mark dose and session times, always the same way.

    - window: pale yellow spans (gid ``"plasticity_window"``), see :func:`window_spans`;
    - ketamine doses: a dotted vertical line and a filled triangle just above the axes (gid
      ``"dose"``); when the plotted arms dose differently, one row of triangles per schedule, in
      the colour of the first arm with that schedule;
    - placebo infusions (amount 0) at times with no active dose: hollow triangles;
    - therapy sessions: short ticks along the bottom, one row per arm, in the arm's colour
      (gid ``"session"``); :func:`reserve_session_zone` keeps the data clear of them.

    Use :func:`title` for the axes title so it clears the rows of triangles.

    x is in days minus ``origin`` (the timing curve uses days after the infusion). Returns
    (handle, label) pairs for a legend of the marks drawn.
    """
    idx = select_arms(sim, arms)
    names = arm_names(sim)
    colors = sim_arm_colors(sim)
    legend: list[tuple[object, str]] = []
    # Marks outside the axes are drawn unclipped (above/below the plot): keep only those inside
    # an x-range fixed beforehand (set_xlim before shade_window, as the figure functions do).
    if ax.get_autoscalex_on():
        inside = lambda x: np.ones(np.shape(x), bool)  # noqa: E731
    else:
        lo_x, hi_x = sorted(ax.get_xlim())
        inside = lambda x: (np.asarray(x) >= lo_x) & (np.asarray(x) <= hi_x)  # noqa: E731

    spans = window_spans(sim, [names[i] for i in idx], frac)
    legend += shade_spans(ax, spans, origin=origin, frac=frac)

    top = blended_transform_factory(ax.transData, ax.transAxes)
    rows = 0
    if doses:
        active, placebo = _dose_schedules(sim, idx)
        groups: dict[tuple, int] = {}
        for i in idx:
            if active[i] and active[i] not in groups:
                groups[active[i]] = i
        all_active = sorted({t for times in groups for t in times})
        for t in all_active:
            ax.axvline(t - origin, color="0.35", ls=":", lw=1.2, zorder=1, gid=DOSE_GID)
        lonely = sorted({t for i in idx for t in placebo[i]} - set(all_active))
        # Triangles sit in rows just above the plotting area, one row per distinct schedule.
        for row, (times, i) in enumerate(groups.items()):
            color = "#000000" if len(groups) == 1 else colors[names[i]]
            x = np.asarray(times) - origin
            x = x[inside(x)]
            if x.size == 0:  # an empty unclipped marker line would stretch the layout to (0, 0)
                continue
            ax.plot(
                x,
                np.ones(x.shape),
                ls="none",
                marker="v",
                ms=9,
                color=color,
                clip_on=False,
                zorder=5,
                gid=DOSE_GID,
                transform=top + _points_up(ax, MARK_ROW_PT * (row + 0.5)),
            )
            rows = row + 1
        if groups:
            legend.append(
                (
                    Line2D([], [], ls=":", lw=1.2, color="0.35", marker="v", ms=9, mfc="k", mec="k"),
                    "ketamine infusion" + (" (row per arm)" if len(groups) > 1 else ""),
                )
            )
        if lonely:
            x = np.asarray(lonely) - origin
            x = x[inside(x)]
        if lonely and x.size:
            ax.plot(
                x,
                np.ones(x.shape),
                ls="none",
                marker="v",
                ms=9,
                mfc="white",
                mec="k",
                clip_on=False,
                zorder=5,
                gid=PLACEBO_GID,
                transform=top + _points_up(ax, MARK_ROW_PT * (rows + 0.5)),
            )
            rows += 1
            legend.append(
                (Line2D([], [], ls="none", marker="v", ms=9, mfc="white", mec="k"), "placebo infusion")
            )
    ax._plasticity_mark_rows = rows

    if sessions:
        sch = sim.schedules
        with_sessions = [i for i in idx if (sch.session_n[i] > 0).any()]
        dy = session_row_height(len(with_sessions))
        for row, i in enumerate(with_sessions):
            x = sch.t_hours[sch.session_n[i] > 0] / 24.0 - origin
            x = x[inside(x)]
            if x.size == 0:
                continue
            ax.plot(
                x,
                np.full(x.shape, 0.015 + dy * (row + 0.5)),
                ls="none",
                marker="|",
                ms=min(11, 400 * dy),
                mew=2.2,
                color=colors[names[i]],
                transform=top,
                clip_on=False,
                zorder=5,
                gid=SESSION_GID,
            )
        if with_sessions:
            legend.append(
                (
                    Line2D([], [], ls="none", marker="|", ms=11, mew=2.2, color="0.2"),
                    "therapy session (arm colour)",
                )
            )
    ax._plasticity_session_zone = 0.03 + dy * len(with_sessions) if sessions and with_sessions else 0.0
    return legend


MARK_ROW_PT = 13.0  # height of one row of dose triangles above the axes, in points


def _points_up(ax: Axes, points: float):
    return ScaledTranslation(0.0, points / 72.0, ax.figure.dpi_scale_trans)


def session_row_height(n_rows: int) -> float:
    """Height (axes fraction) of one row of session ticks; all rows fit in a quarter of the axes."""
    return min(0.035, 0.22 / max(n_rows, 1))


def title(ax: Axes, text: str) -> None:
    """Axes title, lifted above the rows of dose triangles drawn by :func:`shade_window`."""
    rows = getattr(ax, "_plasticity_mark_rows", 0)
    ax.set_title(text, pad=6.0 + MARK_ROW_PT * rows)


def reserve_session_zone(ax: Axes, floor: float | None = None) -> None:
    """Extend the y-axis downward so data stay above the session ticks of :func:`shade_window`.

    ``floor``: the lowest meaningful value (e.g. 0 for a learning rate); tick labels below it are
    hidden so the reserved strip reads as a margin, not as data.
    """
    zone = getattr(ax, "_plasticity_session_zone", 0.0)
    if zone <= 0:
        return
    lo, hi = ax.get_ylim()
    new_lo = hi - (hi - lo) / (1.0 - zone)
    ax.set_ylim(new_lo, hi)
    if floor is not None:
        ticks = [t for t in ax.get_yticks() if floor - 1e-12 <= t <= hi]
        ax.set_yticks(ticks)
        ax.set_ylim(new_lo, hi)
