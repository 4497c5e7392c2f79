"""Trust before use, as numbers: how well a recovery study's fits found the truth.

Pure functions of the tables that :func:`plasticity_rl.recovery.recover` writes (one row per
estimate: level, parameter, true value, posterior mean, SD and 90% interval), so the recovery
figure and the CLI share them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plasticity_rl.params import true_on_support_bound


def expected_r(true: np.ndarray, posterior_sd: np.ndarray) -> float:
    """The correlation the posterior means should reach, given how wide the posteriors are.

    For the exact posterior of the model that generated the data, the posterior mean m of a
    parameter theta satisfies Cov(theta, m) = Var(m) = Var(theta) - E[Var(theta | y)], so
    corr(theta, m) = sqrt(1 - E[Var(theta | y)] / Var(theta)); and no other estimate f(y) from
    the same data does better, since Cov(theta, f) = Cov(m, f) gives corr(theta, f) <= sd(m) /
    sd(theta), the same number. A low r with a low expected r is the design's limit (the data
    carry little about each patient), not a fitting failure; an r well below its expectation
    points at the fit. The identity is exact when every truth is drawn from the prior the fit
    assumes (as in SBC); a recovery study fixes the group-level truths, so r may fall short of
    it (measured with 2 x 300 draws: by 0.01-0.06 over 60-300 patients, 0.10 in one data set of
    100, where the exact per-patient posteriors fall just as short:
    benchmarks/results/recovery_design.md).
    """
    var_true = float(np.var(true))
    if not np.all(np.isfinite(posterior_sd)) or var_true <= 0:
        return float("nan")
    return float(np.sqrt(max(0.0, 1.0 - float(np.mean(np.square(posterior_sd))) / var_true)))


def recovery_r(true: np.ndarray, estimate: np.ndarray) -> float:
    """Pearson r of true values and estimates; NaN for fewer than 3 or for no spread in either.

    A truth held fixed across data sets (epsilon = 0.05 in every one) has no spread to correlate
    with; round-off in its derivation can leave ~1e-17 of spread, which must not count.
    """
    if len(true) < 3 or any(np.allclose(v, v[0], rtol=1e-9, atol=1e-12) for v in (true, estimate)):
        return float("nan")
    return float(np.corrcoef(true, estimate)[0, 1])


def summarise_recovery(table: pd.DataFrame) -> pd.DataFrame:
    """Per parameter: Pearson r (true vs posterior mean), bias, 90% interval coverage.

    ``r_expected`` (per-patient parameters): the r that the posteriors' own widths imply
    (``expected_r``). Coverage is NaN (with a note) for a true value on a bound of the
    parameter's support, which no central interval can contain: judge such a parameter by its bias.
    """
    out = []
    for (level, name), g in table.groupby(["level", "parameter"], sort=False):
        r = recovery_r(g["true"].to_numpy(np.float64), g["mean"].to_numpy(np.float64))
        covered = float(((g["true"] >= g["low"]) & (g["true"] <= g["high"])).mean())
        note = ""
        if true_on_support_bound(level, name, g["true"]):
            covered = np.nan
            note = f"true value {g['true'].iloc[0]:g} is on the support's bound: coverage undefined, see bias"
        r_exp = (
            expected_r(g["true"].to_numpy(), g["sd"].to_numpy())
            if level == "patient" and "sd" in g
            else float("nan")
        )
        out.append(
            {
                "level": level,
                "parameter": name,
                "n": len(g),
                "r": r,
                "r_expected": r_exp,
                "bias": float((g["mean"] - g["true"]).mean()),
                "coverage_90": covered,
                "note": note,
            }
        )
    return pd.DataFrame(out)
