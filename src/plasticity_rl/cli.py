"""The ``plasticity-rl`` command line.

Exit codes (0 ok, 1 internal error, 2 bad input, 3 a failed fit under --strict): plasticity_rl.console.
"""

from __future__ import annotations

import dataclasses
import sys
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from plasticity_rl.config import ConfigError, bundled_config_path, config_to_yaml, load_config
from plasticity_rl.console import (
    EXIT_BAD_INPUT,
    EXIT_FIT_FAILED,
    Reporter,
    err,
    fail,
    failed_fits_note,
    iterations,
    report_fit,
    report_loo,
)

app = typer.Typer(
    name="plasticity-rl",
    help="Simulate, fit and teach the ketamine plasticity window "
    "(a higher learning rate that lets therapy reach core beliefs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class FitMethod(StrEnum):
    """``fit --method``: offered as a choice, so ``--help`` lists the values and a typo is refused."""

    nuts = "nuts"
    svi = "svi"


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"plasticity-rl {version('plasticity-rl')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    # The app's help (above) describes the program; this callback only adds --version.
    return None


def _registered_variants() -> list[str]:
    """The belief models a config may name (``import plasticity_rl`` registers the bundled ones)."""
    from plasticity_rl.registry import MODELS

    return sorted(MODELS)


ConfigArg = Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the output path.")]
Chains = Annotated[int, typer.Option(min=1, help="NUTS chains.")]
Warmup = Annotated[int, typer.Option(min=0, help="NUTS warm-up draws per chain.")]
TargetAccept = Annotated[
    float,
    typer.Option(
        "--target-accept", min=0.5, max=0.99, help="NUTS target acceptance (raise it if a fit diverges)."
    ),
]
Draws = Annotated[int, typer.Option(min=1, help="Posterior draws per chain.")]
ExtendDraws = Annotated[
    int | None,
    typer.Option(
        "--extend-draws",
        min=0,
        help="NUTS: if R-hat or ESS fail after the draws (and nothing diverged), keep sampling, up to this "
        "many more draws per chain, until the draws after a whole round pass (a chain still settling "
        "has its first round counted as warm-up). Default: as many as --draws; 0: never.",
        show_default=False,
    ),
]
Strict = Annotated[bool, typer.Option("--strict", help="Exit with code 3 if a fit fails its diagnostics.")]
Scheduler = Annotated[
    str | None,
    typer.Option("--scheduler", help="Address of an existing Dask scheduler (default: a LocalCluster)."),
]
Workers = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="LocalCluster worker processes (default: one per core)."),
]


def _load(path: Path):
    """A config from a YAML path, or a bundled config by name (``plasticity-rl run timing_sweep``)."""
    path = Path(path)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        try:
            path = bundled_config_path(path.name)
        except ConfigError:
            pass  # not a bundled name either: load_config says the file does not exist
    cfg = load_config(path)
    from plasticity_rl.schedule import build_schedules

    build_schedules(cfg)  # schedule-level checks (e.g. two sessions on one step)
    return cfg


def _simulate_and_write(cfg, folder: Path, rep: Reporter, figures: bool) -> dict:
    from plasticity_rl.data import tables, write_tables
    from plasticity_rl.simulate import simulate

    with rep.stage(
        f"simulate {cfg.experiment.name}: {sum(cfg.patients_in(a) for a in cfg.all_arms())} "
        f"patients, {len(cfg.all_arms())} arms, {cfg.experiment.days} days"
    ):
        sim = simulate(cfg)
    with rep.stage("write tables (Parquet + CSV)"):
        tabs = tables(sim)
        write_tables(tabs, folder / "data")
    from plasticity_rl.validation import check_targets, single_infusion_arms, summary_line

    if None not in single_infusion_arms(cfg):
        with rep.stage("check the model against published trials (validation.csv)"):
            checked = check_targets(cfg)
            checked.to_csv(folder / "validation.csv", index=False)
        rep.line(f"  {summary_line(checked)}")
    if figures:
        with rep.stage("draw figures (PNG + SVG)"):
            from plasticity_rl.plots import render_figures, render_lesson_figures

            render_figures(sim, folder / "figures")
            render_lesson_figures(sim, folder / "figures")  # one patient's events; published MADRS
    return {"sim": sim, "tables": tabs}


