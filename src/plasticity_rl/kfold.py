"""K-fold cross-validation by patient: the model comparison to trust when PSIS-LOO cannot be.

Why. PSIS-LOO estimates leave-one-patient-out from a single fit; where a patient's data move the
posterior too far for importance sampling (Pareto k > 0.7) its estimate is unreliable, and the
only honest answer is to leave patients out for real. K-fold does: the patients are split into
K folds (stratified by arm, from the seed, the same folds for every model), each model is refitted
K times on the other folds' patients, and each left-out patient's data are scored under the
refit with their own parameters integrated over the fitted population
(:func:`plasticity_rl.inference.marginal.heldout_log_lik`):

    elpd_i = log (1/S) sum_s p(y_i | phi_s),   phi_s drawn from p(phi | patients not in i's fold)

summed over patients, with the standard error sqrt(N var(elpd_i)) and, for a difference of
two models, the same over the patients' differences (Vehtari, Gelman & Gabry 2017, Stat Comput
27:1413, section 4). Every refit repeats the original fit's settings (method, sampler, fixed
values, likelihood, window) read from its ``posterior.nc``.

The K x models refits are independent jobs on dask.distributed (:mod:`plasticity_rl.batch`):
each result is written as it finishes, and a rerun of the same command skips what is done.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from plasticity_rl.batch import Job, run_jobs, write_json_atomic


@dataclass(frozen=True)
class RefitPlan:
    """How one fit folder's fit is repeated on each fold's training patients."""

    variant: str
    config_yaml: str
    fit: dict  # keyword arguments of plasticity_rl.inference.fit
    patients: tuple[str, ...]  # the fit's patient ids, in order


def kfold_folds(arm_index: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(N,) fold of each patient, 0..k-1: each arm's patients shuffled (from ``seed``) and dealt
    round-robin, so every fold holds every arm in proportion and fold sizes differ by at most one
    per arm. The same data and seed always give the same folds."""
    arm_index = np.asarray(arm_index)
    n = arm_index.size
    if not 2 <= k <= n:
        raise ValueError(f"--kfold: got {k}; allowed: 2 to the number of patients ({n})")
    rng = np.random.default_rng(seed)
    folds = np.empty(n, int)
    offset = 0
    for arm in np.unique(arm_index):
        members = rng.permutation(np.flatnonzero(arm_index == arm))
        folds[members] = (offset + np.arange(members.size)) % k
        offset += members.size  # the next arm's deal continues where this one stopped
    return folds


def refit_plan(fit_dir: Path) -> RefitPlan:
    """The settings of the fit in ``fit_dir`` (from its posterior.nc), to repeat on each fold."""
    import arviz as az

    from plasticity_rl.inference.model import window_was_fitted

    path = Path(fit_dir) / "posterior.nc"
    if not path.is_file():
        raise FileNotFoundError(f"{fit_dir} is not a fit folder (no posterior.nc)")
    idata = az.from_netcdf(str(path))
    post = idata.posterior
    a = post.attrs
    method = str(a.get("method", "nuts"))
    fit = {
        "variant": str(a["variant"]),
        "method": method,
        "seed": int(a.get("seed", 0)),
        "fit_window": bool(window_was_fitted(post)),
        "fixed": json.loads(a.get("fixed", "{}")),
        "likelihood": a.get("likelihood"),
    }
    if method == "nuts":
        fit |= {
            "chains": int(a.get("chains", post.sizes["chain"])),
            "warmup": int(a.get("warmup", 500)),
            "draws": int(a.get("draws_requested", a.get("draws", post.sizes["draw"]))),
            "target_accept": float(a.get("target_accept", 0.8)),
            "max_tree_depth": int(a.get("max_tree_depth", 10)),
            "mass_matrix": str(a.get("mass_matrix_requested", "dense-group")),
            "warm_start": bool(a.get("warm_start_requested", 1)),
        }
    else:
        fit |= {
            "chains": 1,
            "draws": int(a.get("draws_requested", a.get("draws", post.sizes["draw"]))),
            "svi_steps": int(a.get("svi_steps", 5000)),
            "svi_guide": {"AutoMultivariateNormal": "mvn"}.get(str(a.get("svi_guide")), "normal"),
            "svi_learning_rate": float(a.get("svi_learning_rate", 0.01)),
        }
    return RefitPlan(
        variant=fit["variant"],
        config_yaml=str(a["config_yaml"]),
        fit=fit,
        patients=tuple(str(p) for p in post["patient"].values),
    )


