"""Checks of the tables a user brings to a fit, with every problem listed at once.

Real users bring CSVs, so :func:`arrays_from_tables` reads the ``events``, ``ema`` and ``visits``
tables (columns in ``docs/tables.md``) into the arrays a fit needs and, when something is wrong,
raises one :class:`DataError` that lists each problem on a line and says how to fix it. Column
names match forgivingly (case and surrounding spaces do not matter).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from plasticity_rl.config import Config
from plasticity_rl.observe import SCORE_RANGE, visit_step_of
from plasticity_rl.schedule import Schedules

MAX_LISTED = 8  # problems of one kind listed before "... and N more"


class DataError(ValueError):
    """Tables that cannot be fitted. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("cannot fit these tables:\n" + "\n".join(f"  - {p}" for p in problems))


_REQUIRED = {
    "events": ("patient", "arm", "step", "kind", "index", "outcome"),
    "patients": ("patient", "arm"),
    "sessions": ("patient", "step", "attended"),
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


def renamed_columns(tables: dict[str, pd.DataFrame], mapping: dict[str, str]) -> dict[str, pd.DataFrame]:
    """``tables`` with their own column names mapped to the package's (``{"subject_id": "patient"}``).

    Names match forgivingly (case, surrounding spaces); a name found in no table is an error.
    """
    want = {str(k).strip().lower(): str(v).strip().lower() for k, v in mapping.items()}
    out, used = {}, set()
    for name, df in tables.items():
        df = _normalise_columns(df)
        hits = {c: want[c] for c in df.columns if c in want}
        used |= set(hits)
        out[name] = df.rename(columns=hits)
    unused = sorted(set(want) - used)
    if unused:
        raise DataError(
            [f"columns: {unused} found in no table (the tables' columns: "
             f"{sorted({c for df in out.values() for c in df.columns})})"]
        )  # fmt: skip
    return out


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


def _patient_ids(name: str, df: pd.DataFrame, problems: list[str]) -> np.ndarray | None:
    """The ``patient`` column: whole numbers (as numbers) or any other labels (as text, e.g. "P01").

    Surrounding spaces do not matter; an empty cell is listed with its row.
    """
    raw = df["patient"]
    text = raw.astype(str).str.strip()
    empty = raw.isna().to_numpy() | (text == "").to_numpy()
    if empty.any():
        _listed(
            problems, f"{name} table: column 'patient' is empty", [f"row {i}" for i in np.flatnonzero(empty)]
        )
        return None
    vals = pd.to_numeric(text, errors="coerce").to_numpy(np.float64)
    if np.isfinite(vals).all() and (vals == np.round(vals)).all():
        return vals.astype(np.int64)
    return text.to_numpy().astype(str)


def _as_float(name: str, df: pd.DataFrame, col: str, problems: list[str]) -> np.ndarray | None:
    raw = df[col]
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    text = ~raw.isna().to_numpy() & np.isnan(vals)  # present but not a number
    if text.any():
        rows = [f"row {i} ({raw.iloc[i]!r})" for i in np.flatnonzero(text)]
        _listed(problems, f"{name} table: column {col!r} must be numeric (empty for missing)", rows)
        return None
    return vals


def _patient_index(
    events: pd.DataFrame, pids: np.ndarray, arm_names: tuple[str, ...], problems, table: str = "events"
):
    """Patients (sorted ids) and their arm index; each patient must sit in one configured arm."""
    arms = events["arm"].astype(str).str.strip().to_numpy()
    unknown = sorted(set(arms) - set(arm_names))
    if unknown:
        problems.append(
            f"{table} table: arm(s) {unknown} are not in the config's arms {list(arm_names)}; "
            "the config gives each arm's schedule, so the names must match"
        )
        return None, None
    frame = pd.DataFrame({"patient": pids, "arm": arms}).drop_duplicates()
    multi = frame.groupby("patient")["arm"].nunique()
    if (multi > 1).any():
        _listed(
            problems,
            f"{table} table: patients listed in more than one arm",
            [f"patient {p}" for p in multi.index[multi > 1]],
        )
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
        _listed(
            problems,
            "events table: outcome missing (every logged experience needs an outcome 0 "
            "or 1; a missed session has no corrective rows at all)",
            rows,
        )
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
    _listed(
        problems,
        "events table: more than one everyday outcome at a step",
        [f"patient {patients[a]} step {b}" for a, b in dup],
    )
    gap = np.argwhere(counts == 0)
    _listed(
        problems,
        f"events table: everyday outcome missing (each patient needs one at every step 0..{T - 1})",
        [f"patient {patients[a]} step {b}" for a, b in gap],
    )

    corr = ~every
    n_corr = np.zeros((N, T), np.int64)
    np.add.at(n_corr, (i[corr], step[corr]), 1)
    scheduled = sch.session_n[arm_index]  # (N, T)
    over = np.argwhere(n_corr > scheduled)
    _listed(
        problems,
        "events table: more corrective outcomes than the arm's session schedules "
        "(check the config's sessions for that arm)",
        [f"patient {patients[a]} step {b} ({n_corr[a, b]} > {scheduled[a, b]})" for a, b in over],
    )
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
    pid = _patient_ids("ema", ema, problems)
    day = _as_int("ema", ema, "day", problems)
    rating = _as_float("ema", ema, "rating", problems)
    if pid is None or day is None or rating is None:
        return out
    known = np.isin(pid, patients)
    _listed(
        problems,
        "ema table: patients not in the events or patients table (their arm is unknown)",
        [f"patient {p}" for p in sorted(set(pid[~known]))],
    )
    bad_day = (day < 0) | (day >= days)
    _listed(
        problems,
        f"ema table: day outside 0..{days - 1}",
        [f"patient {pid[r]} day {day[r]}" for r in np.flatnonzero(bad_day)],
    )
    bad = np.isfinite(rating) & ((rating <= 0) | (rating >= 1))
    _listed(
        problems,
        "ema table: rating out of range (allowed: strictly between 0 and 1, empty if "
        "missing; rescale a bounded scale y in [0, 1] as (y (n - 1) + 0.5) / n)",
        [f"patient {pid[r]} day {day[r]} ({rating[r]:g})" for r in np.flatnonzero(bad)],
    )
    if "missing" in ema.columns:  # the flag and the value must agree
        flagged = ema["missing"].astype(str).str.strip().str.lower().isin(["true", "1"]).to_numpy()
        _listed(
            problems,
            "ema table: rating given but marked missing (empty the rating or set missing to False)",
            [f"patient {pid[r]} day {day[r]:g}" for r in np.flatnonzero(flagged & np.isfinite(rating))],
        )
    if problems:
        return out
    row_of = {p: i for i, p in enumerate(patients)}
    i = np.array([row_of[p] for p in pid], np.int64)
    seen = pd.DataFrame({"i": i, "d": day}).duplicated()
    _listed(
        problems,
        "ema table: more than one rating per patient and day",
        [f"patient {pid[r]} day {day[r]}" for r in np.flatnonzero(seen.to_numpy())],
    )
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
    pid = _patient_ids("visits", visits, problems)
    day = _as_float("visits", visits, "day", problems)
    score = _as_float("visits", visits, "score", problems)
    if pid is None or day is None or score is None:
        return empty
    known = np.isin(pid, patients)
    _listed(
        problems,
        "visits table: patients not in the events or patients table (their arm is unknown)",
        [f"patient {p}" for p in sorted(set(pid[~known]))],
    )
    bad_day = ~np.isfinite(day) | (day < 0) | (day > days)
    _listed(
        problems,
        f"visits table: day missing or outside 0..{days}",
        [f"patient {pid[r]} row {r}" for r in np.flatnonzero(bad_day)],
    )
    lo, hi = SCORE_RANGE
    bad = np.isfinite(score) & ((score < lo) | (score > hi))
    _listed(
        problems,
        f"visits table: score out of range (allowed: {lo:g} to {hi:g}, empty if missing)",
        [f"patient {pid[r]} day {day[r]:g} ({score[r]:g})" for r in np.flatnonzero(bad)],
    )
    if "missing" in visits.columns:  # the flag and the value must agree
        flagged = visits["missing"].astype(str).str.strip().str.lower().isin(["true", "1"]).to_numpy()
        _listed(
            problems,
            "visits table: score given but marked missing (empty the score or set missing to False)",
            [f"patient {pid[r]} day {day[r]:g}" for r in np.flatnonzero(flagged & np.isfinite(score))],
        )
    if problems:
        return empty
    step = np.array([visit_step_of(d, spd, days) for d in day], np.int64)
    if "step" in visits.columns:
        given = pd.to_numeric(visits["step"], errors="coerce").to_numpy(np.float64)
        off = np.isfinite(given) & (given != step)
        _listed(
            problems,
            "visits table: column 'step' disagrees with round(day x steps_per_day) "
            "(drop the column, or fix the day)",
            [
                f"patient {pid[r]} day {day[r]:g} (step {given[r]:g}, expected {step[r]})"
                for r in np.flatnonzero(off)
            ],
        )
    row_of = {p: i for i, p in enumerate(patients)}
    i = np.array([row_of[p] for p in pid], np.int64)
    twice = pd.DataFrame({"i": i, "d": day}).duplicated().to_numpy()  # would be counted twice
    _listed(
        problems,
        "visits table: more than one visit per patient and day (merge or drop the repeated rows)",
        [f"patient {pid[r]} day {day[r]:g}" for r in np.flatnonzero(twice)],
    )
    if problems:
        return empty
    order = np.lexsort((day, i))
    i, day, step, score = i[order], day[order], step[order], score[order]
    slot = pd.Series(i).groupby(i).cumcount().to_numpy()
    K = int(slot.max()) + 1 if slot.size else 0
    vday = np.full((N, K), np.nan)
    vstep = np.zeros((N, K), np.int64)
    vscore = np.full((N, K), np.nan)
    vday[i, slot], vstep[i, slot], vscore[i, slot] = day, step, score
    return vday, vstep, vscore


class TableArrays(NamedTuple):
    """What the tables say, as arrays over patients (ordered by id)."""

    patients: np.ndarray  # (N,) patient ids
    arm_index: np.ndarray  # (N,) index into the schedules' arm names
    everyday: np.ndarray  # (N, T) everyday outcomes in {0, 1}
    corrective: np.ndarray  # (N, T, n_max) corrective outcomes in {0, 1}
    n_corr: np.ndarray  # (N, T) corrective experiences seen at each step
    ema: np.ndarray  # (N, days) ratings, NaN where not recorded
    visit_day: np.ndarray  # (N, K)
    visit_step: np.ndarray  # (N, K)
    visit_score: np.ndarray  # (N, K) scores, NaN where not recorded
    outcomes_logged: bool = True  # False: no events table (everyday and corrective are zeros)
    notes: tuple[str, ...] = ()  # what the fit should say about these tables (not errors)


def _timestamps(name: str, df: pd.DataFrame, col: str, problems: list[str]):
    """A column of ISO 8601 date-times as UTC (naive ones taken as UTC); unparseable cells listed."""
    raw = df[col]
    text = raw.astype(str).str.strip()
    empty = raw.isna().to_numpy() | (text == "").to_numpy()
    parsed = pd.to_datetime(text.where(~empty), errors="coerce", utc=True, format="ISO8601")
    bad = ~empty & parsed.isna().to_numpy()
    _listed(
        problems,
        f"{name} table: column {col!r} must hold ISO 8601 date-times (e.g. 2026-03-02T09:30)",
        [f"row {i} ({raw.iloc[i]!r})" for i in np.flatnonzero(bad | empty)],
    )
    return None if (bad | empty).any() else parsed


def days_from_timestamps(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``ema`` and ``visits`` given in clock time: a ``time`` column (ISO 8601) in place of ``day``,
    turned into days since each patient's ``start`` (a column of the ``patients`` table, the
    date-time of the patient's day 0). An EMA rating's day is the whole day it falls in; a
    visit's day keeps its fraction. Tables with a ``day`` column are left as they are.
    """
    timed = [
        n for n in ("ema", "visits")
        if n in tables and "time" in _normalise_columns(tables[n]).columns
        and "day" not in _normalise_columns(tables[n]).columns
    ]  # fmt: skip
    if not timed:
        return tables
    problems: list[str] = []
    frame = _normalise_columns(tables["patients"]) if "patients" in tables else None
    if frame is None or "start" not in frame.columns or "patient" not in frame.columns:
        raise DataError(
            [f"{', '.join(timed)}: times given as date-times ('time'), so the patients table needs "
             "columns 'patient' and 'start' (each patient's day 0, ISO 8601); or give 'day' instead"]
        )  # fmt: skip
    pid = _patient_ids("patients", frame, problems)
    start = _timestamps("patients", frame, "start", problems)
    if problems:
        raise DataError(problems)
    start_of = dict(zip(map(str, pid), start))
    out = dict(tables)
    for name in timed:
        df = _normalise_columns(tables[name])
        ids = _patient_ids(name, df, problems)
        when = _timestamps(name, df, "time", problems)
        if ids is None or when is None:
            continue
        unknown = [str(p) for p in ids if str(p) not in start_of]
        _listed(problems, f"{name} table: patients with no start in the patients table", sorted(set(unknown)))
        if unknown:
            continue
        origin = pd.DatetimeIndex([start_of[str(p)] for p in ids])
        days = ((pd.DatetimeIndex(when) - origin) / pd.Timedelta(days=1)).to_numpy(np.float64)
        out[name] = df.drop(columns="time").assign(
            day=np.floor(days).astype(np.int64) if name == "ema" else days
        )
    if problems:
        raise DataError(problems)
    return out


def arrays_from_tables(tables: dict[str, pd.DataFrame], cfg: Config, sch: Schedules) -> TableArrays:
    """The fit's arrays from tidy tables, or one :class:`DataError` listing every problem."""
    problems: list[str] = []
    tables = days_from_timestamps(tables)
    if "ema" not in tables and "visits" not in tables:
        raise DataError(["no ratings: give an ema table and/or a visits table"])
    if "events" in tables:
        events = _normalise_columns(tables["events"])
        if not _check_columns("events", events, problems):
            raise DataError(problems)
        pid = _patient_ids("events", events, problems)
        step = _as_int("events", events, "step", problems)
        if problems:
            raise DataError(problems)
        patients, arm_index = _patient_index(events, pid, sch.arm_names, problems)
        if problems:
            raise DataError(problems)
        arrays = _events_arrays(events, pid, step, patients, arm_index, sch, problems)
    else:
        patients, arm_index = _patients_without_events(tables, sch, problems)
        arrays = (
            None if problems else _unlogged_arrays(tables.get("sessions"), patients, arm_index, sch, problems)
        )
    days = cfg.experiment.days
    ema = _ema_array(tables.get("ema"), patients, days, problems)
    vday, vstep, vscore = _visit_arrays(tables.get("visits"), patients, cfg, problems)
    if problems or arrays is None:
        raise DataError(problems)
    if not (np.isfinite(ema).any() or np.isfinite(vscore).any()):
        raise DataError(["every rating is missing: there is nothing to fit"])
    everyday, corrective, n_corr = arrays
    notes = tuple(
        f"the {name} table holds no recorded {what}: the fit uses the other ratings only"
        for name, what, values in (("ema", "rating", ema), ("visits", "score", vscore))
        if name in tables and not np.isfinite(values).any()
    )
    return TableArrays(
        patients, arm_index, everyday, corrective, n_corr, ema, vday, vstep, vscore, "events" in tables, notes
    )


def _patients_without_events(tables, sch: Schedules, problems):
    """Patients and arms from the ``patients`` table, when no outcomes were logged."""
    if "patients" not in tables:
        raise DataError(
            [
                "no events table and no patients table: without logged outcomes the fit needs "
                f"each patient's arm (a patients table with columns {list(_REQUIRED['patients'])})"
            ]
        )
    frame = _normalise_columns(tables["patients"])
    if not _check_columns("patients", frame, problems):
        raise DataError(problems)
    pid = _patient_ids("patients", frame, problems)
    if problems:
        raise DataError(problems)
    patients, arm_index = _patient_index(frame, pid, sch.arm_names, problems, table="patients")
    if problems:
        raise DataError(problems)
    return patients, arm_index


def _unlogged_arrays(sessions, patients, arm_index, sch: Schedules, problems):
    """Zero outcomes (not logged) and the corrective experiences each attended session delivered.

    ``sessions`` (patient, step, attended): a scheduled session not attended delivers none;
    without the table every scheduled session counts as attended.
    """
    N, T = patients.shape[0], sch.session_n.shape[1]
    n_corr = sch.session_n[arm_index].astype(np.int64)  # (N, T) as scheduled
    if sessions is not None:
        frame = _normalise_columns(sessions)
        if not _check_columns("sessions", frame, problems):
            return None
        pid = _patient_ids("sessions", frame, problems)
        step = _as_int("sessions", frame, "step", problems)
        if pid is None or step is None:
            return None
        attended = frame["attended"].astype(str).str.strip().str.lower()
        bad = ~attended.isin(["true", "false", "1", "0"]).to_numpy()
        _listed(
            problems,
            "sessions table: column 'attended' must be true or false",
            [f"row {r} ({frame['attended'].iloc[r]!r})" for r in np.flatnonzero(bad)],
        )
        row_of = {p: i for i, p in enumerate(patients)}
        unknown = ~np.isin(pid, patients)
        _listed(
            problems,
            "sessions table: patients not in the patients table",
            [f"patient {p}" for p in sorted(set(pid[unknown]))],
        )
        if problems:
            return None
        i = np.array([row_of[p] for p in pid], np.int64)
        off = (step < 0) | (step >= T)
        off[~off] = n_corr[i[~off], step[~off]] == 0
        _listed(
            problems,
            "sessions table: a session at a step the arm's schedule has none (check the config's sessions)",
            [f"patient {pid[r]} step {step[r]}" for r in np.flatnonzero(off)],
        )
        if problems:
            return None
        missed = attended.isin(["false", "0"]).to_numpy()
        n_corr[i[missed], step[missed]] = 0
    n_max = max(sch.n_c_max, int(n_corr.max(initial=0)))
    return (
        np.zeros((N, T), np.float32),
        np.zeros((N, T, n_max), np.float32),
        n_corr.astype(np.int32),
    )
