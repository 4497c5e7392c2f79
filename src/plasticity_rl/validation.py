"""The model against published trials: every target, the model's value, its 90 % interval, hit or miss.

The published numbers ship with the package (``validation_targets.csv``: the source, design,
arm, measure, time and value of each, as reported, plus how the package checks it). A target
is checked when the config can express its design: a single-infusion trial, an arm with one
ketamine infusion and no therapy against an arm with a placebo infusion (amount 0) and no
therapy. The check simulates a large cohort of each arm under the config's parameters, with
clinician visits just before the infusion and at each target's time, and computes the
target's statistic:

* ``mean``: the mean clinician score at the time (``0 d`` is the pre-infusion visit);
* ``change``: the mean change from the pre-infusion visit;
* ``response``: the percentage of patients whose score is at most half their own
  pre-infusion score;
* ``gap``: the ketamine arm's mean change minus the placebo arm's.

A published number is one trial of ``n`` patients, not the population, so the model's 90 %
predictive interval is that of the statistic in a trial of the published size: trials of ``n``
patients drawn (with replacement) from the simulated cohort. ``hit`` means the published
value lies inside it. Rows the config cannot express are listed as ``not checked``, with why.
"""

from __future__ import annotations

import re
from importlib import resources

import numpy as np
import pandas as pd

from plasticity_rl.config import Config, config_from_dict

TARGETS_FILE = "validation_targets.csv"
PATIENTS = 2000  # per arm: the statistic's Monte Carlo error is small beside a trial's spread
TRIALS = 4000  # simulated trials of the published size per target
PI_LEVEL = 0.90


def _time_days(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*(h|d)\s*", str(text))
    if not m:
        return float("nan")
    return float(m.group(1)) / (24.0 if m.group(2) == "h" else 1.0)


def _mean_sd_n(text: str) -> tuple[float, float, float]:
    """'25.1 (8.3; 20)' -> (25.1, 8.3, 20); '-16.5' -> (-16.5, nan, nan); other text -> nan."""
    m = re.fullmatch(r"\s*(-?[0-9.]+)\s*(?:\(\s*([0-9.]+)\s*;\s*([0-9]+)\s*\))?\s*", str(text))
    if not m:
        return float("nan"), float("nan"), float("nan")
    mean = float(m.group(1))
    sd = float(m.group(2)) if m.group(2) else float("nan")
    n = float(m.group(3)) if m.group(3) else float("nan")
    return mean, sd, n


def published_targets() -> pd.DataFrame:
    """The published targets shipped with the package, parsed.

    Raw columns (``id, study, design, arm, measure, time, value, unit, grade, note`` as in the
    sources; ``statistic, role, n_arm, check_note`` for the check) are kept; added: ``group``
    (the study), ``source`` (its full citation without the design note), ``time_days``,
    ``mean``, ``sd``, ``n`` and ``sem`` (= sd / sqrt(n)) where the value gives them.
    """
    with resources.files("plasticity_rl").joinpath(TARGETS_FILE).open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, dtype=str, keep_default_na=False)
    df["group"] = df["id"].str.split("_").str[0]
    full = df.groupby("group")["study"].agg(lambda s: max(s, key=len))
    df["source"] = df["group"].map(full).str.replace(r"\s*\(.*\)\s*$", "", regex=True)
    df["time_days"] = df["time"].map(_time_days)
    parsed = df["value"].map(_mean_sd_n)
    df["mean"] = [p[0] for p in parsed]
    df["sd"] = [p[1] for p in parsed]
    df["n"] = [p[2] for p in parsed]
    df["sem"] = df["sd"] / np.sqrt(df["n"])
    return df


def _infusion_days(arm) -> list[float]:
    """Every infusion of an arm (active or placebo, repeats included), in days."""
    return [t for d in arm.doses for t in d.times_days()]


def single_infusion_arms(cfg: Config) -> tuple[str | None, str | None]:
    """(ketamine arm, placebo arm) of a config: the first arm with exactly one infusion, of
    ketamine, and no therapy, and the first with placebo infusions only (amount 0) and no therapy."""
    ket = plc = None
    for arm in cfg.all_arms():
        if arm.sessions or not arm.doses:
            continue
        active = any(d.amount > 0 for d in arm.doses)
        if ket is None and active and len(_infusion_days(arm)) == 1:
            ket = arm.name
        if plc is None and not active:
            plc = arm.name
    return ket, plc


def _dose_day(cfg: Config, arm_name: str) -> float:
    """The arm's first infusion, in days."""
    return min(_infusion_days(next(a for a in cfg.all_arms() if a.name == arm_name)))


