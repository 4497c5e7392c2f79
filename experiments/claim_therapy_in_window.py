"""Claim: therapy inside the plasticity window moves the core belief S, so the gain lasts.

The same therapy after the window moves S little per session; therapy alone helps slowly;
ketamine with no corrective input changes little for good. Config: configs/flagship.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402

from plasticity_rl.plots import alpha_curves, belief_curves  # noqa: E402

CONFIG = "flagship"


def parse_args(argv=None):
    return _common.parser(__doc__.splitlines()[0], "figures/claim_therapy_in_window").parse_args(argv)


def main(args) -> list[Path]:
    sim = _common.run(CONFIG, args)
    paths = _common.save(belief_curves(sim), args, "therapy_in_window_beliefs")
    paths += _common.save(alpha_curves(sim), args, "therapy_in_window_alpha")
    days = sim.config.experiment.days
    S, V = _common.arm_mean_at(sim, "S", days), _common.arm_mean_at(sim, "V", days)
    lines = [f"arm  mean S and V at the end of day {days}"]
    lines += [f"{a:<22} S={S[a]:.3f}  V={V[a]:.3f}" for a in S]
    paths.append(_common.write_summary(args, "therapy_in_window", lines))
    return paths


if __name__ == "__main__":
    main(parse_args())
