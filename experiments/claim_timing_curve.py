"""Claim: the follow-up benefit peaks when therapy meets peak plasticity, falls as the window closes.

This curve is the model's PREDICTION: no trial has randomised therapy timing after ketamine.
Config: configs/timing_sweep.yaml (one infusion; a block of CBT sessions at each delay).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from plasticity_rl.config import sweep_arm_name  # noqa: E402
from plasticity_rl.plots import timing_curve  # noqa: E402

CONFIG = "timing_sweep"


def parse_args(argv=None):
    return _common.parser(__doc__.splitlines()[0], "figures/claim_timing_curve").parse_args(argv)


def main(args) -> list[Path]:
    sim = _common.run(CONFIG, args)
    paths = _common.save(timing_curve(sim), args, "timing_curve")
    day = sim.config.followup_day
    V = _common.arm_mean_at(sim, "V", day)
    lines = [f"MODEL PREDICTION. delay (days)  mean V at the end of day {day}"]
    if "no_therapy" in V:
        lines.append(f"no therapy      {V['no_therapy']:.3f}")
    lines += [f"{d:+6g}          {V[sweep_arm_name(d)]:.3f}" for d in sim.config.timing_sweep.delays_days]
    paths.append(_common.write_summary(args, "timing_curve", lines))
    return paths


if __name__ == "__main__":
    main(parse_args())
