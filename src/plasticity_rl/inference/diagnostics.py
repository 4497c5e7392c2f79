"""Trust before use: convergence diagnostics that gate a fit.

Per group-level parameter (every posterior variable with no dimension besides chain and
draw: ``mu_*``, ``tau_*``, kappa, epsilon, omega, alpha_T, phi, sigma_*): split R-hat, bulk and
tail ESS (rank-normalised, Vehtari et al. 2021). Per fit: the number of divergent transitions
and E-BFMI per chain. Per-patient parameters are summarised (worst R-hat) but do not gate.

An SVI fit is an approximation: MCMC diagnostics do not apply, so it passes only if its loss
has levelled off, and the result always notes that it is approximate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Thresholds:
    rhat_max: float = 1.01
    ess_bulk_min: float = 400.0
    ess_tail_min: float = 400.0
    divergences_max: int = 0
    bfmi_min: float = 0.3  # E-BFMI below 0.3 flags poor exploration of the energy distribution
    svi_rel_drift_max: float = 0.005  # SVI: |loss change| over the last 10% / |loss|


@dataclass(frozen=True)
class Diagnostics:
    passed: bool
    failures: list[str]
    table: pd.DataFrame  # index: group parameter; columns rhat, ess_bulk, ess_tail
    divergences: int | None
    bfmi: np.ndarray | None  # per chain
    patient_rhat_max: float | None
    method: str
    thresholds: Thresholds
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        head = "PASSED" if self.passed else f"FAILED ({len(self.failures)} problem(s))"
        lines = [f"diagnostics ({self.method}): {head}"]
        lines += [f"  - {f}" for f in self.failures]
        lines += [f"  note: {n}" for n in self.notes]
        if self.divergences is not None:
            lines.append(f"  divergences: {self.divergences}")
        if self.bfmi is not None:
            lines.append("  E-BFMI per chain: " + ", ".join(f"{b:.2f}" for b in self.bfmi))
        if len(self.table):
            lines.append(self.table.to_string(float_format=lambda v: f"{v:.3f}"))
        return "\n".join(lines)


def group_parameters(idata: az.InferenceData) -> list[str]:
    post = idata.posterior
    return [str(v) for v in post.data_vars if set(post[v].dims) == {"chain", "draw"}]


def _patient_parameters(idata: az.InferenceData) -> list[str]:
    post = idata.posterior
    return [str(v) for v in post.data_vars if set(post[v].dims) == {"chain", "draw", "patient"}]


def _svi(idata: az.InferenceData, th: Thresholds) -> Diagnostics:
    attrs = idata.posterior.attrs
    trace = np.asarray(attrs.get("svi_loss_trace", []), np.float64)
    failures = []
    notes = ["approximate fit (SVI): R-hat, ESS, divergences and E-BFMI do not apply"]
    if trace.size < 20 or not np.all(np.isfinite(trace)):
        failures.append("SVI loss trace missing or not finite")
    else:
        tail = max(trace.size // 10, 2)
        last, prev = trace[-tail:].mean(), trace[-2 * tail : -tail].mean()
        drift = abs(prev - last) / max(abs(last), 1.0)
        if drift > th.svi_rel_drift_max:
            failures.append(
                f"SVI loss still moving: relative change {drift:.4f} over the last 10% of "
                f"steps (> {th.svi_rel_drift_max}); run more steps"
            )
    return Diagnostics(not failures, failures, pd.DataFrame(), None, None, None, "svi", th, notes)


def mixing_table(draws: dict[str, np.ndarray]) -> pd.DataFrame:
    """Split R-hat, bulk and tail ESS (rank-normalised) of each (chains, draws) array."""
    names = list(draws)
    return pd.DataFrame(
        {
            "rhat": [float(az.rhat(np.asarray(draws[n], np.float64))) for n in names],
            "ess_bulk": [float(az.ess(np.asarray(draws[n], np.float64), method="bulk")) for n in names],
            "ess_tail": [float(az.ess(np.asarray(draws[n], np.float64), method="tail")) for n in names],
        },
        index=pd.Index(names, name="parameter"),
    )


def mixing_failures(table: pd.DataFrame, n_chains: int, th: Thresholds) -> list[str]:
    """The R-hat and ESS checks that ``table`` (:func:`mixing_table`) fails, one line each."""
    failures: list[str] = []
    if n_chains < 2:
        failures.append("R-hat needs at least 2 chains; run chains >= 2 (4 recommended)")
    else:
        bad = table[~(table["rhat"] <= th.rhat_max)]
        failures += [f"R-hat {r:.3f} > {th.rhat_max} for {n}" for n, r in bad["rhat"].items()]
    bad = table[~(table["ess_bulk"] >= th.ess_bulk_min)]
    failures += [f"bulk ESS {e:.0f} < {th.ess_bulk_min:g} for {n}" for n, e in bad["ess_bulk"].items()]
    bad = table[~(table["ess_tail"] >= th.ess_tail_min)]
    failures += [f"tail ESS {e:.0f} < {th.ess_tail_min:g} for {n}" for n, e in bad["ess_tail"].items()]
    return failures


def diagnose(idata: az.InferenceData, thresholds: Thresholds | None = None, **overrides) -> Diagnostics:
    """Diagnostics of a fit; ``overrides`` replace single thresholds (e.g. ``ess_bulk_min=100``)."""
    th = thresholds or Thresholds()
    if overrides:
        th = Thresholds(**{**th.__dict__, **overrides})
    if str(idata.posterior.attrs.get("method", "nuts")) == "svi":
        return _svi(idata, th)

    names = group_parameters(idata)
    n_chains = idata.posterior.sizes["chain"]
    notes: list[str] = []
    table = mixing_table({n: idata.posterior[n].values for n in names})
    failures = mixing_failures(table, n_chains, th)

    divergences, bfmi = None, None
    stats = getattr(idata, "sample_stats", None)
    if stats is not None and "diverging" in stats:
        divergences = int(np.asarray(stats["diverging"]).sum())
        if divergences > th.divergences_max:
            total = int(np.asarray(stats["diverging"]).size)
            failures.append(
                f"{divergences} divergent transitions of {total} (allowed: "
                f"{th.divergences_max}); raise target_accept or reparameterise"
            )
    else:
        failures.append("no sample_stats.diverging: cannot check divergences")
    if stats is not None and "energy" in stats:
        bfmi = np.asarray(az.bfmi(idata), np.float64)
        for c, b in enumerate(bfmi):
            if not b >= th.bfmi_min:
                failures.append(f"E-BFMI {b:.2f} < {th.bfmi_min} in chain {c}")

    patient_rhat_max = None
    pnames = _patient_parameters(idata)
    if pnames and n_chains >= 2:
        prhat = az.rhat(idata.posterior[pnames])
        patient_rhat_max = float(max(float(prhat[n].max()) for n in pnames))
        if patient_rhat_max > th.rhat_max:
            notes.append(f"worst per-patient R-hat {patient_rhat_max:.3f} (not gating)")
    return Diagnostics(not failures, failures, table, divergences, bfmi, patient_rhat_max, "nuts", th, notes)
