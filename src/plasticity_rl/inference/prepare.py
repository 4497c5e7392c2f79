"""The arrays a fit conditions on, from a :class:`~plasticity_rl.simulate.Simulation` or from tables.

Real users bring CSVs: :func:`from_tables` has them checked by :mod:`plasticity_rl.table_checks`,
which lists every problem found (one line each) in a single :class:`DataError`.

Two kinds of missing data are kept apart:

- a missing *outcome* (an everyday experience with no logged outcome) is an error: the belief
  recurrence needs every experience, and we cannot guess what the patient saw;
- a missing *rating* (EMA or visit score empty/NaN) is allowed: only its likelihood term drops.

A missed therapy session is simply a session with no corrective rows in ``events``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import jax.numpy as jnp
import numpy as np
import pandas as pd

from plasticity_rl.config import Config
from plasticity_rl.models import get_model
from plasticity_rl.observe import ema_steps, visit_effects
from plasticity_rl.params import belief_values
from plasticity_rl.plasticity import ArmInputs, arm_inputs, scheduled_session_steps
from plasticity_rl.schedule import Schedules, build_schedules
from plasticity_rl.table_checks import DataError as DataError  # where users have caught it
from plasticity_rl.table_checks import arrays_from_tables

if TYPE_CHECKING:  # the simulator is upstream of the fit, never imported by it
    from plasticity_rl.simulate import Simulation


class ModelInputs(NamedTuple):
    """JAX arrays the NumPyro model reads (a pytree, passed as the model's argument)."""

    arm_index: jnp.ndarray  # (N,) int32
    g_k: jnp.ndarray  # (arms, T) saturated plasticity drive at the config's kernel
    t_hours: jnp.ndarray  # (T,) start of each step: with the doses, the fit recomputes g_k
    dose_hours: jnp.ndarray  # (arms, D) dose times, padded with amount 0
    dose_amounts: jnp.ndarray  # (arms, D) relative amounts (0: padding or placebo)
    gate: jnp.ndarray  # (arms, T) acute drug state
    everyday: jnp.ndarray  # (N, T) float32 in {0, 1}
    corrective: jnp.ndarray  # (N, T, n_max) float32 in {0, 1}
    n_corr: jnp.ndarray  # (N, T) int32 corrective experiences delivered at the step
    session_anywhere: jnp.ndarray  # (T,) bool: some patient has a session at the step
    session_steps: jnp.ndarray  # (K,) int32: steps where some arm schedules or some patient has a session
    ema: jnp.ndarray  # (N, days) ratings, 0.5 where missing (see ema_mask)
    ema_mask: jnp.ndarray  # (N, days) bool, True where recorded
    ema_step: jnp.ndarray  # (days,) int32: the rating of day d is of V after step ema_step[d]
    visit_score: jnp.ndarray  # (N, K) score, 30 where missing or padding (see visit_mask)
    visit_mask: jnp.ndarray  # (N, K) bool
    visit_step: jnp.ndarray  # (N, K) int32: V at the start of this step (0..T)
    visit_D: jnp.ndarray  # (N, K) acute drug-state lift D(t), MADRS points
    visit_E: jnp.ndarray  # (N, K) non-specific infusion response E(t)
    visit_treated: jnp.ndarray  # (N, K) bool: at or after the arm's first treatment
    # The same ratings laid out by step, for the likelihood with the outcomes integrated out
    # (inference/filter.py), which conditions the beliefs on each rating as it comes:
    session_p: jnp.ndarray | None = None  # (arms, T) chance each corrective experience goes well
    ema_by_step: jnp.ndarray | None = None  # (N, T) the rating of V after step j, 0.5 where none
    ema_by_step_mask: jnp.ndarray | None = None  # (N, T) bool
    visit_by_step: jnp.ndarray | None = None  # (N, T + 1) score of V at step j's start, 30: none
    visit_by_step_mask: jnp.ndarray | None = None  # (N, T + 1) bool
    visit_by_step_D: jnp.ndarray | None = None  # (N, T + 1)
    visit_by_step_E: jnp.ndarray | None = None  # (N, T + 1)
    visit_by_step_treated: jnp.ndarray | None = None  # (N, T + 1) bool


@dataclass(frozen=True)
class FitData:
    """Everything a fit needs: the conditioning inputs, the ratings, and fixed constants.

    Arrays are NumPy here (the edge of the package); :meth:`inputs` gives the JAX pytree.
    """

    variant: str
    config: Config
    arm_names: tuple[str, ...]
    patient_ids: np.ndarray  # (N,) ids as given
    arm_index: np.ndarray  # (N,)
    steps_per_day: int
    days: int
    arm: ArmInputs  # per-arm g_k and gate (from the config's schedules and kernel)
    schedules: Schedules  # the arms' dose and session times on the step grid
    everyday: np.ndarray
    corrective: np.ndarray
    n_corr: np.ndarray
    ema: np.ndarray  # (N, days) NaN where missing
    visit_day: np.ndarray  # (N, K) NaN for padding
    visit_step: np.ndarray  # (N, K)
    visit_score: np.ndarray  # (N, K) NaN where missing or padding
    visit_D: np.ndarray
    visit_E: np.ndarray
    visit_treated: np.ndarray
    m_max: float
    fixed: dict[str, float] = field(default_factory=dict)  # mu_o, V0_offset: known constants
    has_outcomes: bool = True  # everyday and corrective outcomes logged (else they are zeros)
    notes: tuple[str, ...] = ()  # what the fit says about the tables (e.g. an empty ema table)

    @property
    def n_patients(self) -> int:
        return int(self.arm_index.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.everyday.shape[1])

    @property
    def has_ema(self) -> bool:
        return bool(np.isfinite(self.ema).any())

    @property
    def has_doses(self) -> bool:
        """Whether any patient's arm doses: otherwise the data say nothing about the window."""
        return bool((self.schedules.dose_amounts[np.unique(self.arm_index)] > 0).any())

    @property
    def has_visits(self) -> bool:
        return bool(np.isfinite(self.visit_score).any())

    def subset(self, index) -> FitData:
        """The same data for some patients only (``index``: positions or a boolean mask), in order.

        For cross-validation: the schedules, the arms and the fixed constants stay; every
        per-patient array keeps the rows of ``index``.
        """
        from dataclasses import replace

        rows = np.arange(self.n_patients)[np.asarray(index)]
        if rows.size == 0:
            raise ValueError("subset: no patient selected")
        per_patient = (
            "patient_ids", "arm_index", "everyday", "corrective", "n_corr", "ema",
            "visit_day", "visit_step", "visit_score", "visit_D", "visit_E", "visit_treated",
        )  # fmt: skip
        return replace(self, **{name: getattr(self, name)[rows] for name in per_patient})

    def inputs(self) -> ModelInputs:
        ema_mask = np.isfinite(self.ema)
        visit_mask = np.isfinite(self.visit_score)
        spd = self.steps_per_day
        return ModelInputs(
            arm_index=jnp.asarray(self.arm_index, jnp.int32),
            g_k=jnp.asarray(self.arm.g_k, jnp.float32),
            t_hours=jnp.asarray(self.schedules.t_hours, jnp.float32),
            dose_hours=jnp.asarray(self.schedules.dose_hours, jnp.float32),
            dose_amounts=jnp.asarray(self.schedules.dose_amounts, jnp.float32),
            gate=jnp.asarray(self.arm.gate, jnp.float32),
            everyday=jnp.asarray(self.everyday, jnp.float32),
            corrective=jnp.asarray(self.corrective, jnp.float32),
            n_corr=jnp.asarray(self.n_corr, jnp.int32),
            session_anywhere=jnp.asarray((self.n_corr > 0).any(axis=0)),
            # Scheduled steps, not only attended ones, so every data set from one config has the
            # same K (one compilation); a step where nobody attended maps beliefs to themselves.
            session_steps=jnp.asarray(
                np.union1d(scheduled_session_steps(self.arm), np.flatnonzero((self.n_corr > 0).any(axis=0))),
                jnp.int32,
            ),
            ema=jnp.asarray(np.where(ema_mask, self.ema, 0.5), jnp.float32),
            ema_mask=jnp.asarray(ema_mask),
            ema_step=jnp.asarray(ema_steps(self.days, spd), jnp.int32),
            visit_score=jnp.asarray(np.where(visit_mask, self.visit_score, 30.0), jnp.float32),
            visit_mask=jnp.asarray(visit_mask),
            visit_step=jnp.asarray(self.visit_step, jnp.int32),
            visit_D=jnp.asarray(self.visit_D, jnp.float32),
            visit_E=jnp.asarray(self.visit_E, jnp.float32),
            visit_treated=jnp.asarray(self.visit_treated),
            session_p=jnp.asarray(self.arm.session_p, jnp.float32),
            **self._by_step(ema_mask, visit_mask),
        )

    def _by_step(self, ema_mask, visit_mask) -> dict:
        """The ratings on the step grid (first visit wins where two share a step: see
        :meth:`shared_visit_steps`)."""
        N, T = self.n_patients, self.n_steps
        ema = np.full((N, T), 0.5, np.float32)
        rec = np.zeros((N, T), bool)
        steps = ema_steps(self.days, self.steps_per_day)
        ema[:, steps] = np.where(ema_mask, self.ema, 0.5)
        rec[:, steps] = ema_mask
        out = {"ema_by_step": ema, "ema_by_step_mask": rec}
        fill = {"visit_by_step": 30.0, "visit_by_step_mask": False, "visit_by_step_D": 0.0}
        fill |= {"visit_by_step_E": 0.0, "visit_by_step_treated": False}
        values = {
            "visit_by_step": np.where(visit_mask, self.visit_score, 30.0),
            "visit_by_step_mask": visit_mask,
            "visit_by_step_D": self.visit_D,
            "visit_by_step_E": self.visit_E,
            "visit_by_step_treated": self.visit_treated,
        }
        rows, cols = np.nonzero(visit_mask)
        steps = self.visit_step[rows, cols]
        first = np.unique(rows * (T + 1) + steps, return_index=True)[1]  # first visit per (patient, step)
        rows, cols, steps = rows[first], cols[first], steps[first]
        for name, value in values.items():
            grid = np.full((N, T + 1), fill[name], np.asarray(value).dtype)
            grid[rows, steps] = value[rows, cols]
            out[name] = grid
        return {k: jnp.asarray(v, jnp.float32 if v.dtype.kind == "f" else v.dtype) for k, v in out.items()}

    def usage(self) -> dict:
        """What a fit of these data uses: patients, ratings recorded and missing, sessions."""
        visit_slots = np.isfinite(self.visit_day)
        scheduled = self.arm.session_n[self.arm_index] > 0
        return {
            "patients": self.n_patients,
            "ema_ratings": {
                "used": int(np.isfinite(self.ema).sum()),
                "missing": int((~np.isfinite(self.ema)).sum()),
            },
            "visits": {
                "used": int(np.isfinite(self.visit_score).sum()),
                "missing": int((visit_slots & ~np.isfinite(self.visit_score)).sum()),
            },
            "sessions": {
                "attended": int((scheduled & (self.n_corr > 0)).sum()),
                "missed": int((scheduled & (self.n_corr == 0)).sum()),
            },
            "outcomes_logged": bool(self.has_outcomes),
            "notes": list(self.notes),
        }

    def shared_visit_steps(self) -> list[tuple[str, float, float]]:
        """Recorded visits of one patient that fall on one step: (patient, day, day), at most 5.

        The likelihood with the outcomes integrated out takes one visit per step.
        """
        mask = np.isfinite(self.visit_score)
        out = []
        for i in np.flatnonzero(mask.sum(axis=1) > 1):
            steps = self.visit_step[i][mask[i]]
            days = self.visit_day[i][mask[i]]
            _, first, counts = np.unique(steps, return_index=True, return_counts=True)
            for f, c in zip(first, counts):
                if c > 1:
                    dup = days[steps == steps[f]]
                    out.append((str(self.patient_ids[i]), float(dup[0]), float(dup[1])))
            if len(out) >= 5:
                break
        return out[:5]


# ----------------------------------------------------------------------------- shared pieces


def _visit_effects(cfg: Config, sch: Schedules, arm_index, visit_step):
    """D, E and the treated flag at each (patient, visit), as the simulator computes them."""
    return visit_effects(cfg.observations.visits, sch, arm_index, visit_step)


def _fixed_values(cfg: Config) -> dict[str, float]:
    g = belief_values(cfg)
    return {"mu_o": g["mu_o"], "V0_offset": g["V0_offset"]}


# ----------------------------------------------------------------------------- from a simulation


def from_simulation(sim: Simulation) -> FitData:
    """Fit inputs straight from a simulated cohort's arrays (no table round trip)."""
    cfg, sch = sim.config, sim.schedules
    ex = sim.experiences
    N = sim.n_patients
    K = sim.visits.shape[1]
    vstep = np.broadcast_to(np.asarray(sim.visit_steps, np.int64), (N, K)).copy()
    D, E, treated = _visit_effects(cfg, sch, sim.arm_index, vstep)
    return FitData(
        variant=sim.model.name,
        config=cfg,
        arm_names=tuple(sch.arm_names),
        patient_ids=np.arange(N),
        arm_index=np.asarray(sim.arm_index, np.int32),
        steps_per_day=sch.steps_per_day,
        days=cfg.experiment.days,
        arm=sim.inputs,
        schedules=sch,
        everyday=np.asarray(ex.everyday, np.float32),
        corrective=np.asarray(ex.corrective, np.float32),
        n_corr=np.asarray(ex.n_corr, np.int32),
        ema=np.asarray(sim.ema, np.float64),
        visit_day=np.broadcast_to(np.asarray(sim.visit_days, np.float64), (N, K)).copy(),
        visit_step=vstep,
        visit_score=np.asarray(sim.visits, np.float64),
        visit_D=D,
        visit_E=E,
        visit_treated=treated,
        m_max=float(cfg.observations.visits.m_max),
        fixed=_fixed_values(cfg),
    )


def from_tables(tables: dict[str, pd.DataFrame], cfg: Config, variant: str | None = None) -> FitData:
    """Fit inputs from tidy tables (``data.tables(sim)`` or ``data.read_tables(folder)``).

    The config supplies the schedules (doses, sessions), the kernel and the fixed observation
    constants; the tables supply what each patient experienced (``events``) and the ratings
    (``ema`` and/or ``visits``), checked by :func:`plasticity_rl.table_checks.arrays_from_tables`.
    Patients are ordered by id.
    """
    variant = variant or cfg.model.variant
    get_model(variant)  # a clear error for an unknown name
    sch = build_schedules(cfg)
    a = arrays_from_tables(tables, cfg, sch)
    D, E, treated = _visit_effects(cfg, sch, a.arm_index, a.visit_step)
    return FitData(
        variant=variant,
        config=cfg,
        arm_names=tuple(sch.arm_names),
        patient_ids=a.patients,
        arm_index=a.arm_index,
        steps_per_day=sch.steps_per_day,
        days=cfg.experiment.days,
        arm=arm_inputs(cfg, sch),
        schedules=sch,
        everyday=a.everyday,
        corrective=a.corrective,
        n_corr=a.n_corr,
        ema=a.ema,
        visit_day=a.visit_day,
        visit_step=a.visit_step,
        visit_score=a.visit_score,
        visit_D=D,
        visit_E=E,
        visit_treated=treated,
        m_max=float(cfg.observations.visits.m_max),
        fixed=_fixed_values(cfg),
        has_outcomes=a.outcomes_logged,
        notes=a.notes,
    )


def prepare(data, cfg: Config | None = None, variant: str | None = None) -> FitData:
    """FitData from a Simulation, a dict of tables (needs ``cfg``), or FitData (returned as is)."""
    if isinstance(data, FitData):
        return data if variant in (None, data.variant) else _with_variant(data, variant)
    if _is_simulation(data):
        fd = from_simulation(data)
        return fd if variant in (None, fd.variant) else _with_variant(fd, variant)
    if isinstance(data, dict):
        if cfg is None:
            raise ValueError("fitting tables needs the config that gives the arms' schedules (cfg=...)")
        return from_tables(data, cfg, variant)
    raise TypeError(f"cannot fit a {type(data).__name__}; give a Simulation, a dict of tables or FitData")


def _is_simulation(data) -> bool:
    """A :class:`plasticity_rl.simulate.Simulation`, recognised by its fields (no import of the simulator)."""
    return all(hasattr(data, f) for f in ("experiences", "trajectory", "schedules", "inputs", "model"))


def _with_variant(fd: FitData, variant: str) -> FitData:
    from dataclasses import replace

    get_model(variant)
    return replace(fd, variant=variant)
