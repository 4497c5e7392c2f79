"""The arrays a fit conditions on, from a :class:`~plasticity_rl.simulate.Simulation` or from tables.

Real users bring CSVs, so :func:`from_tables` validates them and says how to fix what is wrong:
every problem found is listed (one line each) in a single :class:`DataError`.

Two kinds of missing data are kept apart (DESIGN, STYLE):

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
from plasticity_rl.observe import SCORE_RANGE, ema_steps, visit_effects, visit_step_of
from plasticity_rl.params import belief_values
from plasticity_rl.plasticity import ArmInputs, arm_inputs, scheduled_session_steps
from plasticity_rl.schedule import Schedules, build_schedules

if TYPE_CHECKING:  # the simulator is upstream of the fit, never imported by it
    from plasticity_rl.simulate import Simulation
MAX_LISTED = 8  # problems of one kind listed before "... and N more"


class DataError(ValueError):
    """Tables that cannot be fitted. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("cannot fit these tables:\n" + "\n".join(f"  - {p}" for p in problems))


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
            session_steps=jnp.asarray(np.union1d(scheduled_session_steps(self.arm),
                                                 np.flatnonzero((self.n_corr > 0).any(axis=0))), jnp.int32),
            ema=jnp.asarray(np.where(ema_mask, self.ema, 0.5), jnp.float32),
            ema_mask=jnp.asarray(ema_mask),
            ema_step=jnp.asarray(ema_steps(self.days, spd), jnp.int32),
            visit_score=jnp.asarray(np.where(visit_mask, self.visit_score, 30.0), jnp.float32),
            visit_mask=jnp.asarray(visit_mask),
            visit_step=jnp.asarray(self.visit_step, jnp.int32),
            visit_D=jnp.asarray(self.visit_D, jnp.float32),
            visit_E=jnp.asarray(self.visit_E, jnp.float32),
            visit_treated=jnp.asarray(self.visit_treated),
        )


# ----------------------------------------------------------------------------- shared pieces


def _visit_effects(cfg: Config, sch: Schedules, arm_index, visit_step):
    """D, E and the treated flag at each (patient, visit), as the simulator computes them."""
    return visit_effects(cfg.observations.visits, sch, arm_index, visit_step)


def _fixed_values(cfg: Config) -> dict[str, float]:
    g = belief_values(cfg)
    return {"mu_o": g["mu_o"], "V0_offset": g["V0_offset"]}


# ----------------------------------------------------------------------------- from a simulation


def from_simulation(sim: "Simulation") -> FitData:
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


# ----------------------------------------------------------------------------- from tables

_REQUIRED = {
    "events": ("patient", "arm", "step", "kind", "index", "outcome"),
    "ema": ("patient", "day", "rating"),
    "visits": ("patient", "day", "score"),
}


def _listed(problems: list[str], head: str, items: list[str]) -> None:
    if not items:
        return
    shown = ", ".join(items[:MAX_LISTED])
    more = f" ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    problems.append(f"{head}: {shown}{more}")


