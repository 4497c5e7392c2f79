"""Teaching figures: one function per figure, one house style.

Every figure function takes a :class:`plasticity_rl.simulate.Simulation` and returns a
:class:`matplotlib.figure.Figure` (Agg canvas, never shown, nothing to close).

Caption convention: each returned figure carries a plain-text caption, attached with
:func:`attach_caption` and read with :func:`caption_of` (stored as ``fig._caption``).
:func:`render_figures` writes the captions to ``captions.md`` beside the images.

The plasticity window is shaded by :func:`shade_window` on every time-course figure: the span
where the dose kernel's drive g(k_j) is at least :data:`WINDOW_FRACTION` of its peak.

Lesson figures (:mod:`plasticity_rl.plots.lesson`, :mod:`plasticity_rl.plots.run_lessons`,
:mod:`plasticity_rl.plots.validation`):
``prediction_error_step``, ``kernel_and_alpha``, ``single_patient``, ``timing_heatmap`` (from
``plasticity_rl.lessons.timing_grid``) and ``clinician_vs_published`` (against ``published_targets()``).
:func:`render_lesson_figures` adds those that apply to a simulation to a figures folder.
"""

from plasticity_rl.plots._panels import TITLE_NOTE_COLOR, TITLE_NOTE_GID, figure_title
from plasticity_rl.plots.figures import (
    FIGURES,
    alpha_curves,
    applicable_figures,
    belief_curves,
    clinician_scores,
    good_and_bad_news,
    render_figures,
    save_figure,
    timing_curve,
)
from plasticity_rl.plots.inference import (
    contrast_forest,
    posterior_belief_curves,
    posterior_predictive_check,
    window_posterior,
)
from plasticity_rl.plots.lesson import kernel_and_alpha, prediction_error_step, sweep_curves, timing_heatmap
from plasticity_rl.plots.run_lessons import default_patient, render_lesson_figures, single_patient
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
    shade_spans,
    shade_window,
    window_spans,
)
from plasticity_rl.plots.trust import loo_comparison, recovery_scatter, sbc_ecdf, sbc_ranks, trace_rank_plots
from plasticity_rl.plots.validation import clinician_vs_published, published_targets

__all__ = [
    "DOSE_GID",
    "FIGURES",
    "NOTE_GID",
    "OKABE_ITO",
    "SESSION_GID",
    "WINDOW_FRACTION",
    "WINDOW_GID",
    "alpha_curves",
    "good_and_bad_news",
    "applicable_figures",
    "arm_colors",
    "attach_caption",
    "belief_curves",
    "caption_of",
    "clinician_scores",
    "clinician_vs_published",
    "default_patient",
    "kernel_and_alpha",
    "prediction_error_step",
    "published_targets",
    "render_lesson_figures",
    "single_patient",
    "sweep_curves",
    "timing_heatmap",
    "house_style",
    "render_figures",
    "save_figure",
    "shade_window",
    "timing_curve",
    "window_spans",
    # fit results (plasticity_rl.plots.inference) and whether to trust them (plasticity_rl.plots.trust)
    "TITLE_NOTE_COLOR",
    "TITLE_NOTE_GID",
    "contrast_forest",
    "figure_title",
    "loo_comparison",
    "posterior_belief_curves",
    "posterior_predictive_check",
    "recovery_scatter",
    "sbc_ecdf",
    "sbc_ranks",
    "trace_rank_plots",
    "shade_spans",
    "window_posterior",
]
