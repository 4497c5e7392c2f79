"""Fit, compare and report: the steps the CLI chains, as plain functions writing folders.

A fit folder holds ``posterior.nc`` (ArviZ InferenceData), ``loo_marginal.nc`` (per-patient
log-likelihood with the patient's parameters integrated out, for ``compare``), ``summary.csv`` (group parameters),
``diagnostics.json`` (R-hat, ESS, divergences, E-BFMI and whether the fit passed),
``arm_curves.csv``, ``contrasts.csv``, ``synergy.csv``, ``window.csv`` (alpha(t) per arm),
``window_parameters.csv`` (the kernel's time constants, its peak time and mu_A), ``ppc.csv`` (the
posterior predictive check by arm) and ``figures/`` (which :func:`redraw_fit_figures` redraws from
those files alone).
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from plasticity_rl.analysis import (
    arm_curves,
    belief_contrasts,
    default_contrast_days,
    ppc_arm_means,
    synergy,
    synergy_roles,
    window_curve,
    window_parameters,
)
from plasticity_rl.config import Config, config_from_yaml, load_config
from plasticity_rl.inference.fit import FitSettings


@dataclass(frozen=True)
class FitOutcome:
    folder: Path
    variant: str
    passed: bool
    failures: list[str]
    seconds: float
    likelihood: str = "conditional"
    data_used: dict | None = None  # FitData.usage(): patients, ratings used and missing, sessions
    extension: str | None = None  # what a NUTS fit's extension checks found (fit's extend_draws)
    extra_draws: int = 0  # draws per chain it sampled beyond those asked for


def load_data_folder(data: Path, config: Path | None = None, columns: dict[str, str] | None = None):
    """Tables and config of a run folder (or a folder of CSV/Parquet tables plus --config).

    ``columns``: the tables' own column names mapped to the package's (``{"subject_id": "patient"}``).
    """
    from plasticity_rl.config import ConfigError

    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"no such data folder: {data}")
    cfg_path = config or (data / "config.yaml")
    if not Path(cfg_path).is_file():
        raise ConfigError([f"{data} has no config.yaml; pass --config describing its arms and schedule"])
    return read_data_folder(data, columns), load_config(cfg_path)


def read_data_folder(data: Path, columns: dict[str, str] | None = None) -> dict:
    """The tables of a run folder or a folder of tables, with ``columns`` renamed."""
    from plasticity_rl.data import read_tables

    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"no such data folder: {data}")
    tabs = read_tables(data)
    if not tabs:
        raise FileNotFoundError(f"{data} holds no tables (events.csv, ema.csv, ... or data/ of a run folder)")
    if columns:
        from plasticity_rl.table_checks import renamed_columns

        tabs = renamed_columns(tabs, columns)
    return tabs


def flag_text(failures: list[str]) -> str | None:
    if not failures:
        return None
    return "FIT FAILED DIAGNOSTICS: " + "; ".join(failures[:2]) + (" ..." if len(failures) > 2 else "")


def fit_to_folder(
    tabs, cfg: Config, variant: str, out: Path, settings: FitSettings, progress=False
) -> FitOutcome:
    """Fit ``variant`` and write its fit folder contents into ``out`` (the caller makes it atomic).

    ``progress``: as :func:`plasticity_rl.inference.fit` (False, True or a callable(done, total)).
    """
    t0 = time.perf_counter()
    idata = fit_posterior(tabs, cfg, variant, settings, progress)
    out.mkdir(parents=True, exist_ok=True)
    return write_fit_folder(idata, tabs, cfg, variant, out, settings, time.perf_counter() - t0)


def fit_posterior(tabs, cfg: Config, variant: str, settings: FitSettings, progress=False):
    """The fit itself (NUTS or SVI, then the derived curves): InferenceData, nothing written."""
    from plasticity_rl.inference import fit

    return fit(
        tabs,
        cfg,
        variant=variant,
        method=settings.method,
        chains=settings.chains,
        warmup=settings.warmup,
        draws=settings.draws,
        seed=settings.seed,
        progress=progress,
        target_accept=settings.target_accept,
        extend_draws=settings.extend_draws if settings.method == "nuts" else 0,
        fit_window=settings.fit_window,
        fixed=dict(settings.fixed),
        likelihood=settings.likelihood,
    )


def _timed(fun, *args):
    t0 = time.perf_counter()
    return fun(*args), time.perf_counter() - t0


def fit_variants(
    tabs,
    cfg: Config,
    variants: list[str],
    folder: Path,
    settings: FitSettings,
    *,
    fitting=None,
    waiting=None,
    written=None,
    finished=None,
    reuse: dict[str, FitOutcome] | None = None,
) -> list[FitOutcome]:
    """Fit each variant into ``folder / fit-<variant>``; one fit's folder is written while the next samples.

    Why. After sampling, a fit folder takes ~10-20 s to finish (posterior.nc, the integrated LOO,
    diagnostics, figures), much of it on one core (Python, tracing, XLA compiling); the next
    fit's start (ADVI, compiling its sampler) is also mostly on one core, so the two together
    keep both cores busy (benchmarks/README.md). One writer thread: folders are finished in
    order, never two at once (matplotlib's settings are global). The fits themselves run one
    after the other: same programs, same draws as fitting them one by one.

    Hooks for a caller that reports: ``fitting(variant)`` a context manager around each fit that
    yields its progress callback; ``waiting(variant)`` one around waiting for its folder;
    ``written(outcome, seconds, overlapped)`` once the folder is complete (in the caller's
    thread); ``finished(outcome)`` in the writer thread the moment it is, so that an interrupt
    that waits for the writer still records the folder as finished.

    ``reuse``: outcomes of fit folders already complete in ``folder`` (a resumed run); those
    variants are not fitted again. A folder of another variant already there is an unfinished
    one from an interrupted run, and is replaced.
    """
    from concurrent.futures import ThreadPoolExecutor

    fitting = fitting or (lambda variant: nullcontext(False))
    waiting = waiting or (lambda variant: nullcontext())
    reuse = reuse or {}

    def write(*args):
        outcome, seconds = _timed(write_fit_folder, *args)
        if finished is not None:
            finished(outcome)
        return outcome, seconds

    jobs = {}
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fit-folder")
    try:
        for variant in (v for v in variants if v not in reuse):
            for job in jobs.values():  # a folder that failed to write stops the run now
                if job.done():
                    job.result()
            t0 = time.perf_counter()
            with fitting(variant) as progress:
                idata = fit_posterior(tabs, cfg, variant, settings, progress=progress)
            out = folder / f"fit-{variant}"
            if out.exists():
                shutil.rmtree(out)
            out.mkdir()
            jobs[variant] = writer.submit(
                write,
                idata,
                tabs,
                cfg,
                variant,
                out,
                settings,
                time.perf_counter() - t0,
            )
        outcomes = []
        fitted = list(jobs)
        for variant in variants:
            if variant in reuse:
                outcomes.append(reuse[variant])
                continue
            with waiting(variant):
                outcome, seconds = jobs[variant].result()
            if written is not None:
                written(outcome, seconds, variant != fitted[-1])
            outcomes.append(outcome)
        return outcomes
    finally:
        # On an error or Ctrl-C: drop what has not started, and wait for what has (JAX work
        # cannot be interrupted), so nothing writes into the run's folder once it is removed.
        writer.shutdown(wait=True, cancel_futures=True)


def fit_outcome_of(folder: Path) -> FitOutcome:
    """The outcome of a fit folder already written, from its ``diagnostics.json``."""
    diag = json.loads((Path(folder) / "diagnostics.json").read_text())
    return FitOutcome(
        Path(folder),
        diag["variant"],
        bool(diag["passed"]),
        list(diag["failures"]),
        float(diag.get("sampling_seconds") or 0.0),
        diag.get("likelihood", "conditional"),
        diag.get("data_used"),
        diag.get("extension"),
        int(diag.get("extra_draws") or 0),
    )


def write_fit_folder(
    idata, tabs, cfg: Config, variant: str, out: Path, settings: FitSettings, seconds_before: float = 0.0
) -> FitOutcome:
    """Everything after the fit, into the existing folder ``out``: posterior.nc, the integrated
    LOO, diagnostics, summary tables and figures.

    Separate from :func:`fit_posterior` so that ``plasticity-rl run`` can do this for one fit
    while the next one samples. It only writes into ``out`` and never creates it, so a run
    interrupted meanwhile (its temporary folder removed) gets an error here, not a half-made
    folder recreated. ``seconds_before``: the fit's own time, added to the outcome's.
    """

    from plasticity_rl.inference import diagnose
    from plasticity_rl.inference.diagnostics import group_parameters

    t0 = time.perf_counter()
    if not out.is_dir():
        raise FileNotFoundError(f"fit folder {out} does not exist (was the run interrupted?)")
    idata.to_netcdf(str(out / "posterior.nc"))
    marginal_seconds = None
    if settings.integrated_loo:
        from plasticity_rl.inference.marginal import marginal_loo_data

        t1 = time.perf_counter()
        marginal_loo_data(idata, tabs, cfg, variant, seed=settings.seed).to_netcdf(
            str(out / "loo_marginal.nc")
        )
        marginal_seconds = round(time.perf_counter() - t1, 3)
    diag = diagnose(idata)
    # An SVI fit has no chains to diagnose: its summary is the approximate posterior's statistics.
    svi = settings.method == "svi"
    az.summary(
        idata, var_names=group_parameters(idata), hdi_prob=0.94, kind="stats" if svi else "all"
    ).to_csv(out / "summary.csv")
    diag_json = {
        "variant": variant,
        "method": settings.method,
        "passed": bool(diag.passed),
        "fixed": json.loads(idata.posterior.attrs.get("fixed", "{}")),
        "likelihood": idata.posterior.attrs.get("likelihood", "conditional"),
        "data_used": json.loads(idata.posterior.attrs.get("data_used", "{}")),
        "failures": diag.failures,
        "notes": diag.notes,
        "divergences": diag.divergences,
        "e_bfmi": None if diag.bfmi is None else [float(b) for b in diag.bfmi],
        "thresholds": diag.thresholds.__dict__,
        "parameters": diag.table.reset_index().to_dict(orient="records"),
        "sampling_seconds": float(idata.posterior.attrs.get("sampling_seconds", np.nan)),
        "integrated_loo_seconds": marginal_seconds,
        "draws_per_chain": int(idata.posterior.sizes["draw"]),
        "extension": idata.posterior.attrs.get("extension"),
        "discarded_draws": int(idata.posterior.attrs.get("discarded_draws", 0)),
        "extra_draws": int(idata.posterior.attrs.get("extra_draws", 0)),
    }
    (out / "diagnostics.json").write_text(json.dumps(diag_json, indent=2, default=float) + "\n")
    curves = arm_curves(idata)
    curves.to_csv(out / "arm_curves.csv", index=False)
    days = list(settings.contrast_days) or default_contrast_days(cfg)
    contrasts = belief_contrasts(idata, days, list(settings.contrasts) or None)
    contrasts.to_csv(out / "contrasts.csv", index=False)
    roles, why = synergy_roles(cfg)
    syn = synergy(idata, cfg.experiment.days, roles) if roles else pd.DataFrame({"skipped": [why]})
    syn.to_csv(out / "synergy.csv", index=False)
    window = window_curve(idata, cfg.experiment.steps_per_day)
    window.to_csv(out / "window.csv", index=False)
    window_parameters(idata, cfg).to_csv(out / "window_parameters.csv", index=False)
    ppc = ppc_arm_means(idata)
    ppc.to_csv(out / "ppc.csv", index=False)
    (out / "figures").mkdir(exist_ok=True)  # not parents=True: see the docstring
    tables = {"curves": curves, "contrasts": contrasts, "window": window, "ppc": ppc}
    draw_fit_figures(arm_labels(cfg), tables, chain_draws(idata), out / "figures", flag_text(diag.failures))
    return FitOutcome(
        out,
        variant,
        bool(diag.passed),
        diag.failures,
        seconds_before + time.perf_counter() - t0,
        diag_json["likelihood"],
        diag_json["data_used"],
        diag_json["extension"],
        diag_json["extra_draws"],
    )


def window_spans_of(window: pd.DataFrame, frac: float = 0.5) -> list[tuple[float, float]]:
    """Days where the posterior-mean alpha(t) of any arm rises above baseline by ``frac`` of its peak rise."""
    spans = []
    for _, g in window.groupby("arm"):
        a = g["alpha_mean"].to_numpy()
        rise = a - np.median(a)
        if rise.max() <= 0:
            continue
        on = rise >= frac * rise.max()
        days = g["day"].to_numpy()
        idx = np.flatnonzero(on)
        spans.append((float(days[idx[0]]), float(days[idx[-1]])))
    return sorted(set(spans))


def arm_labels(cfg: Config) -> dict[str, str]:
    return {a.name: a.label or a.name for a in cfg.all_arms()}


def chain_draws(idata) -> dict[str, np.ndarray] | None:
    """Group parameters' (chain, draw) draws for the trace and rank plots; None for one chain (SVI)."""
    from plasticity_rl.inference.diagnostics import group_parameters

    post = idata.posterior
    if post.sizes["chain"] < 2:
        return None
    return {name: post[name].values for name in group_parameters(idata)}


FIT_TABLES = {
    "curves": "arm_curves.csv",
    "contrasts": "contrasts.csv",
    "window": "window.csv",
    "ppc": "ppc.csv",
}


def draw_fit_figures(
    labels: dict[str, str], tables: dict[str, pd.DataFrame], traces, folder: Path, note: str | None
) -> list[Path]:
    """A fit folder's figures from its tables (:data:`FIT_TABLES`) and its chains' draws (or None)."""
    from plasticity_rl.plots import (
        contrast_forest,
        posterior_belief_curves,
        posterior_predictive_check,
        save_figure,
        trace_rank_plots,
        window_posterior,
    )
    from plasticity_rl.plots._panels import _param_unit

    window = tables["window"]
    spans = window_spans_of(window)
    ppc = tables.get("ppc")
    has_ppc = ppc is not None and not ppc.empty
    ema = ppc[ppc["channel"] == "ema"] if has_ppc else None
    figs = {
        "posterior_belief_curves": posterior_belief_curves(
            tables["curves"], arm_labels=labels, window=spans, title_note=note, observed=ema
        ),
        "contrast_forest": contrast_forest(tables["contrasts"], title_note=note),
        "window_posterior": window_posterior(window, arm_labels=labels, title_note=note),
    }
    if has_ppc:
        figs["posterior_predictive_check"] = posterior_predictive_check(
            ppc, arm_labels=labels, window=spans, title_note=note
        )
    if traces:
        units = {name: _param_unit(name) for name in traces}
        figs["trace_rank"] = trace_rank_plots(traces, units, title_note=note)
    paths = []
    for name, fig in figs.items():
        paths += save_figure(fig, folder, name, ("png", "svg"))
    append_captions(folder, figs)
    return paths


def redraw_fit_figures(fit_dir: Path) -> list[Path]:
    """Redraw a fit folder's figures from its own files (tables, posterior.nc, diagnostics.json):
    no data, config or refit needed, so a fit of a trial's own data redraws as well as a simulation's."""
    fit_dir = Path(fit_dir)
    if not (fit_dir / "posterior.nc").is_file():
        raise FileNotFoundError(f"{fit_dir} is not a fit folder (no posterior.nc)")
    tables = {k: pd.read_csv(fit_dir / f) for k, f in FIT_TABLES.items() if (fit_dir / f).is_file()}
    missing = sorted(set(FIT_TABLES) - set(tables) - {"ppc"})  # ppc.csv: fits from before it existed
    if missing:
        raise FileNotFoundError(f"{fit_dir} lacks {', '.join(FIT_TABLES[m] for m in missing)}: refit it")
    idata = az.from_netcdf(str(fit_dir / "posterior.nc"))
    cfg = config_from_yaml(idata.posterior.attrs["config_yaml"])
    diag = json.loads((fit_dir / "diagnostics.json").read_text())
    (fit_dir / "figures").mkdir(exist_ok=True)
    return draw_fit_figures(
        arm_labels(cfg), tables, chain_draws(idata), fit_dir / "figures", flag_text(diag["failures"])
    )


def append_captions(folder: Path, figs: dict) -> None:
    """Each figure's caption into ``folder/captions.md`` under ``## <name>``, replacing an older one."""
    from plasticity_rl.plots.style import caption_of

    path = folder / "captions.md"
    sections = {}
    if path.is_file():
        for block in path.read_text().split("## ")[1:]:
            name, _, body = block.partition("\n")
            sections[name.strip()] = body.strip()
    sections.update({name: caption_of(fig) for name, fig in figs.items()})
    path.write_text("\n".join(f"## {name}\n\n{body}\n" for name, body in sections.items()))


def compare_fits(fit_dirs: list[Path], out: Path) -> pd.DataFrame:
    """PSIS-LOO comparison (leave one patient out) of fits of different variants on the same data.

    The ranking uses each fit's ``loo_marginal.nc`` (integrated LOO: a left-out patient's own
    parameters integrated over the population, :mod:`plasticity_rl.inference.marginal`) when every
    fit has one; ``loo.csv`` and ``loo_pareto_k.json`` then hold that comparison. The conditional
    per-patient LOO (``posterior.nc``'s ``log_likelihood``), which PSIS usually cannot estimate
    here, is written beside it as ``loo_conditional.csv`` / ``loo_conditional_pareto_k.json``.
    """
    from plasticity_rl.plots import loo_comparison, save_figure

    conditional, marginal, passed = {}, {}, {}
    for d in fit_dirs:
        path = Path(d) / "posterior.nc"
        if not path.is_file():
            raise FileNotFoundError(f"{d} is not a fit folder (no posterior.nc)")
        idata = az.from_netcdf(str(path))
        name = str(idata.posterior.attrs.get("variant", Path(d).name))
        conditional[name] = idata
        diag = Path(d) / "diagnostics.json"  # a fit that failed them is ranked, and marked
        passed[name] = bool(json.loads(diag.read_text()).get("passed", True)) if diag.is_file() else True
        if (Path(d) / "loo_marginal.nc").is_file():
            marginal[name] = az.from_netcdf(str(Path(d) / "loo_marginal.nc"))
    sizes = {k: v.log_likelihood["obs"].sizes["patient"] for k, v in conditional.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"fits are not of the same data (patients per fit: {sizes})")
    if len(conditional) < 2:
        raise ValueError("compare needs fits of at least two different variants")
    integrated = len(marginal) == len(conditional)
    out.mkdir(parents=True, exist_ok=True)
    conditional_result = _write_loo(conditional, out, "loo_conditional" if integrated else "loo", passed)
    table, pareto = _write_loo(marginal, out, "loo", passed) if integrated else conditional_result
    fig = loo_comparison(table, title_note=loo_warning(pareto, integrated), integrated=integrated)
    save_figure(fig, out / "figures", "loo_comparison", ("png", "svg"))
    append_captions(out / "figures", {"loo_comparison": fig})
    return table


def _write_loo(idatas: dict, out: Path, stem: str, passed: dict[str, bool] | None = None):
    """arviz.compare of ``idatas`` into ``<stem>.csv`` and its Pareto-k verdict into ``<stem>_pareto_k.json``.

    ``passed``: each model's diagnostics verdict, kept as the table's ``diagnostics_passed``
    column, so a ranked fit that failed its diagnostics is marked wherever the table goes.
    """
    import warnings

    with warnings.catch_warnings():  # the verdict goes into the json and the figure
        warnings.simplefilter("ignore")
        table = az.compare(idatas, ic="loo", var_name="obs")
        pareto = {k: _pareto_k_bad(v) for k, v in idatas.items()}
    if passed is not None:
        table["diagnostics_passed"] = [passed.get(str(m), True) for m in table.index]
    table.to_csv(out / f"{stem}.csv", index_label="model")
    (out / f"{stem}_pareto_k.json").write_text(json.dumps(pareto, indent=2) + "\n")
    return table, pareto


def loo_warning(pareto: dict, integrated: bool = False, fits: list[Path] | None = None) -> str | None:
    """A loud note when PSIS-LOO cannot be trusted (Pareto k > 0.7 for some patients), naming
    the command that gives the reliable answer (K-fold refits, ``compare --kfold``)."""
    bad = {k: v for k, v in pareto.items() if v["n_above_0.7"] > 0}
    if not bad:
        return None
    worst = ", ".join(f"{k}: {v['n_above_0.7']}/{v['n_patients']} patients" for k, v in bad.items())
    k = min(10, max(v["n_patients"] for v in pareto.values()))  # 10 folds, or one per patient if fewer
    command = f"plasticity-rl compare {' '.join(map(str, fits)) if fits else 'FIT FIT ...'} --kfold {k}"
    advice = f"for a ranking to trust, refit leaving patients out: {command}"
    if not integrated:
        advice = f"refit to get integrated LOO (loo_marginal.nc), or {advice}"
    return f"PSIS-LOO UNRELIABLE: Pareto k > 0.7 ({worst}); {advice}"


def _pareto_k_bad(idata) -> dict:
    loo = az.loo(idata, var_name="obs", pointwise=True)
    k = np.asarray(loo.pareto_k)
    return {"k_max": float(k.max()), "n_above_0.7": int((k > 0.7).sum()), "n_patients": int(k.size)}
