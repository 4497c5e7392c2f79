"""Tidy tables of a simulated (or real) trial, and their documented schema.

A missing *rating* (``ema.missing`` / ``visits.missing``) means the response was not recorded:
the row stays, its value is empty, and a fit drops only that likelihood term. A missed therapy
*session* (``sessions.attended == False``) means the patient saw nothing: no corrective events
are logged for it and beliefs carry on unchanged. The two are kept apart by name.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # tables are made from a simulation's arrays; the simulator is not needed to read them
    from plasticity_rl.simulate import Simulation


# table -> column -> (dtype, unit / range, meaning)
SCHEMA: dict[str, dict[str, tuple[str, str, str]]] = {
    "arms": {
        "arm": ("string", "", "arm name (unique)"),
        "label": ("string", "", "human-readable label"),
        "n_patients": ("int64", ">= 1", "patients in the arm"),
        "dose_days": ("string", "days", "dose times (day + hour/24) and amounts, 'time:amount;...'"),
        "session_days": ("string", "days", "scheduled session times, ';'-separated"),
    },
    "patients": {
        "patient": ("int64", ">= 0", "patient id, unique in the trial"),
        "arm": ("string", "", "arm name"),
        "<param>": (
            "float64",
            "unconstrained",
            "true per-patient parameters of the model variant "
            "(logit_alpha0, A, logit_S0; asymmetric: logit_alpha0_pos/neg, A_pos/neg)",
        ),
        "alpha0": ("float64", "(0, 1)", "baseline learning rate (alpha0+ in asymmetric variants)"),
        "S0": ("float64", "(0, 1)", "initial schema (core belief)"),
        "V0": ("float64", "(0, 1)", "initial day-to-day expectation"),
    },
    "events": {
        "patient": ("int64", ">= 0", "patient id"),
        "arm": ("string", "", "arm name"),
        "step": ("int64", "0 .. days*steps_per_day-1", "time step"),
        "day": ("float64", "days", "time of the step's start (step / steps_per_day)"),
        "kind": (
            "string",
            "everyday | corrective",
            "everyday experience or a corrective experience in a session",
        ),
        "index": ("int64", ">= 0", "order within the step (corrective experiences come first, in order)"),
        "outcome": ("int8", "0 | 1", "perceived outcome (1 = went well)"),
    },
    "sessions": {
        "patient": ("int64", ">= 0", "patient id"),
        "arm": ("string", "", "arm name"),
        "session": ("int64", ">= 0", "session number within the arm"),
        "step": ("int64", "", "time step of the session"),
        "day": ("float64", "days", "time of the session's step"),
        "n_c": ("int64", ">= 1", "corrective experiences scheduled"),
        "p_c": ("float64", "[0, 1]", "chance each corrective experience goes well"),
        "attended": ("bool", "", "False: a missed session - the patient saw nothing"),
    },
    "trajectories": {
        "patient": ("int64", ">= 0", "patient id"),
        "arm": ("string", "", "arm name"),
        "step": ("int64", "", "time step"),
        "day": ("float64", "days", "time of the step's start"),
        "alpha": ("float64", "[0, 1)", "learning rate at the step (alpha+ in asymmetric variants)"),
        "alpha_neg": ("float64", "[0, 1)", "asymmetric variants only: learning rate for negative errors"),
        "V": ("float64", "(0, 1)", "day-to-day expectation after the step's events"),
        "S": ("float64", "(0, 1) or empty", "schema after the step's events; empty for rw variants"),
    },
    "ema": {
        "patient": ("int64", ">= 0", "patient id"),
        "arm": ("string", "", "arm name"),
        "day": ("int64", "0 .. days-1", "the rating is of V at the end of this day"),
        "rating": ("float64", "(0, 1) or empty", "Beta(V phi, (1 - V) phi) self-rating"),
        "missing": ("bool", "", "True: not recorded (rating empty)"),
    },
    "visits": {
        "patient": ("int64", ">= 0", "patient id"),
        "arm": ("string", "", "arm name"),
        "visit": ("int64", ">= 0", "visit number"),
        "day": ("float64", "days", "scheduled time of the visit"),
        "step": ("int64", "", "the visit sees beliefs at the start of this step"),
        "score": ("float64", "0-60 MADRS points or empty", "clinician score, clipped to 0-60"),
        "missing": ("bool", "", "True: not recorded (score empty)"),
        "expected": ("float64", "MADRS points", "simulation truth: m_max (1 - V) - D - E, no noise"),
        "drug_lift": ("float64", "MADRS points", "simulation truth: acute drug-state lift D(t)"),
        "infusion_response": (
            "float64",
            "MADRS points",
            "simulation truth: non-specific infusion response E(t)",
        ),
    },
}


def _times(values) -> str:
    return ";".join(f"{v:g}" for v in values)


def arms_table(sim: Simulation) -> pd.DataFrame:
    cfg = sim.config
    rows = []
    for arm in cfg.all_arms():
        doses = [f"{t:g}:{d.amount:g}" for d in arm.doses for t in d.times_days()]
        sessions = [t for s in arm.sessions for t in s.times_days()]
        rows.append(
            {
                "arm": arm.name,
                "label": arm.label or arm.name,
                "n_patients": cfg.patients_in(arm),
                "dose_days": ";".join(doses),
                "session_days": _times(sessions),
            }
        )
    return pd.DataFrame(rows).astype(
        {"arm": "string", "label": "string", "dose_days": "string", "session_days": "string"}
    )


def _base(sim: Simulation) -> tuple[np.ndarray, np.ndarray]:
    names = np.asarray(sim.schedules.arm_names, dtype=object)
    return np.arange(sim.n_patients), names[sim.arm_index]


def patients_table(sim: Simulation) -> pd.DataFrame:
    import jax

    pid, arm = _base(sim)
    df = pd.DataFrame({"patient": pid, "arm": pd.array(arm, dtype="string")})
    for name in sim.model.patient_params:
        df[name] = sim.params[name].astype(np.float64)
    a0 = "logit_alpha0_pos" if sim.model.asymmetric else "logit_alpha0"
    df["alpha0"] = 1.0 / (1.0 + np.exp(-df[a0]))
    df["S0"] = 1.0 / (1.0 + np.exp(-df["logit_S0"]))
    df["V0"] = np.asarray(jax.vmap(sim.model.initial)(sim.params).V, np.float64)
    return df


def _step_frame(sim: Simulation, values: dict[str, np.ndarray]) -> pd.DataFrame:
    N, T = sim.trajectory.V.shape
    pid, arm = _base(sim)
    steps = np.arange(T)
    out = {
        "patient": np.repeat(pid, T),
        "arm": pd.array(np.repeat(arm, T), dtype="string"),
        "step": np.tile(steps, N),
        "day": np.tile(steps / sim.schedules.steps_per_day, N),
    }
    out.update({k: np.asarray(v).reshape(-1) for k, v in values.items()})
    return pd.DataFrame(out)


def trajectories_table(sim: Simulation) -> pd.DataFrame:
    tr = sim.trajectory
    cols = {"alpha": tr.alpha.astype(np.float64)}
    if sim.model.asymmetric:
        cols["alpha_neg"] = tr.alpha_neg.astype(np.float64)
    cols["V"] = tr.V.astype(np.float64)
    cols["S"] = tr.S.astype(np.float64) if sim.model.has_schema else np.full(tr.S.shape, np.nan)
    return _step_frame(sim, cols)


def events_table(sim: Simulation) -> pd.DataFrame:
    ex = sim.experiences
    everyday = _step_frame(sim, {"outcome": ex.everyday.astype(np.int8)})
    everyday.insert(4, "kind", pd.array(["everyday"] * len(everyday), dtype="string"))
    everyday.insert(5, "index", 0)
    # Corrective experiences: only those delivered (first n_corr of each attended session).
    p, j, k = np.nonzero(np.arange(ex.corrective.shape[2])[None, None, :] < ex.n_corr[:, :, None])
    names = np.asarray(sim.schedules.arm_names, dtype=object)
    corrective = pd.DataFrame(
        {
            "patient": p.astype(np.int64),
            "arm": pd.array(names[sim.arm_index[p]], dtype="string"),
            "step": j.astype(np.int64),
            "day": j / sim.schedules.steps_per_day,
            "kind": pd.array(["corrective"] * len(p), dtype="string"),
            "index": k.astype(np.int64),
            "outcome": ex.corrective[p, j, k].astype(np.int8),
        }
    )
    # Within a step: corrective experiences (in order) before the everyday one.
    everyday["index"] = np.repeat(ex.n_corr.reshape(-1), 1).astype(np.int64)
    df = pd.concat([corrective, everyday], ignore_index=True)
    return df.sort_values(["patient", "step", "index"], kind="stable").reset_index(drop=True)


def sessions_table(sim: Simulation) -> pd.DataFrame:
    sch = sim.schedules
    scheduled = sch.session_n[sim.arm_index] > 0
    p, j = np.nonzero(scheduled)
    a = sim.arm_index[p]
    names = np.asarray(sch.arm_names, dtype=object)
    return pd.DataFrame(
        {
            "patient": p.astype(np.int64),
            "arm": pd.array(names[a], dtype="string"),
            "session": sch.session_index[a, j].astype(np.int64),
            "step": j.astype(np.int64),
            "day": j / sch.steps_per_day,
            "n_c": sch.session_n[a, j].astype(np.int64),
            "p_c": sch.session_p[a, j].astype(np.float64),
            "attended": sim.experiences.attended[p, j].astype(bool),
        }
    )


def ema_table(sim: Simulation) -> pd.DataFrame:
    N, days = sim.ema.shape
    pid, arm = _base(sim)
    rating = sim.ema.astype(np.float64).reshape(-1)
    return pd.DataFrame(
        {
            "patient": np.repeat(pid, days),
            "arm": pd.array(np.repeat(arm, days), dtype="string"),
            "day": np.tile(np.arange(days), N),
            "rating": rating,
            "missing": np.isnan(rating),
        }
    )


def visits_table(sim: Simulation) -> pd.DataFrame:
    N, K = sim.visits.shape
    pid, arm = _base(sim)
    score = sim.visits.astype(np.float64).reshape(-1)
    return pd.DataFrame(
        {
            "patient": np.repeat(pid, K),
            "arm": pd.array(np.repeat(arm, K), dtype="string"),
            "visit": np.tile(np.arange(K), N),
            "day": np.tile(sim.visit_days, N),
            "step": np.tile(sim.visit_steps, N),
            "score": score,
            "missing": np.isnan(score),
            "expected": sim.visit_expected.reshape(-1).astype(np.float64),
            "drug_lift": sim.visit_D.reshape(-1).astype(np.float64),
            "infusion_response": sim.visit_E.reshape(-1).astype(np.float64),
        }
    )


def tables(sim: Simulation) -> dict[str, pd.DataFrame]:
    """All tables of a simulated trial, keyed by the names in :data:`SCHEMA`."""
    out = {
        "arms": arms_table(sim),
        "patients": patients_table(sim),
        "sessions": sessions_table(sim),
        "events": events_table(sim),
        "trajectories": trajectories_table(sim),
    }
    if sim.config.observations.ema.enabled:
        out["ema"] = ema_table(sim)
    if sim.config.observations.visits.enabled and sim.visits.shape[1]:
        out["visits"] = visits_table(sim)
    return out


def write_tables(tabs: dict[str, pd.DataFrame], folder: Path, formats=("parquet", "csv")) -> list[Path]:
    """Write each table as Parquet and CSV into ``folder`` (the caller makes it atomic)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in tabs.items():
        if "parquet" in formats:
            df.to_parquet(folder / f"{name}.parquet", index=False)
            written.append(folder / f"{name}.parquet")
        if "csv" in formats:
            df.to_csv(folder / f"{name}.csv", index=False)
            written.append(folder / f"{name}.csv")
    return written