@app.command()
def run(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="Experiment config (YAML). Default: the bundled flagship trial.", show_default=False
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parent folder of run folders.")] = Path("runs"),
    figures: Annotated[bool, typer.Option(help="Draw the teaching figures.")] = True,
    fit: Annotated[
        bool,
        typer.Option(
            help="Fit the data with the config's variant and its foil, then compare them (PSIS-LOO)."
        ),
    ] = True,
    chains: Chains = 4,
    warmup: Warmup = 500,
    draws: Draws = 1000,
    extend_draws: ExtendDraws = None,
    target_accept: TargetAccept = 0.8,
    strict: Strict = False,
    quiet: Quiet = False,
):
    """Simulate a trial, fit it, compare models, and write a complete run folder.

    runs/<name>-<timestamp>/ holds config.yaml (resolved), provenance.json (versions, git
    revision, seed, command), data/ (tables as Parquet and CSV), figures/ (PNG and SVG),
    fit-<variant>/ for the config's variant and its foil (schema vs schema_ungated), compare/
    (PSIS-LOO), report.html and manifest.json.

    An interrupted run (Ctrl-C, SIGTERM, kill -9) keeps runs/.<name>-<timestamp>.partial/; the
    same command (same config, options and package version) resumes it, reusing the simulated
    tables and every fit folder already written.
    """
    from plasticity_rl.inference.fit import FitSettings
    from plasticity_rl.runs import RunInterrupted, resumable_dir, run_key, write_manifest
    from plasticity_rl.workflow import compare_fits

    rep = Reporter(quiet)
    failed: list[str] = []
    try:
        cfg = _load(config or bundled_config_path("flagship"))
        extend = draws if extend_draws is None else extend_draws
        settings = FitSettings(
            chains=chains,
            warmup=warmup,
            draws=draws,
            seed=cfg.experiment.seed,
            target_accept=target_accept,
            extend_draws=extend,
        )
        # What makes a rerun the same run (with the config and the code): not --out, -q or --strict.
        key = run_key(
            cfg,
            {
                "figures": figures,
                "fit": fit,
                "chains": chains,
                "warmup": warmup,
                "draws": draws,
                "extend_draws": extend,
                "target_accept": target_accept,
            },
        )

        def stale(path: Path) -> None:
            rep.line(
                f"[yellow]note:[/yellow] {path} is an interrupted run of another config, settings or "
                "code version; it cannot be resumed (delete it when you no longer need it)"
            )

        with resumable_dir(out, cfg.experiment.name, key, on_stale=stale) as state:
            folder, final = state.folder, state.final
            tabs = _simulate_or_reuse(cfg, state, rep, figures)
            if fit:
                from plasticity_rl.models import foil_of

                variants = list(dict.fromkeys([cfg.model.variant, foil_of(cfg.model.variant)]))
                outcomes = _fit_variants(tabs, cfg, variants, folder, settings, rep, state)
                for outcome in outcomes:
                    failed += [f"{outcome.variant}: {f}" for f in outcome.failures]
                with rep.stage("compare models (PSIS-LOO)"):
                    table = compare_fits([o.folder for o in outcomes], folder / "compare")
                report_loo(folder / "compare", table, rep, [final / o.folder.name for o in outcomes])
            from plasticity_rl.report import write_report

            write_report(folder)
            write_manifest(folder)
    except RunInterrupted as exc:
        err.print(f"[yellow]interrupted:[/yellow] the partial run {exc.state.folder} was kept")
        err.print(
            f"  finished: {', '.join(exc.state.done) or 'nothing yet'}; rerun the same command "
            "to resume it (same config, settings and code)"
        )
        raise typer.Exit(130) from None
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - mapped to exit codes
        fail(exc)
    rep.done(f"[bold]run folder:[/bold] {final}")
    if quiet:
        print(final)
    if strict and failed:
        err.print("[red]--strict: a fit failed its diagnostics[/red]")
        raise typer.Exit(EXIT_FIT_FAILED)


def _simulate_or_reuse(cfg, state, rep: Reporter, figures: bool) -> dict:
    """The run's tables: simulated and written, or read back from an interrupted run's folder."""
    from plasticity_rl.runs import note_resumed, write_run_metadata

    if state.finished("simulate"):
        from plasticity_rl.data import read_tables

        note_resumed(state.folder)
        rep.line(
            f"[green]✓[/green] resume {state.final.name}: reuse the simulated tables"
            + (" and figures" if figures else "")
        )
        return read_tables(state.folder / "data")
    write_run_metadata(state.folder, cfg)
    tabs = _simulate_and_write(cfg, state.folder, rep, figures)["tables"]
    state.mark("simulate")
    return tabs


