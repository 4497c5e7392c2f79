"""What every figure of a fit shares: its title with a fit's flag, panel grids, table checks.

A fit that failed its diagnostics must say so on every figure drawn from it: the figure
functions take ``title_note`` (e.g. ``"FIT FAILED DIAGNOSTICS: R-hat 1.05"``), printed here in
red, bold, on the line above the figure title (an annotation with gid :data:`TITLE_NOTE_GID`;
:func:`figure_title` reads the title and the note back).
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.text import Annotation

from plasticity_rl.params import unit_of
from plasticity_rl.plots.style import new_figure

TITLE_NOTE_COLOR = "#C00000"  # plain red: a failed fit, not an arm (no arm line uses it)
TITLE_NOTE_GID = "title_note"


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
    ann = Annotation(
        "\n".join(lines),
        xy=(0.5, 1.0),
        xycoords=sup,
        ha="center",
        va="top",
        fontsize=sup.get_fontsize(),
        fontweight="bold",
        color=TITLE_NOTE_COLOR,
        gid=TITLE_NOTE_GID,
        annotation_clip=False,
    )
    ann.set_in_layout(False)
    fig.add_artist(ann)


def figure_title(fig: Figure) -> str:
    """The figure title and, when present, the red fit flag above it (one string)."""
    parts = [fig._suptitle.get_text().strip()] if fig._suptitle is not None else []
    parts += [a.get_text() for a in fig.artists if a.get_gid() == TITLE_NOTE_GID]
    return "\n".join(p for p in parts if p)


def _flag_caption(note: str | None) -> str:
    return (
        f" WARNING: {note}: the fit failed its diagnostics, so these estimates may not be trustworthy."
        if note
        else ""
    )


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