def _normalise_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Column names matched forgivingly: case and surrounding spaces do not matter."""
    return df.rename(columns={c: str(c).strip().lower() for c in df.columns})


def _check_columns(name: str, df: pd.DataFrame, problems: list[str]) -> bool:
    missing = [c for c in _REQUIRED[name] if c not in df.columns]
    if missing:
        problems.append(
            f"{name} table: missing column(s) {missing}; it needs {list(_REQUIRED[name])} "
            f"(found {list(df.columns)})"
        )
        return False
    return True


def _as_int(name: str, df: pd.DataFrame, col: str, problems: list[str]) -> np.ndarray | None:
    """A column of whole numbers; NaN or fractional values are listed with their row."""
    vals = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(vals) | (vals != np.round(vals))
    if bad.any():
        rows = [f"row {i} ({df[col].iloc[i]!r})" for i in np.flatnonzero(bad)]
        _listed(problems, f"{name} table: column {col!r} must hold whole numbers", rows)
        return None
    return vals.astype(np.int64)


def _as_float(name: str, df: pd.DataFrame, col: str, problems: list[str]) -> np.ndarray | None:
    raw = df[col]
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    text = ~raw.isna().to_numpy() & np.isnan(vals)  # present but not a number
    if text.any():
        rows = [f"row {i} ({raw.iloc[i]!r})" for i in np.flatnonzero(text)]
        _listed(problems, f"{name} table: column {col!r} must be numeric (empty for missing)", rows)
        return None
    return vals


def _patient_index(events: pd.DataFrame, pids: np.ndarray, arm_names: tuple[str, ...], problems):
    """Patients (sorted ids) and their arm index; each patient must sit in one configured arm."""
    arms = events["arm"].astype(str).str.strip().to_numpy()
    unknown = sorted(set(arms) - set(arm_names))
    if unknown:
        problems.append(
            f"events table: arm(s) {unknown} are not in the config's arms {list(arm_names)}; "
            "the config gives each arm's schedule, so the names must match"
        )
        return None, None
    frame = pd.DataFrame({"patient": pids, "arm": arms}).drop_duplicates()
    multi = frame.groupby("patient")["arm"].nunique()
    if (multi > 1).any():
        _listed(problems, "events table: patients listed in more than one arm",
                [f"patient {p}" for p in multi.index[multi > 1]])
        return None, None
    frame = frame.sort_values("patient")
    lookup = {a: i for i, a in enumerate(arm_names)}
    return frame["patient"].to_numpy(), np.array([lookup[a] for a in frame["arm"]], np.int32)


def _events_arrays(events, pid, step, patients, arm_index, sch: Schedules, problems):
    N, T = patients.shape[0], sch.n_steps
    row_of = {p: i for i, p in enumerate(patients)}
    i = np.array([row_of[p] for p in pid], np.int64)
    kind = events["kind"].astype(str).str.strip().str.lower().to_numpy()
    bad_kind = ~np.isin(kind, ["everyday", "corrective"])
    if bad_kind.any():
        rows = [f"row {r} ({events['kind'].iloc[r]!r})" for r in np.flatnonzero(bad_kind)]
        _listed(problems, "events table: column 'kind' must be 'everyday' or 'corrective'", rows)
    out_of_grid = (step < 0) | (step >= T)
    if out_of_grid.any():
        rows = [f"patient {pid[r]} step {step[r]}" for r in np.flatnonzero(out_of_grid)]
        _listed(problems, f"events table: step outside 0..{T - 1} (days x steps_per_day of the config)", rows)
    outcome = pd.to_numeric(events["outcome"], errors="coerce").to_numpy(np.float64)
    nan = np.isnan(outcome)
    if nan.any():
        rows = [f"patient {pid[r]} step {step[r]} ({kind[r]})" for r in np.flatnonzero(nan)]
        _listed(problems, "events table: outcome missing (every logged experience needs an outcome 0 "
                "or 1; a missed session has no corrective rows at all)", rows)
    bad = ~nan & ~np.isin(outcome, [0.0, 1.0])
    if bad.any():
        rows = [f"patient {pid[r]} step {step[r]} (outcome {outcome[r]:g})" for r in np.flatnonzero(bad)]
        _listed(problems, "events table: outcome out of range (allowed: 0 or 1)", rows)
    if problems:
        return None

    every = kind == "everyday"
    everyday = np.full((N, T), np.nan, np.float32)
    counts = np.zeros((N, T), np.int64)
    np.add.at(counts, (i[every], step[every]), 1)
    everyday[i[every], step[every]] = outcome[every]
    dup = np.argwhere(counts > 1)
    _listed(problems, "events table: more than one everyday outcome at a step",
            [f"patient {patients[a]} step {b}" for a, b in dup])
    gap = np.argwhere(counts == 0)
    _listed(problems, "events table: everyday outcome missing (each patient needs one at every step "
            f"0..{T - 1})", [f"patient {patients[a]} step {b}" for a, b in gap])

    corr = ~every
    n_corr = np.zeros((N, T), np.int64)
    np.add.at(n_corr, (i[corr], step[corr]), 1)
    scheduled = sch.session_n[arm_index]  # (N, T)
    over = np.argwhere(n_corr > scheduled)
    _listed(problems, "events table: more corrective outcomes than the arm's session schedules "
            "(check the config's sessions for that arm)",
            [f"patient {patients[a]} step {b} ({n_corr[a, b]} > {scheduled[a, b]})" for a, b in over])
    n_max = max(sch.n_c_max, int(n_corr.max(initial=0)))
    corrective = np.zeros((N, T, n_max), np.float32)
    if corr.any():
        ci, cs = i[corr], step[corr]
        order = pd.to_numeric(events["index"], errors="coerce").to_numpy(np.float64)[corr]
        frame = pd.DataFrame({"i": ci, "s": cs, "order": order, "o": outcome[corr]})
        frame = frame.sort_values(["i", "s", "order"], kind="stable")
        slot = frame.groupby(["i", "s"]).cumcount().to_numpy()
        corrective[frame["i"].to_numpy(), frame["s"].to_numpy(), slot] = frame["o"].to_numpy()
    if problems:
        return None
    return everyday, corrective, n_corr.astype(np.int32)


def _ema_array(ema, patients, days, problems):
    N = patients.shape[0]
    out = np.full((N, days), np.nan)
    if ema is None:
        return out
    ema = _normalise_columns(ema)
    if not _check_columns("ema", ema, problems):
        return out
    pid = _as_int("ema", ema, "patient", problems)
    day = _as_int("ema", ema, "day", problems)
    rating = _as_float("ema", ema, "rating", problems)
    if pid is None or day is None or rating is None:
        return out
    known = np.isin(pid, patients)
    _listed(problems, "ema table: patients with no events (their beliefs cannot be computed)",
            [f"patient {p}" for p in sorted(set(pid[~known]))])
    bad_day = (day < 0) | (day >= days)
    _listed(problems, f"ema table: day outside 0..{days - 1}",
            [f"patient {pid[r]} day {day[r]}" for r in np.flatnonzero(bad_day)])
    bad = np.isfinite(rating) & ((rating <= 0) | (rating >= 1))
    _listed(problems, "ema table: rating out of range (allowed: strictly between 0 and 1, empty if "
            "missing; rescale a bounded scale y in [0, 1] as (y (n - 1) + 0.5) / n)",
            [f"patient {pid[r]} day {day[r]} ({rating[r]:g})" for r in np.flatnonzero(bad)])
    if "missing" in ema.columns:  # the flag and the value must agree
        flagged = ema["missing"].astype(str).str.strip().str.lower().isin(["true", "1"]).to_numpy()
        _listed(problems, "ema table: rating given but marked missing (empty the rating or set missing "
                "to False)", [f"patient {pid[r]} day {day[r]:g}"
                              for r in np.flatnonzero(flagged & np.isfinite(rating))])
    if problems:
        return out
    row_of = {p: i for i, p in enumerate(patients)}
    i = np.array([row_of[p] for p in pid], np.int64)
    seen = pd.DataFrame({"i": i, "d": day}).duplicated()
    _listed(problems, "ema table: more than one rating per patient and day",
            [f"patient {pid[r]} day {day[r]}" for r in np.flatnonzero(seen.to_numpy())])
    out[i, day] = rating
    return out


def _visit_arrays(visits, patients, cfg: Config, problems):
    N = patients.shape[0]
    spd, days = cfg.experiment.steps_per_day, cfg.experiment.days
    empty = (np.zeros((N, 0)), np.zeros((N, 0), np.int64), np.zeros((N, 0)))
    if visits is None:
        return empty
    visits = _normalise_columns(visits)
    if not _check_columns("visits", visits, problems):
        return empty
    pid = _as_int("visits", visits, "patient", problems)
    day = _as_float("visits", visits, "day", problems)
    score = _as_float("visits", visits, "score", problems)
    if pid is None or day is None or score is None:
        return empty
    known = np.isin(pid, patients)
    _listed(problems, "visits table: patients with no events (their beliefs cannot be computed)",
            [f"patient {p}" for p in sorted(set(pid[~known]))])
    bad_day = ~np.isfinite(day) | (day < 0) | (day > days)
    _listed(problems, f"visits table: day missing or outside 0..{days}",
            [f"patient {pid[r]} row {r}" for r in np.flatnonzero(bad_day)])
    lo, hi = SCORE_RANGE
    bad = np.isfinite(score) & ((score < lo) | (score > hi))
    _listed(problems, f"visits table: score out of range (allowed: {lo:g} to {hi:g}, empty if missing)",
            [f"patient {pid[r]} day {day[r]:g} ({score[r]:g})" for r in np.flatnonzero(bad)])
    if "missing" in visits.columns:  # the flag and the value must agree
        flagged = visits["missing"].astype(str).str.strip().str.lower().isin(["true", "1"]).to_numpy()
        _listed(problems, "visits table: score given but marked missing (empty the score or set missing "
                "to False)", [f"patient {pid[r]} day {day[r]:g}"
                              for r in np.flatnonzero(flagged & np.isfinite(score))])
    if problems:
        return empty
    step = np.array([visit_step_of(d, spd, days) for d in day], np.int64)
    if "step" in visits.columns:
        given = pd.to_numeric(visits["step"], errors="coerce").to_numpy(np.float64)
        off = np.isfinite(given) & (given != step)
        _listed(problems, "visits table: column 'step' disagrees with round(day x steps_per_day) "
                "(drop the column, or fix the day)",
                [f"patient {pid[r]} day {day[r]:g} (step {given[r]:g}, expected {step[r]})"
                 for r in np.flatnonzero(off)])
    row_of = {p: i for i, p in enumerate(patients)}
    i = np.array([row_of[p] for p in pid], np.int64)
    order = np.lexsort((day, i))
    i, day, step, score = i[order], day[order], step[order], score[order]
    slot = pd.Series(i).groupby(i).cumcount().to_numpy()
    K = int(slot.max()) + 1 if slot.size else 0
    vday = np.full((N, K), np.nan)
    vstep = np.zeros((N, K), np.int64)
    vscore = np.full((N, K), np.nan)
    vday[i, slot], vstep[i, slot], vscore[i, slot] = day, step, score
    return vday, vstep, vscore


def from_tables(tables: dict[str, pd.DataFrame], cfg: Config, variant: str | None = None) -> FitData:
    """Fit inputs from tidy tables (``data.tables(sim)`` or ``data.read_tables(folder)``).

    The config supplies the schedules (doses, sessions), the kernel and the fixed observation
    constants; the tables supply what each patient experienced (``events``) and the ratings
    (``ema`` and/or ``visits``). Patients are ordered by id.
    """
    variant = variant or cfg.model.variant
    get_model(variant)  # a clear error for an unknown name
    problems: list[str] = []
    if "events" not in tables:
        raise DataError(["no events table: the fit conditions on every logged outcome "
                         f"(columns {list(_REQUIRED['events'])})"])
    if "ema" not in tables and "visits" not in tables:
        raise DataError(["no ratings: give an ema table and/or a visits table"])
    events = _normalise_columns(tables["events"])
    if not _check_columns("events", events, problems):
        raise DataError(problems)
    pid = _as_int("events", events, "patient", problems)
    step = _as_int("events", events, "step", problems)
    if problems:
        raise DataError(problems)
    sch = build_schedules(cfg)
    patients, arm_index = _patient_index(events, pid, sch.arm_names, problems)
    if problems:
        raise DataError(problems)
    arrays = _events_arrays(events, pid, step, patients, arm_index, sch, problems)
    days = cfg.experiment.days
    ema = _ema_array(tables.get("ema"), patients, days, problems)
    vday, vstep, vscore = _visit_arrays(tables.get("visits"), patients, cfg, problems)
    if problems or arrays is None:
        raise DataError(problems)
    if not (np.isfinite(ema).any() or np.isfinite(vscore).any()):
        raise DataError(["every rating is missing: there is nothing to fit"])
    everyday, corrective, n_corr = arrays
    D, E, treated = _visit_effects(cfg, sch, arm_index, vstep)
    return FitData(
        variant=variant,
        config=cfg,
        arm_names=tuple(sch.arm_names),
        patient_ids=patients,
        arm_index=arm_index,
        steps_per_day=sch.steps_per_day,
        days=days,
        arm=arm_inputs(cfg, sch),
        schedules=sch,
        everyday=everyday,
        corrective=corrective,
        n_corr=n_corr,
        ema=ema,
        visit_day=vday,
        visit_step=vstep,
        visit_score=vscore,
        visit_D=D,
        visit_E=E,
        visit_treated=treated,
        m_max=float(cfg.observations.visits.m_max),
        fixed=_fixed_values(cfg),
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