def _fit_variants(tabs, cfg, variants: list[str], folder: Path, settings, rep: Reporter, state=None) -> list:
    """:func:`plasticity_rl.workflow.fit_variants`, reported in the console as each step happens.

    ``state``: the run's :class:`~plasticity_rl.runs.RunState`; a fit folder it lists as finished
    (an interrupted run's) is reused, and each new one is marked finished once written.
    """

    from plasticity_rl.workflow import fit_outcome_of, fit_variants

    reuse = {}
    for variant in variants:
        if state is not None and state.finished(f"fit-{variant}"):
            reuse[variant] = fit_outcome_of(folder / f"fit-{variant}")
            rep.line(f"[green]✓[/green] fit {variant}: reuse fit-{variant} from the interrupted run")
            report_fit(reuse[variant], rep)

    @contextmanager
    def fitting(variant):
        with rep.stage(
            f"fit {variant} (NUTS, {settings.chains} chains x {settings.warmup} + {settings.draws})"
        ) as say:
            yield iterations(say, settings.warmup)

    def waiting(variant):
        return rep.wait(f"write fit-{variant}: integrated LOO, diagnostics, figures")

    def written(outcome, seconds: float, overlapped: bool):
        overlap = ", while the next fit ran" if overlapped else ""
        rep.line(
            f"[green]✓[/green] write fit-{outcome.variant}: integrated LOO, diagnostics, figures "
            f"[dim]({seconds:.1f} s{overlap})[/dim]"
        )
        report_fit(outcome, rep)

    def finished(outcome):  # in the writer thread, as soon as the folder is whole
        if state is not None:
            state.mark(f"fit-{outcome.variant}")

    return fit_variants(
        tabs,
        cfg,
        variants,
        folder,
        settings,
        fitting=fitting,
        waiting=waiting,
        written=written,
        finished=finished,
        reuse=reuse,
    )


@app.command()
def simulate(
    config: ConfigArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the tables into (must not exist).")
    ],
    force: Annotated[bool, typer.Option("--force", help="Replace the folder if it exists.")] = False,
    quiet: Quiet = False,
):
    """Simulate a cohort and write its tables (Parquet + CSV) and resolved config into OUT."""
    from plasticity_rl.runs import atomic_dir, write_manifest, write_run_metadata

    rep = Reporter(quiet)
    try:
        cfg = _load(config)
        with atomic_dir(out, overwrite=force) as folder:
            write_run_metadata(folder, cfg)
            _simulate_and_write(cfg, folder, rep, figures=False)
            write_manifest(folder)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    rep.done(f"[bold]tables:[/bold] {out / 'data'}")
    if quiet:
        print(out)


@app.command()
def validate(
    config: ConfigArg,
    show: Annotated[
        bool, typer.Option("--show", help="Print the resolved config (all defaults filled in).")
    ] = False,
):
    """Check a config; print what it describes, or every problem with its field path."""
    try:
        cfg = _load(config)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    if show:
        print(config_to_yaml(cfg), end="")
        return
    arms = cfg.all_arms()
    err.print(
        f"[green]ok[/green] {config}: experiment {cfg.experiment.name!r}, model {cfg.model.variant}, "
        f"{cfg.experiment.days} days x {cfg.experiment.steps_per_day} steps, seed {cfg.experiment.seed}"
    )
    for arm in arms:
        doses = sum(d.repeat for d in arm.doses)
        sessions = sum(s.repeat for s in arm.sessions)
        err.print(
            f"  {arm.name:<24} {cfg.patients_in(arm):>6} patients  {doses} dose(s)  {sessions} session(s)"
        )


@app.command()
def figures(
    folder: Annotated[
        Path,
        typer.Argument(
            help="A run folder written by 'plasticity-rl run', or a fit folder (holding posterior.nc).",
            show_default=False,
        ),
    ],
    quiet: Quiet = False,
):
    """Redraw figures: a fit folder's from its own files; a run folder's from its resolved config
    (same seed, same data), then those of each fit folder inside it."""
    from plasticity_rl.workflow import redraw_fit_figures

    rep = Reporter(quiet)
    paths = []
    try:
        if (folder / "posterior.nc").is_file():
            with rep.stage("draw the fit's figures from its files (PNG + SVG)"):
                paths = redraw_fit_figures(folder)
        else:
            paths = _redraw_run_figures(folder, rep)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    rep.done(f"[bold]{len(paths)} files in[/bold] {folder}")
    if quiet:
        print(folder)


