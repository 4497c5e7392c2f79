"""Claim: repeated infusions and boosters at lengthening intervals sustain the response longer.

Configs: configs/six_infusions.yaml (six infusions over twelve days vs one vs placebo) and
configs/boosters.yaml (an induction course, then weekly and fortnightly boosters).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from plasticity_rl.plots import alpha_curves, belief_curves, clinician_scores  # noqa: E402

CONFIGS = ("six_infusions", "boosters")


def parse_args(argv=None):
    return _common.parser(__doc__.splitlines()[0], "figures/claim_repeated_doses").parse_args(argv)


def main(args) -> list[Path]:
    paths, lines = [], []
    for name in CONFIGS:
        sim = _common.run(name, args)
        paths += _common.save(alpha_curves(sim), args, f"{name}_alpha")
        paths += _common.save(belief_curves(sim), args, f"{name}_beliefs")
        if sim.visits.shape[1]:
            paths += _common.save(clinician_scores(sim), args, f"{name}_clinician")
        days = sim.config.experiment.days
        lines.append(f"{name}: mean V per arm at the end of day")
        for day in sorted({14, 28, days // 2, days}):
            m = _common.arm_mean_at(sim, "V", day)
            lines.append(f"  {day:>3}  " + "  ".join(f"{a}={v:.3f}" for a, v in m.items()))
    paths.append(_common.write_summary(args, "repeated_doses", lines))
    return paths


if __name__ == "__main__":
    main(parse_args())
