"""Claim: one ketamine infusion lifts mood fast, then the gain wanes within one to two weeks.

The clinician score improves within hours (acute drug-state lift), V rises within a day or two
while the window is open, then relaxes back toward the unchanged schema S once alpha falls.
Config: configs/single_infusion.yaml (ketamine vs a placebo infusion, no therapy).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from plasticity_rl.plots import belief_curves, clinician_scores  # noqa: E402

CONFIG = "single_infusion"


def parse_args(argv=None):
    return _common.parser(__doc__.splitlines()[0], "figures/claim_rapid_onset_waning").parse_args(argv)


def main(args) -> list[Path]:
    sim = _common.run(CONFIG, args)
    paths = _common.save(belief_curves(sim, beliefs=("V",)), args, "rapid_onset_waning_V")
    paths += _common.save(clinician_scores(sim), args, "rapid_onset_waning_clinician")
    lines = ["day  V ketamine - placebo"]
    for day in (7, 8, 9, 10, 14, 21, sim.config.experiment.days):
        m = _common.arm_mean_at(sim, "V", day)
        lines.append(f"{day:>3}  {m['ketamine'] - m['placebo']:+.3f}")
    paths.append(_common.write_summary(args, "rapid_onset_waning", lines))
    return paths


if __name__ == "__main__":
    main(parse_args())