def _redraw_run_figures(folder: Path, rep: Reporter) -> list[Path]:
    """A run folder's figures, re-simulated from its resolved config, then its fit folders'."""
    from plasticity_rl.plots import render_figures, render_lesson_figures
    from plasticity_rl.runs import write_manifest
    from plasticity_rl.simulate import simulate as simulate_cohort
    from plasticity_rl.workflow import redraw_fit_figures

    cfg_path = folder / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{folder} is neither a run folder (no config.yaml) nor a fit folder (no posterior.nc)"
        )
    cfg = _load(cfg_path)
    with rep.stage("re-simulate from the resolved config"):
        sim = simulate_cohort(cfg)
    with rep.stage("draw figures (PNG + SVG)"):
        # every figure `run` draws, in its order, so captions.md comes out the same
        paths = render_figures(sim, folder / "figures")
        paths += render_lesson_figures(sim, folder / "figures")
    for fit_dir in sorted(d for d in folder.glob("fit-*") if (d / "posterior.nc").is_file()):
        with rep.stage(f"draw {fit_dir.name}'s figures from its files"):
            paths += redraw_fit_figures(fit_dir)
    if (folder / "manifest.json").is_file():
        write_manifest(folder)  # the redrawn files' new hashes
    return paths


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder written by 'plasticity-rl run'.", show_default=False)
    ],
    quiet: Quiet = False,
):
    """Write RUN_DIR/report.html: a self-contained page (figures embedded, no scripts, no network)."""
    from plasticity_rl.report import write_report

    try:
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
        path = write_report(run_dir)
        if (run_dir / "manifest.json").is_file():
            from plasticity_rl.runs import write_manifest

            write_manifest(run_dir)  # report.html's new hash
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    if quiet:
        print(path)
    else:
        err.print(f"[bold]report:[/bold] {path}")


@app.command("fit")
def fit_cmd(
    data: Annotated[
        Path,
        typer.Argument(
            help="A run folder, or a folder of tables (events, ema, visits, ...).", show_default=False
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config describing the data's arms and schedule (default: DATA/config.yaml).",
        ),
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            "--variant",
            help="Model variant (default: the config's). Registered: "
            + ", ".join(_registered_variants())
            + ".",
        ),
    ] = None,
    method: Annotated[
        FitMethod,
        typer.Option("--method", help="nuts (default), or svi: a fast APPROXIMATE variational fit."),
    ] = FitMethod.nuts,
    chains: Chains = 4,
    warmup: Warmup = 500,
    draws: Draws = 1000,
    extend_draws: ExtendDraws = None,
    target_accept: TargetAccept = 0.8,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    fixed_window: Annotated[
        bool,
        typer.Option(
            "--fixed-window",
            help="Hold the plasticity kernel's time constants at the config's values instead of fitting them.",
        ),
    ] = False,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            help="Your tables' column names for the package's: OLD=NEW,... (e.g. subject_id=patient,madrs=score).",
        ),
    ] = None,
    likelihood: Annotated[
        str | None,
        typer.Option(
            "--likelihood",
            help=(
                "marginal: integrate the unrecorded everyday outcomes out (what a trial records); "
                "conditional: condition on logged outcomes (needs an events table). "
                "Default: the config's observations.outcomes_recorded, if the data have events."
            ),
        ),
    ] = None,
    fix: Annotated[
        list[str] | None,
        typer.Option(
            "--fix",
            help="Hold a parameter at a value instead of fitting it: NAME=VALUE (repeatable; see 'plasticity-rl params').",
            show_default=False,
        ),
    ] = None,
    contrast: Annotated[
        list[str] | None,
        typer.Option(
            "--contrast",
            help="Arms to contrast in contrasts.csv: ARM_A:ARM_B, meaning A minus B (repeatable; default: every pair).",
            show_default=False,
        ),
    ] = None,
    contrast_days: Annotated[
        str | None,
        typer.Option(
            "--contrast-days",
            help="Days of the contrasts, comma-separated (default: the ends of the therapy blocks and the last day).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Fit folder (default: DATA/fit-<variant>).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the fit folder if it exists.")] = False,
    strict: Strict = False,
    quiet: Quiet = False,
):
    """Fit a trial hierarchically (NumPyro) and write posterior.nc, summary, diagnostics, contrasts and figures."""
    from plasticity_rl.inference.fit import FitSettings
    from plasticity_rl.kfold import write_data_source
    from plasticity_rl.models import get_model
    from plasticity_rl.runs import atomic_dir
    from plasticity_rl.workflow import fit_to_folder, load_data_folder

    rep = Reporter(quiet)
    try:
        method = FitMethod(method).value  # a plain str from here on (FitSettings, JSON)
        tabs, cfg = load_data_folder(data, config, _parse_columns(columns))
        variant = variant or cfg.model.variant
        try:
            get_model(variant)
        except ValueError as exc:
            raise ConfigError([f"--variant: {exc}"]) from None
        target = out or data / f"fit-{variant}"
        held = _parse_fix(fix or [], variant, cfg)
        settings = FitSettings(
            method=method,
            chains=chains,
            warmup=warmup,
            draws=draws,
            seed=seed,
            target_accept=target_accept,
            extend_draws=draws if extend_draws is None else extend_draws,
            fit_window=not fixed_window,
            fixed=tuple(sorted(held.items())),
            likelihood=likelihood,
            contrasts=_parse_contrasts(contrast or [], cfg),
            contrast_days=_parse_days(contrast_days, cfg),
        )
        if likelihood not in (None, "marginal", "conditional"):
            raise ConfigError([f"--likelihood: got {likelihood!r}; allowed: marginal, conditional"])
        label = "SVI, approximate" if method == "svi" else f"NUTS, {chains} chains x {warmup} + {draws}"
        with atomic_dir(target, overwrite=force) as folder:
            with rep.stage(f"fit {variant} ({label})") as say:
                outcome = fit_to_folder(
                    tabs, cfg, variant, folder, settings, progress=iterations(say, warmup)
                )
            write_data_source(folder, data, _parse_columns(columns))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    outcome = dataclasses.replace(outcome, folder=target)  # the folder's final name
    report_fit(outcome, rep)
    rep.done(f"[bold]fit folder:[/bold] {target}")
    if quiet:
        print(target)
    if strict and not outcome.passed:
        raise typer.Exit(EXIT_FIT_FAILED)