def _cohort_with_visits(cfg: Config, arm_names, visit_days, patients: int) -> Config:
    """``cfg`` cut to ``arm_names``, ``patients`` each, with complete clinician visits at
    ``visit_days`` and enough days to reach the last one (the rest of the config unchanged)."""
    data = cfg.model_dump(mode="json")
    data["arms"] = [dict(a, patients=None) for a in data["arms"] if a["name"] in arm_names]
    data["timing_sweep"] = None
    last = int(np.ceil(max(visit_days) + 1.0 / cfg.experiment.steps_per_day))
    data["experiment"].update(patients_per_arm=patients, days=max(last, cfg.experiment.days))
    data["observations"]["visits"].update(enabled=True, days=sorted(set(visit_days)), missing_rate=0.0)
    return config_from_dict(data)


def _check_config(cfg: Config, ket: str, plc: str, times: list[float], patients: int) -> Config:
    """The two arms, with visits one step before each arm's infusion and at every target time after it."""
    step = 1.0 / cfg.experiment.steps_per_day
    days = [t0 + t for t0 in (_dose_day(cfg, plc), _dose_day(cfg, ket)) for t in (-step, *times)]
    return _cohort_with_visits(cfg, (plc, ket), days, patients)


def _statistic(kind: str, score: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """Per-patient values whose mean over patients is the statistic."""
    if kind == "mean":
        return score
    if kind == "change":
        return score - pre
    if kind == "response":
        return 100.0 * (score <= 0.5 * pre)
    raise ValueError(f"unknown statistic {kind!r}; allowed: mean, change, response, gap")


def _trial_means(key, values: np.ndarray, n: int, trials: int) -> np.ndarray:
    """The statistic in ``trials`` trials of ``n`` patients drawn from ``values`` (one arm)."""
    import jax

    idx = np.asarray(jax.random.randint(key, (trials, n), 0, values.shape[0]))
    return values[idx].mean(axis=1)


def check_targets(cfg: Config, patients: int = PATIENTS, trials: int = TRIALS) -> pd.DataFrame:
    """Every shipped target against the model under ``cfg``: one row per target.

    Columns: ``id, statistic, source, arm, measure, time, n, published, model, lo, hi, verdict, why,
    defaults_miss``. ``model`` is the statistic in the simulated cohort; ``lo``/``hi`` the 90 %
    interval for a trial of ``n``; ``verdict`` is ``hit``, ``miss`` or ``not checked`` (``why``
    says why, or how the trial's size was read); ``defaults_miss`` says why the package's shipped
    defaults miss the target, where they do (empty where they hit).
    Randomness: the config's seed (the cohort) and a stream of it for the simulated trials.
    """
    import jax

    from plasticity_rl.simulate import simulate, stream_key

    targets = published_targets()
    ket, plc = single_infusion_arms(cfg)
    checkable = targets["statistic"] != ""
    times = sorted({0.0} | set(targets.loc[checkable, "time_days"].dropna()))
    sim = None
    if ket is not None and plc is not None:
        sim = simulate(_check_config(cfg, ket, plc, [t for t in times if t > 0], patients))
    roles = {"ketamine": ket, "placebo": plc}

    def arm_scores(role: str, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(score at t after the infusion, pre-infusion score) per patient of the role's arm."""
        i = list(sim.schedules.arm_names).index(roles[role])
        rows = sim.arm_index == i
        t0 = _dose_day(sim.config, roles[role])
        step = 1.0 / sim.config.experiment.steps_per_day
        pre = int(np.argmin(np.abs(sim.visit_days - (t0 - step))))
        col = pre if t == 0 else int(np.argmin(np.abs(sim.visit_days - (t0 + t))))
        return sim.visits[rows, col], sim.visits[rows, pre]

    base = stream_key(cfg.experiment.seed, "trials")
    out = []
    for k, r in enumerate(targets.itertuples(index=False)):
        row = {
            "id": r.id,
            "statistic": r.statistic,
            "source": r.source,
            "arm": r.arm,
            "measure": r.measure,
            "time": r.time,
            "n": r.n_arm,
            "published": r.value,
            "model": np.nan,
            "lo": np.nan,
            "hi": np.nan,
            "defaults_miss": r.defaults_miss,
        }
        if not r.statistic:
            out.append(dict(row, verdict="not checked", why=r.check_note.removeprefix("not checked: ")))
            continue
        if sim is None:
            why = (
                f"the config has no {'ketamine' if ket is None else 'placebo'}-infusion arm without therapy "
                f"(arms: {[a.name for a in cfg.arms]})"
            )
            out.append(dict(row, verdict="not checked", why=why))
            continue
        key = jax.random.fold_in(base, k)
        if r.statistic == "gap":
            n_k, n_p = (int(x) for x in r.n_arm.split(";"))
            (sk, pk), (sp, pp) = arm_scores("ketamine", r.time_days), arm_scores("placebo", r.time_days)
            ck, cp = _statistic("change", sk, pk), _statistic("change", sp, pp)
            k1, k2 = jax.random.split(key)
            spread = _trial_means(k1, ck, n_k, trials) - _trial_means(k2, cp, n_p, trials)
            model = ck.mean() - cp.mean()
        else:
            score, pre = arm_scores(r.role, r.time_days)
            values = _statistic(r.statistic, score, pre)
            spread = _trial_means(key, values, int(r.n_arm), trials)
            model = values.mean()
        lo, hi = np.quantile(spread, [(1 - PI_LEVEL) / 2, (1 + PI_LEVEL) / 2])
        published = float(r.mean)
        verdict = "hit" if lo <= published <= hi else "miss"
        out.append(
            dict(row, model=float(model), lo=float(lo), hi=float(hi), verdict=verdict, why=r.check_note)
        )
    columns = ["id", "statistic", "source", "arm", "measure", "time", "n", "published", "model", "lo", "hi"]
    return pd.DataFrame(out)[[*columns, "verdict", "why", "defaults_miss"]]


STATISTIC_LABELS = {
    "mean": "mean MADRS",
    "change": "MADRS change from baseline",
    "response": "responders (MADRS at most half of baseline), %",
    "gap": "MADRS change, ketamine minus placebo",
}


def shown_targets(table: pd.DataFrame) -> pd.DataFrame:
    """The checked rows of a :func:`check_targets` table as people read them (the CLI's table,
    the report's section): a label, the source, the trial's size, the published value as reported."""
    checked = table[table["verdict"] != "not checked"]
    return pd.DataFrame(
        {
            "target": checked["statistic"].map(STATISTIC_LABELS) + ": " + checked["arm"],
            "source": checked["source"],
            "time": checked["time"],
            "trial n": checked["n"].astype(str).str.replace(";", " + "),
            "published": checked["published"].astype(str).str.split(" (", regex=False).str[0],
            "model": checked["model"].round(1),
            # two decimals: a value just outside the interval must not read as its edge
            f"model {PI_LEVEL:.0%} interval": [
                f"{lo:.2f} to {hi:.2f}" for lo, hi in zip(checked["lo"], checked["hi"])
            ],
            "verdict": checked["verdict"],
        }
    )


def summary_line(table: pd.DataFrame) -> str:
    """'9 of 23 checked targets inside the model's 90 % interval; 14 missed; 11 not checked'."""
    v = table["verdict"].value_counts()
    hit, miss, skipped = int(v.get("hit", 0)), int(v.get("miss", 0)), int(v.get("not checked", 0))
    return (
        f"{hit} of {hit + miss} checked targets inside the model's {PI_LEVEL:.0%} interval for a trial "
        f"of the published size; {miss} missed; {skipped} not checked"
    )


def score_decomposition(cfg: Config, after_days=(1.0, 7.0, 28.0), patients: int = PATIENTS) -> pd.DataFrame:
    """Where each arm's improvement comes from: learning, the acute lift D, the infusion response E.

    The expected clinician score is m_max (1 - V) - D(t) - E(t); its change from the visit just
    before an arm's first infusion splits exactly into ``learning`` (-m_max ΔV: what the
    belief learned), ``acute_lift`` (-ΔD) and ``infusion_response`` (-ΔE), in MADRS points
    (negative: better), at each of ``after_days`` after the arm's last infusion. Means over
    ``patients`` simulated patients per arm (noise-free scores, so no visit noise enters).
    Columns: ``arm, infusions, after_last_infusion_days, learning, acute_lift,
    infusion_response, total, learning_share`` (learning / total).
    """
    from plasticity_rl.simulate import simulate

    step = 1.0 / cfg.experiment.steps_per_day
    times = {a.name: _infusion_days(a) for a in cfg.arms if a.doses}
    pre = {name: min(ts) - step for name, ts in times.items()}
    at = {name: [max(ts) + t for t in after_days] for name, ts in times.items()}
    days = sorted(set(pre.values()) | {t for ts in at.values() for t in ts})
    sim = simulate(_cohort_with_visits(cfg, list(times), days, patients))
    m_max = sim.config.observations.visits.m_max
    learned = m_max - sim.visit_expected - sim.visit_D - sim.visit_E  # = m_max V at each visit
    col = {d: int(np.argmin(np.abs(sim.visit_days - d))) for d in days}
    rows = []
    for i, arm in enumerate(sim.config.arms):
        keep = sim.arm_index == i
        k0 = col[pre[arm.name]]
        for t, day in zip(after_days, at[arm.name]):
            k = col[day]
            learning = -float(np.mean(learned[keep, k] - learned[keep, k0]))
            acute = -float(np.mean(sim.visit_D[keep, k] - sim.visit_D[keep, k0]))
            infusion = -float(np.mean(sim.visit_E[keep, k] - sim.visit_E[keep, k0]))
            total = learning + acute + infusion
            rows.append(
                {
                    "arm": arm.name,
                    "infusions": sum(d.repeat for d in arm.doses if d.amount > 0),
                    "after_last_infusion_days": t,
                    "learning": learning,
                    "acute_lift": acute,
                    "infusion_response": infusion,
                    "total": total,
                    "learning_share": learning / total if total else np.nan,
                }
            )
    return pd.DataFrame(rows)