def read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Read the tables of a run folder (``data/``) or a folder of CSV/Parquet tables.

    Where a table is there as both Parquet and CSV, the newer file is read (a run folder holds
    both, and a user edits the CSV). A file that cannot be read as what its name says (empty,
    not Parquet, not UTF-8 text) is a :class:`~plasticity_rl.table_checks.DataError` naming it.
    """
    from plasticity_rl.table_checks import DataError

    folder = Path(folder)
    if (folder / "data").is_dir():
        folder = folder / "data"
    out, problems = {}, []
    for name in SCHEMA:
        pq, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
        found = [f for f in (pq, csv) if f.is_file()]
        if not found:
            continue
        path = max(found, key=lambda f: f.stat().st_mtime_ns)
        try:
            out[name] = _read_table(path)
        except ValueError as exc:
            problems.append(f"{path.name}: {exc}")
    if problems:
        raise DataError(problems)
    return out


def _read_table(path: Path) -> pd.DataFrame:
    """One table file; ValueError with what is wrong with it."""
    if path.stat().st_size == 0:
        raise ValueError("the file is empty (0 bytes); write the table's header and rows, or remove it")
    if path.suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises its own error types
            raise ValueError(
                f"not a readable Parquet file ({type(exc).__name__}); if it is text, name it .csv"
            ) from None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # spreadsheets often write a byte-order mark
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 text (byte {exc.start}); save it as CSV UTF-8 from the spreadsheet"
        ) from None
    header = text.splitlines()[0] if text.strip() else ""
    sep = max((",", ";", "\t"), key=header.count)  # a European spreadsheet writes ';'
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"not a readable CSV file: {exc}") from None


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would end the Markdown table cell


def schema_markdown() -> str:
    """The table schema as Markdown (``docs/tables.md`` holds it; a test keeps the two the same)."""
    lines = []
    for table, cols in SCHEMA.items():
        lines += [f"**{table}**", "", "| column | type | unit / range | meaning |", "|---|---|---|---|"]
        lines += [f"| `{c}` | {t} | {_cell(u)} | {_cell(m)} |" for c, (t, u, m) in cols.items()]
        lines.append("")
    return "\n".join(lines)