def _parse_columns(text: str | None) -> dict[str, str]:
    """``--columns OLD=NEW,...`` as a mapping; a clear error for anything else."""
    mapping = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ConfigError([f"--columns: got {item.strip()!r}; allowed: OLD=NEW pairs, comma-separated"])
        mapping[old.strip()] = new.strip()
    return mapping


def _parse_contrasts(items: list[str], cfg) -> tuple[tuple[str, str], ...]:
    """``--contrast A:B`` options as (A, B) pairs of the config's arm names."""
    names = [a.name for a in cfg.all_arms()]
    pairs = []
    for item in items:
        a, sep, b = (part.strip() for part in item.partition(":"))
        if not sep or a not in names or b not in names or a == b:
            raise ConfigError(
                [f"--contrast: got {item!r}; allowed: ARM_A:ARM_B, two different arms of {', '.join(names)}"]
            )
        pairs.append((a, b))
    return tuple(pairs)


def _parse_days(text: str | None, cfg) -> tuple[float, ...]:
    """``--contrast-days 12,26,56`` as days within the trial."""
    days = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        try:
            day = float(item)
        except ValueError:
            day = float("nan")
        if not 0 <= day <= cfg.experiment.days:
            raise ConfigError(
                [
                    f"--contrast-days: got {item.strip()!r}; allowed: days from 0 to {cfg.experiment.days}, comma-separated"
                ]
            )
        days.append(day)
    return tuple(days)


def _parse_fix(items: list[str], variant: str, cfg) -> dict[str, float]:
    """--fix NAME=VALUE options as a dict, checked against the parameter table and the variant."""
    from plasticity_rl.inference.model import check_fixed

    fixed = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            fixed[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError([f"--fix: got {item!r}; give NAME=VALUE, e.g. --fix kappa=0.05"])
    try:
        check_fixed(variant, {**cfg.model.fixed, **fixed}, cfg)
    except ValueError as exc:
        raise ConfigError([f"--fix: {exc}"]) from None
    return fixed


@app.command("check-targets")
def check_targets_cmd(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="Experiment config (YAML). Default: the bundled single_infusion trial.", show_default=False
        ),
    ] = None,
    patients: Annotated[int, typer.Option(min=100, help="Simulated patients per arm.")] = 2000,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the table as CSV.", show_default=False)
    ] = None,
    decomposition: Annotated[
        bool,
        typer.Option(
            "--decomposition",
            help="Also show where each arm's improvement comes from (learning, acute lift D, infusion response E).",
        ),
    ] = False,
):
    """The model under CONFIG against every published trial number it can express: hit or miss.

    Each target is a trial's published statistic (mean score, change from baseline, response
    rate, drug-placebo gap) with its trial size n. The model's value comes from a simulated cohort
    of PATIENTS per arm; its 90 % interval is that of the statistic in simulated trials of n
    patients. A target inside it is a hit; one outside, a miss. Needs an arm with one ketamine
    infusion and an arm with a placebo infusion, neither with therapy.
    """
    from plasticity_rl.validation import check_targets, shown_targets, single_infusion_arms, summary_line

    try:
        cfg = _load(config or bundled_config_path("single_infusion"))
        ket, plc = single_infusion_arms(cfg)
        if ket is None or plc is None:
            missing = "one ketamine infusion" if ket is None else "a placebo infusion (amount 0)"
            raise ConfigError(
                [
                    f"arms: {[a.name for a in cfg.arms]} has no arm with {missing} and no sessions; "
                    "check-targets compares single-infusion trials (e.g. the bundled single_infusion config)"
                ],
                str(config or "single_infusion"),
            )
        table = check_targets(cfg, patients=patients)
        parts = None
        if decomposition:
            from plasticity_rl.validation import score_decomposition

            parts = score_decomposition(cfg, patients=patients)
        if out is not None:
            from plasticity_rl.runs import write_text

            write_text(out, table.to_csv(index=False))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    from rich.table import Table

    rows = shown_targets(table)
    shown = Table(*rows.columns)
    for r in rows.itertuples(index=False):
        colour = "green" if r.verdict == "hit" else "red"
        shown.add_row(*(str(v) for v in r[:-1]), f"[{colour}]{r.verdict.upper()}[/{colour}]")
    Console(width=200).print(shown)
    skipped = table[table["verdict"] == "not checked"]
    if len(skipped):
        err.print("not checked:")
        for r in skipped.itertuples(index=False):
            err.print(f"  {r.id}: {r.why}")
    err.print(summary_line(table))
    known = table[(table["verdict"] == "miss") & (table["defaults_miss"] != "")]
    if len(known):
        err.print("why the package's shipped defaults miss these (validation.csv, column defaults_miss):")
        for why, rows in known.groupby("defaults_miss", sort=False):
            err.print(f"  {', '.join(rows['id'])}: {why}")
    if parts is not None:
        split = Table(
            "arm",
            "after the last infusion",
            "learning",
            "acute lift D",
            "infusion response E",
            "total",
            "learning's share",
            title="Change in the expected MADRS from before the first infusion (points; negative is better)",
        )
        for r in parts.itertuples(index=False):
            split.add_row(
                r.arm,
                f"{r.after_last_infusion_days:g} d",
                f"{r.learning:.1f}",
                f"{r.acute_lift:.1f}",
                f"{r.infusion_response:.1f}",
                f"{r.total:.1f}",
                f"{r.learning_share:.0%}",
            )
        Console(width=200).print(split)


