"""Teaching figures: one function per figure, one house style.

Every figure function takes a :class:`plasticity_rl.simulate.Simulation` and returns a
:class:`matplotlib.figure.Figure` (Agg canvas, never shown, nothing to close).

Caption convention: each returned figure carries a plain-text caption, attached with
:func:`attach_caption` and read with :func:`caption_of` (stored as ``fig._caption``).
:func:`render_figures` writes the captions to ``captions.md`` beside the images.

The plasticity window is shaded by :func:`shade_window` on every time-course figure: the span
where the dose kernel's drive g(k_j) is at least :data:`WINDOW_FRACTION` of its peak.
"""

from plasticity_rl.plots.figures import (
    FIGURES,
    alpha_curves,
    applicable_figures,
    belief_curves,
    clinician_scores,
    render_figures,
    save_figure,
    timing_curve,
)
from plasticity_rl.plots.style import (
    DOSE_GID,
    NOTE_GID,
    OKABE_ITO,
    SESSION_GID,
    WINDOW_FRACTION,
    WINDOW_GID,
    arm_colors,
    attach_caption,
    caption_of,
    house_style,
    shade_window,
    window_spans,
)

__all__ = [
    "DOSE_GID",
    "FIGURES",
    "NOTE_GID",
    "OKABE_ITO",
    "SESSION_GID",
    "WINDOW_FRACTION",
    "WINDOW_GID",
    "alpha_curves",
    "applicable_figures",
    "arm_colors",
    "attach_caption",
    "belief_curves",
    "caption_of",
    "clinician_scores",
    "house_style",
    "render_figures",
    "save_figure",
    "shade_window",
    "timing_curve",
    "window_spans",
]
