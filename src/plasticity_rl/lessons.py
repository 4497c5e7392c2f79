"""Lessons that need simulations: the tables behind the teaching figures that sweep a model.

A figure in :mod:`plasticity_rl.plots` only draws; when a lesson needs many simulated cohorts
(the therapy-timing heat map sweeps the boost A and the therapy delay), the cohorts are simulated
here and handed to the figure as a table::

    grid = timing_grid(A_means=(0, 2, 4))
    fig = plots.timing_heatmap(grid)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from plasticity_rl.config import Config, as_config, config_from_dict, sweep_arm_name
from plasticity_rl.plots.figures import followup_step
from plasticity_rl.plots.style import arm_names
from plasticity_rl.simulate import simulate

DEFAULT_A_MEANS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)


def timing_grid(
    config: Config | str | Path | None = None,
    *,
    A_means: Sequence[float] = DEFAULT_A_MEANS,
    patients_per_arm: int = 10,
) -> pd.DataFrame:
    """Follow-up V per therapy delay, simulated at several population means of the boost A.

    ``config`` is a config with a ``timing_sweep`` (default: the bundled ``timing_sweep``). Each
    A gets the same seed (common random numbers), so differences between cells come from A and
    the delay, not from the draws. Columns: ``A_mean``, ``delay_days``, ``V_followup`` (mean over
    patients), ``V_no_therapy`` (ketamine without therapy, same A), ``benefit`` (the difference),
    ``n_patients``. The mean of a deterministic recurrence over patients is smooth, so small
    cohorts suffice.
    """
    cfg = as_config(config if config is not None else "timing_sweep")
    if cfg.timing_sweep is None:
        raise ValueError(
            f"timing_grid needs a config with a 'timing_sweep' section; {cfg.experiment.name!r} has none"
        )
    data = cfg.model_dump(mode="json")
    data["arms"] = []
    data["timing_sweep"]["include_no_therapy"] = True
    data["experiment"]["patients_per_arm"] = int(patients_per_arm)
    data["observations"]["visits"]["enabled"] = False
    data["observations"]["ema"]["enabled"] = False
    rows = []
    for A in A_means:
        data["population"]["A"]["mean"] = float(A)
        sim = simulate(config_from_dict(data))
        names = arm_names(sim)
        V = np.asarray(sim.trajectory.V, np.float64)[:, followup_step(sim)]
        ref = float(V[sim.arm_index == names.index("no_therapy")].mean())
        for d in sim.config.timing_sweep.delays_days:
            m = V[sim.arm_index == names.index(sweep_arm_name(d))]
            rows.append(
                {
                    "A_mean": float(A),
                    "delay_days": float(d),
                    "V_followup": float(m.mean()),
                    "V_no_therapy": ref,
                    "benefit": float(m.mean()) - ref,
                    "n_patients": int(m.size),
                }
            )
    out = pd.DataFrame(rows)
    out.attrs["config"] = cfg.experiment.name
    out.attrs["sweep_config"] = cfg
    out.attrs["followup_day"] = cfg.followup_day
    return out