@app.command()
def params(
    level: Annotated[
        str | None, typer.Option("--level", help="Only this level: patient, group or fixed.")
    ] = None,
):
    """Print the parameter table: every model parameter once, with level, default, unit, prior and config field."""
    from plasticity_rl.params import PARAMS

    if level not in (None, "patient", "group", "fixed"):
        err.print(f"[red]error:[/red] --level: got {level!r}; allowed: patient, group, fixed")
        raise typer.Exit(EXIT_BAD_INPUT)
    from rich.table import Table

    table = Table("name", "level", "default", "unit", "prior", "config field", "meaning", show_lines=False)
    for p in PARAMS.values():
        if level and p.level != level:
            continue
        table.add_row(p.name, p.level, p.default_text, p.unit, p.prior_text, p.config, p.meaning)
    Console(width=200).print(table)


@app.command()
def compare(
    fits: Annotated[
        list[Path],
        typer.Argument(help="Fit folders of different variants on the same data.", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write loo.csv and the figure.")] = Path(
        "compare"
    ),
    kfold: Annotated[
        int | None,
        typer.Option(
            "--kfold",
            min=2,
            help="K-fold cross-validation by patient: refit every model K times, each time without "
            "one fold of patients, and score those patients (the answer to trust when PSIS-LOO warns). "
            "Rerun to resume.",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="K-fold: the data the fits were fitted to (default: where the first fit says it read "
            "them, else its folder's parent).",
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            "--columns",
            help="K-fold: the tables' column names, as fit --columns (OLD=NEW,...); default: the first fit's.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="K-fold: seed of the folds and the held-out scores.")] = 0,
    scheduler: Scheduler = None,
    workers: Workers = None,
    quiet: Quiet = False,
):
    """Compare fitted variants: PSIS-LOO (leave one patient out) by default, or K-fold refits with --kfold."""
    from plasticity_rl.workflow import compare_fits

    try:
        if kfold is not None:
            from plasticity_rl.kfold import kfold_compare, kfold_warning

            table, _ = kfold_compare(
                fits,
                kfold,
                out,
                data=data,
                columns=_parse_columns(columns),
                seed=seed,
                scheduler=scheduler,
                n_workers=workers,
                progress=not quiet,
            )
        else:
            table = compare_fits(fits, out)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    if kfold is not None:
        print(
            table[["rank", "elpd_kfold", "se", "elpd_diff", "dse", "folds_failed_diagnostics"]]
            .round(3)
            .to_string()
        )
        note = kfold_warning(table)
        if note:
            err.print(f"[red]{note}[/red]")
        return
    print(table.round(3).to_string())
    report_loo(out, table, Reporter(quiet=True), fits)


@app.command()
def recover(
    config: ConfigArg,
    datasets: Annotated[
        int, typer.Option("--datasets", "-k", min=1, help="Simulated data sets to fit.")
    ] = 10,
    chains: Chains = 2,
    warmup: Warmup = 300,
    draws: Draws = 300,
    target_accept: TargetAccept = 0.8,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Study folder (rerun to resume: finished fits are skipped).")
    ] = Path("recovery"),
    scheduler: Scheduler = None,
    workers: Workers = None,
    quiet: Quiet = False,
):
    """Parameter recovery: simulate K data sets from the config, fit each, report r, bias and 90% coverage."""
    from plasticity_rl.inference.fit import FitSettings
    from plasticity_rl.recovery import recover as run_recovery

    try:
        cfg = _load(config)
        settings = FitSettings(chains=chains, warmup=warmup, draws=draws, target_accept=target_accept)
        table, summary = run_recovery(
            cfg, datasets, out, settings, scheduler=scheduler, n_workers=workers, progress=not quiet
        )
        table.to_csv(out / "recovery.csv", index=False)
        summary.to_csv(out / "recovery_summary.csv", index=False)
        from plasticity_rl.plots import recovery_scatter, save_figure

        note = failed_fits_note(table, "dataset")
        for level, g in table.groupby("level"):
            save_figure(
                recovery_scatter(g, title_note=note), out / "figures", f"recovery_{level}", ("png", "svg")
            )
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    print(summary.round(3).to_string(index=False))


@app.command()
def sbc(
    config: ConfigArg,
    reps: Annotated[
        int, typer.Option("--reps", "-n", min=1, help="Replications (100 or more for a real check).")
    ] = 100,
    chains: Chains = 2,
    warmup: Warmup = 300,
    draws: Draws = 300,
    target_accept: TargetAccept = 0.8,
    out: Annotated[Path, typer.Option("--out", "-o", help="Study folder (rerun to resume).")] = Path("sbc"),
    scheduler: Scheduler = None,
    workers: Workers = None,
    quiet: Quiet = False,
):
    """Simulation-based calibration: rank histograms and a chi-square uniformity test per group parameter."""
    from plasticity_rl.inference.fit import FitSettings
    from plasticity_rl.recovery import sbc as run_sbc

    try:
        cfg = _load(config)
        settings = FitSettings(chains=chains, warmup=warmup, draws=draws, target_accept=target_accept)
        ranks, uniformity = run_sbc(
            cfg, reps, out, settings, scheduler=scheduler, n_workers=workers, progress=not quiet
        )
        ranks.to_csv(out / "sbc_ranks.csv", index=False)
        uniformity.to_csv(out / "sbc_uniformity.csv", index=False)
        from plasticity_rl.plots import save_figure, sbc_ecdf, sbc_ranks

        note = failed_fits_note(ranks, "replicate")
        save_figure(sbc_ranks(ranks, title_note=note), out / "figures", "sbc_ranks", ("png", "svg"))
        save_figure(sbc_ecdf(ranks, title_note=note), out / "figures", "sbc_ecdf", ("png", "svg"))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    print(uniformity.round(4).to_string(index=False))


@app.command()
def sweep(
    config: Annotated[
        Path, typer.Argument(help="Experiment config (YAML), or a bundled config's name.", show_default=False)
    ],
    param: Annotated[
        list[str],
        typer.Option(
            "--param",
            "-p",
            help="NAME=V1,V2,...: a parameter of the table (plasticity-rl params) and its values; repeat for a "
            "grid. A patient-level parameter (A, logit_alpha0, ...) sets its population mean.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: sweeps/NAME).")
    ] = None,
    fit: Annotated[
        bool,
        typer.Option(
            "--fit",
            help="Also fit the config's variant to every point's data: OUT/sweep_fits.csv (verdict, swept "
            "parameters' posterior means and 94% HDIs, the synergy).",
        ),
    ] = False,
    chains: Chains = 4,
    warmup: Warmup = 500,
    draws: Draws = 1000,
    scheduler: Scheduler = None,
    workers: Workers = None,
    quiet: Quiet = False,
):
    """Simulate the trial at every combination of the parameters' values (on Dask) and tabulate
    each arm's mean V and S at follow-up: OUT/sweep.csv and OUT/figures/sweep_curves.png/svg.

    With --fit, each point's data are fitted too (NUTS, --chains/--warmup/--draws; no extension:
    every point gets the same procedure). Every point keeps the config's seed. Rerun the same
    command to resume an interrupted sweep.
    """
    from plasticity_rl.plots import save_figure, sweep_curves
    from plasticity_rl.sweep import parse_grid, run_sweep

    rep = Reporter(quiet)
    try:
        cfg = _load(config)
        grid = parse_grid(param or [])
        folder = out or Path("sweeps") / cfg.experiment.name
        with rep.stage(
            f"sweep {cfg.experiment.name}: {' x '.join(f'{k} ({len(v)})' for k, v in grid.items())}"
        ):
            settings = {"chains": chains, "warmup": warmup, "draws": draws} if fit else None
            table = run_sweep(
                cfg, grid, folder, scheduler=scheduler, n_workers=workers, progress=not quiet, fit=settings
            )
            fig = sweep_curves(table, list(grid))
            paths = save_figure(fig, folder / "figures", "sweep_curves")
            from plasticity_rl.plots import caption_of

            (folder / "figures" / "captions.md").write_text(f"## sweep_curves\n\n{caption_of(fig)}\n")
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    if not quiet:
        shown = table.pivot_table(index=list(grid), columns="arm", values="V_followup", sort=False)
        err.print(f"mean V at follow-up (day {cfg.followup_day}), per arm:")
        err.print(shown.round(3).to_string())
        err.print(f"figure: {paths[0]}")
        if fit:
            fits = table.attrs["fits"]
            err.print(f"fits: {int(fits['fit_passed'].sum())} of {len(fits)} passed their diagnostics")
            err.print(fits.round(3).to_string(index=False))
    print(folder / ("sweep_fits.csv" if fit else "sweep.csv"))


@app.command()
def explore(
    config: Annotated[
        Path | None,
        typer.Argument(
            help="Base config (YAML) for everything the sliders do not set. Default: the bundled flagship.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any free port).")] = 8765,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Serve the page without opening a browser.")
    ] = False,
):
    """A live page to play with the model: sliders for the dose schedule, A, α0, κ, the window's
    length, the interpretation bias, the therapy's start, sessions and corrective experiences,
    and the variant; α(t), V and S, the clinician score and the therapy-timing curve redraw as
    you move them, computed by the package's own simulator. Export the settings as a config.

    Served on 127.0.0.1 only and fully offline (nothing is loaded from the internet). Ctrl-C stops.
    """
    from plasticity_rl.explore import make_server, warm_up

    try:
        base = _load(config) if config is not None else load_config(bundled_config_path("flagship"))
        with err.status("compiling the explorer's programs..."):
            seconds = warm_up(base)
        server = make_server(base, port=port)
    except OSError as exc:
        err.print(
            f"[red]✗[/red] port {port}: {exc.strerror or exc}; choose another with --port (0: any free port)"
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        fail(exc)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    err.print(
        f"✓ explorer ready ({seconds:.1f} s to compile), base config {base.experiment.name}; Ctrl-C stops"
    )
    print(url, flush=True)
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err.print("explorer stopped")
    finally:
        server.server_close()


@app.command()
def schema():
    """Print the config's JSON Schema (every field, its type, range and description), for editors
    that check YAML against a schema (e.g. `# yaml-language-server: $schema=config.schema.json`)."""
    import json

    from plasticity_rl.config import Config

    print(json.dumps(Config.model_json_schema(), indent=2))


@app.command("configs")
def list_configs():
    """List the configs bundled with the package."""
    folder = bundled_config_path("flagship").parent
    for p in sorted(folder.glob("*.yaml")):
        first = next((line[2:].strip() for line in p.read_text().splitlines() if line.startswith("# ")), "")
        print(f"{p.stem:<18} {p}\n{'':<18} {first}")


def enable_compilation_cache() -> None:
    """Keep JAX compilations on disk so a second run skips them (PLASTICITY_RL_NO_CACHE=1: off)."""
    import os

    if os.environ.get("PLASTICITY_RL_NO_CACHE"):
        return
    import jax

    if jax.config.jax_compilation_cache_dir is None:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        jax.config.update("jax_compilation_cache_dir", str(base / "plasticity_rl" / "jax"))
        # Every program, however small: the simulator and the analyses run ~170 small eager
        # programs (10-170 ms of compiling each), which JAX's default 1 s threshold (and our old
        # 0.2 s) compiled afresh in every run; loading them is faster (flagship simulate stage
        # 3.1 -> 1.0 s; benchmarks/README.md).
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def stop_on_sigterm() -> None:
    """SIGTERM (``kill``, a batch scheduler's time limit) stops a command as Ctrl-C does: the
    same clean-up, the same message, and a run's partial folder kept for resuming."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main() -> None:
    # One host device per NUTS chain, set before JAX starts its backend, so chains run in
    # parallel instead of (silently) one after another.
    import numpyro

    numpyro.set_host_device_count(4)
    enable_compilation_cache()
    stop_on_sigterm()
    try:
        app(standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.exit(code)


if __name__ == "__main__":
    main()