def _fit_data(data: str, columns: dict, config_yaml: str, variant: str):
    from plasticity_rl.config import config_from_yaml
    from plasticity_rl.inference import prepare
    from plasticity_rl.workflow import read_data_folder

    return prepare(read_data_folder(Path(data), columns), config_from_yaml(config_yaml), variant)


def kfold_job(data: str, columns: dict, plan: dict, fold: int, k: int, seed: int) -> dict:
    """Refit ``plan`` without fold ``fold``'s patients; score them. A JSON-able result."""
    from plasticity_rl.inference import diagnose, fit
    from plasticity_rl.inference.marginal import heldout_log_lik

    t0 = time.perf_counter()
    fd = _fit_data(data, columns, plan["config_yaml"], plan["fit"]["variant"])
    folds = kfold_folds(fd.arm_index, k, seed)
    train, test = fd.subset(folds != fold), fd.subset(folds == fold)
    idata = fit(train, **plan["fit"])
    diag = diagnose(idata)
    ll, ess = heldout_log_lik(idata, test, seed=seed)
    elpd = np.logaddexp.reduce(ll, axis=0) - np.log(ll.shape[0])
    return {
        "variant": plan["fit"]["variant"],
        "fold": int(fold),
        "k": int(k),
        "patients": [str(p) for p in test.patient_ids],
        "elpd": [float(v) for v in elpd],
        "train_patients": int(train.n_patients),
        "diagnostics_passed": bool(diag.passed),
        "diagnostics_failures": list(diag.failures),
        "is_ess_min": float(ess.min()),
        "is_ess_median": float(np.median(ess)),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def job_name(variant: str, fold: int, k: int) -> str:
    return f"kfold{k}-{variant}-fold{fold:02d}"


DATA_SOURCE = "data_source.json"  # in a fit folder made by `plasticity-rl fit`: its tables and --columns


def write_data_source(fit_dir: Path, data: Path, columns: dict[str, str]) -> None:
    """Record where a fit read its tables and how their columns were renamed, so a K-fold
    comparison of it refits the same data without being told again."""
    text = json.dumps({"data": str(Path(data).resolve()), "columns": dict(columns)}, indent=2) + "\n"
    (Path(fit_dir) / DATA_SOURCE).write_text(text)


def read_data_source(fit_dir: Path) -> tuple[Path | None, dict[str, str]]:
    """(data folder, column mapping) a fit recorded; (None, {}) for a fit that recorded none."""
    path = Path(fit_dir) / DATA_SOURCE
    if not path.is_file():
        return None, {}
    found = json.loads(path.read_text())
    return Path(found["data"]), dict(found.get("columns", {}))


def kfold_compare(
    fit_dirs: list[Path],
    k: int,
    out: Path,
    data: Path | None = None,
    columns: dict[str, str] | None = None,
    seed: int = 0,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """K-fold comparison of the fits in ``fit_dirs`` (of one data set): (table, pointwise).

    ``data``: the folder the fits were fitted to (default: the folder the first fit recorded in
    its ``data_source.json``, else its parent, where ``plasticity-rl fit`` and ``run`` put fit
    folders); ``columns`` as ``fit --columns`` (default: the first fit's recorded ones). Writes
    ``kfold.csv`` (elpd per model, SE, difference from the best and its SE, folds whose refit
    failed its diagnostics), ``kfold_pointwise.csv`` (each patient's elpd and fold per model),
    ``kfold_folds.csv`` and ``figures/kfold_comparison.png/svg`` into ``out``; the refits' results
    go to ``out/kfold-jobs`` as they finish.
    """
    fit_dirs = [Path(d) for d in fit_dirs]
    plans = [refit_plan(d) for d in fit_dirs]
    if len({p.variant for p in plans}) != len(plans) or len(plans) < 2:
        raise ValueError("compare needs fits of at least two different variants")
    if len({p.patients for p in plans}) != 1:
        raise ValueError("fits are not of the same data (their patients differ)")
    source, recorded = read_data_source(fit_dirs[0])
    data = Path(data) if data is not None else (source or fit_dirs[0].parent)
    columns = dict(columns or (recorded if data == source else {}))
    fd = _fit_data(str(data), columns, plans[0].config_yaml, plans[0].variant)
    ids = tuple(str(p) for p in fd.patient_ids)
    if ids != plans[0].patients:
        raise ValueError(
            f"the tables in {data} are not the data {fit_dirs[0]} was fitted to "
            f"({len(ids)} patients against {len(plans[0].patients)}); pass --data"
        )
    folds = kfold_folds(fd.arm_index, k, seed)

    jobs_dir = Path(out) / "kfold-jobs"
    _check_resumable(jobs_dir, plans, seed, data, columns)
    jobs = [
        Job(
            job_name(p.variant, f, k),
            kfold_job,
            {"data": str(data), "columns": columns, "plan": p.__dict__, "fold": f, "k": k, "seed": seed},
        )
        for p in plans
        for f in range(k)
    ]
    results = run_jobs(jobs, jobs_dir, scheduler, n_workers, progress, f"K-fold refits ({k} x {len(plans)})")
    pointwise = pd.DataFrame(
        [
            {"variant": r["variant"], "fold": r["fold"], "patient": pid, "elpd": e}
            for r in results.values()
            for pid, e in zip(r["patients"], r["elpd"])
        ]
    )
    by_variant = {p.variant: [r for r in results.values() if r["variant"] == p.variant] for p in plans}
    failed = {v: sorted(r["fold"] for r in rs if not r["diagnostics_passed"]) for v, rs in by_variant.items()}
    table = kfold_table(pointwise, failed)
    # The held-out scores' importance-sampling ESS (per patient and draw; of 128 proposals)
    table["is_ess_min"] = [min(r["is_ess_min"] for r in by_variant[v]) for v in table.index]
    table.attrs["k"] = k
    out = Path(out)
    table.to_csv(out / "kfold.csv", index_label="model")
    pointwise.to_csv(out / "kfold_pointwise.csv", index=False)
    pd.DataFrame({"patient": ids, "arm": [fd.arm_names[a] for a in fd.arm_index], "fold": folds}).to_csv(
        out / "kfold_folds.csv", index=False
    )
    from plasticity_rl.plots import loo_comparison, save_figure
    from plasticity_rl.workflow import append_captions

    fig = loo_comparison(table, title_note=kfold_warning(table), kind="kfold")
    save_figure(fig, out / "figures", "kfold_comparison", ("png", "svg"))
    append_captions(out / "figures", {"kfold_comparison": fig})
    return table, pointwise


def _check_resumable(jobs_dir: Path, plans, seed, data, columns) -> None:
    """A rerun resumes only the same study: the same fits, seed and data (else say so). Another K
    is the same study: its refits have their own names (``kfold<K>-...``) beside the others'."""
    spec = {
        "seed": seed,
        "data": str(Path(data).resolve()),
        "columns": columns,
        "fits": [{"variant": p.variant, "fit": p.fit, "config": p.config_yaml} for p in plans],
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = jobs_dir / "study.json"
    if path.is_file():
        old = json.loads(path.read_text()).get("digest")
        if old != digest:
            raise FileExistsError(
                f"{jobs_dir} holds refits of another K-fold study (other fits, seed or data); "
                "choose another --out, or delete that folder to start again"
            )
        return
    jobs_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"digest": digest, **spec})


def kfold_table(pointwise: pd.DataFrame, failed: dict[str, list[int]]) -> pd.DataFrame:
    """Per model: elpd_kfold, se, elpd_diff from the best and dse, ranked (best first).

    ``failed``: variant -> folds whose refit failed its diagnostics (a ``warning`` where any).
    """
    wide = pointwise.pivot(index="patient", columns="variant", values="elpd")
    if wide.isna().any().any():
        raise ValueError("some patient has no K-fold score for some model (an incomplete study)")
    n = len(wide)
    total = wide.sum()
    best = total.idxmax()
    rows = {}
    for v in wide.columns:
        diff = wide[best] - wide[v]
        rows[v] = {
            "elpd_kfold": float(total[v]),
            "se": float(np.sqrt(n * wide[v].var(ddof=1))),
            "elpd_diff": float(diff.sum()),
            "dse": float(np.sqrt(n * diff.var(ddof=1))) if v != best else 0.0,
            "warning": bool(failed.get(v)),
            "folds_failed_diagnostics": " ".join(map(str, failed.get(v, []))),
            "n_patients": n,
            "scale": "log",
        }
    table = pd.DataFrame.from_dict(rows, orient="index").sort_values("elpd_kfold", ascending=False)
    table.insert(0, "rank", np.arange(len(table)))
    return table


def kfold_warning(table: pd.DataFrame) -> str | None:
    """A loud note when some refit failed its diagnostics: its fold's scores are not to be trusted."""
    bad = table[table["warning"]]
    if bad.empty:
        return None
    which = "; ".join(f"{m}: folds {row['folds_failed_diagnostics']}" for m, row in bad.iterrows())
    return (
        f"K-FOLD REFITS FAILED DIAGNOSTICS ({which}); refit with more warm-up or draws before trusting this"
    )
