"""The ``plasticity-rl`` command line.

Exit codes: 0 ok, 2 bad input (config, arguments, data), 1 internal error.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from plasticity_rl.config import ConfigError, bundled_config_path, config_to_yaml, load_config

app = typer.Typer(
    name="plasticity-rl",
    help="Simulate, fit and teach the ketamine plasticity window "
    "(a higher learning rate that lets therapy reach core beliefs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2

ConfigArg = Annotated[Path, typer.Argument(help="Experiment config (YAML).", show_default=False)]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the output path.")]


class Reporter:
    """Stage-by-stage progress on stderr (a spinner per stage), silent with --quiet."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    @contextmanager
    def stage(self, text: str):
        if self.quiet:
            yield
            return
        t = time.perf_counter()
        with err.status(f"{text} ..."):
            yield
        err.print(f"[green]✓[/green] {text} [dim]({time.perf_counter() - t:.1f} s)[/dim]")

    def done(self, text: str):
        if not self.quiet:
            err.print(f"{text} [dim](total {time.perf_counter() - self.t0:.1f} s)[/dim]")


def _load(path: Path):
    cfg = load_config(path)
    from plasticity_rl.schedule import build_schedules

    build_schedules(cfg)  # schedule-level checks (e.g. two sessions on one step)
    return cfg


def _simulate_and_write(cfg, folder: Path, rep: Reporter, figures: bool) -> dict:
    from plasticity_rl.data import tables, write_tables
    from plasticity_rl.simulate import simulate

    with rep.stage(f"simulate {cfg.experiment.name}: {sum(cfg.patients_in(a) for a in cfg.all_arms())} "
                   f"patients, {len(cfg.all_arms())} arms, {cfg.experiment.days} days"):
        sim = simulate(cfg)
    with rep.stage("write tables (Parquet + CSV)"):
        tabs = tables(sim)
        write_tables(tabs, folder / "data")
    if figures:
        with rep.stage("draw figures (PNG + SVG)"):
            from plasticity_rl.plots import render_figures

            render_figures(sim, folder / "figures")
    return {"sim": sim, "tables": tabs}


def _fail(exc: BaseException) -> None:
    if isinstance(exc, ConfigError):
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if isinstance(exc, (FileExistsError, FileNotFoundError)):
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if isinstance(exc, KeyboardInterrupt):
        err.print("[yellow]interrupted:[/yellow] no output folder was left; rerun the same command to start again "
                  "(same config and seed give the same results)")
        raise typer.Exit(130)
    err.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc}")
    err.print("please report it with the command line and config; rerun with PLASTICITY_RL_DEBUG=1 for a traceback")
    import os

    if os.environ.get("PLASTICITY_RL_DEBUG"):
        raise exc
    raise typer.Exit(EXIT_INTERNAL)


@app.command()
def run(
    config: Annotated[Optional[Path], typer.Argument(help="Experiment config (YAML). Default: the bundled flagship trial.", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parent folder of run folders.")] = Path("runs"),
    figures: Annotated[bool, typer.Option(help="Draw the teaching figures.")] = True,
    quiet: Quiet = False,
):
    """Simulate a trial and write a complete run folder: runs/<name>-<timestamp>/.

    The folder holds config.yaml (resolved), provenance.json (versions, git revision, seed,
    command), data/ (tables as Parquet and CSV), figures/ (PNG and SVG) and manifest.json.
    """
    from plasticity_rl.runs import atomic_dir, unique_run_dir, write_manifest, write_run_metadata

    rep = Reporter(quiet)
    try:
        cfg = _load(config or bundled_config_path("flagship"))
        final = unique_run_dir(out, cfg.experiment.name)
        with atomic_dir(final) as folder:
            write_run_metadata(folder, cfg)
            _simulate_and_write(cfg, folder, rep, figures)
            from plasticity_rl.report import write_report

            write_report(folder)
            write_manifest(folder)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - mapped to exit codes
        _fail(exc)
    rep.done(f"[bold]run folder:[/bold] {final}")
    if quiet:
        print(final)


@app.command()
def simulate(
    config: ConfigArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the tables into (must not exist).")],
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
        _fail(exc)
    rep.done(f"[bold]tables:[/bold] {out / 'data'}")
    if quiet:
        print(out)


@app.command()
def validate(
    config: ConfigArg,
    show: Annotated[bool, typer.Option("--show", help="Print the resolved config (all defaults filled in).")] = False,
):
    """Check a config; print what it describes, or every problem with its field path."""
    try:
        cfg = _load(config)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        _fail(exc)
    if show:
        print(config_to_yaml(cfg), end="")
        return
    arms = cfg.all_arms()
    err.print(f"[green]ok[/green] {config}: experiment {cfg.experiment.name!r}, model {cfg.model.variant}, "
              f"{cfg.experiment.days} days x {cfg.experiment.steps_per_day} steps, seed {cfg.experiment.seed}")
    for arm in arms:
        doses = sum(d.repeat for d in arm.doses)
        sessions = sum(s.repeat for s in arm.sessions)
        err.print(f"  {arm.name:<24} {cfg.patients_in(arm):>6} patients  {doses} dose(s)  {sessions} session(s)")


@app.command()
def figures(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by 'plasticity-rl run'.", show_default=False)],
    quiet: Quiet = False,
):
    """Redraw the figures of a run folder from its resolved config (same seed, same data)."""
    from plasticity_rl.plots import render_figures
    from plasticity_rl.simulate import simulate as simulate_cohort

    rep = Reporter(quiet)
    try:
        cfg_path = run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
        cfg = _load(cfg_path)
        with rep.stage("re-simulate from the resolved config"):
            sim = simulate_cohort(cfg)
        with rep.stage("draw figures (PNG + SVG)"):
            paths = render_figures(sim, run_dir / "figures")
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        _fail(exc)
    rep.done(f"[bold]{len(paths)} files in[/bold] {run_dir / 'figures'}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by 'plasticity-rl run'.", show_default=False)],
    quiet: Quiet = False,
):
    """Write RUN_DIR/report.html: a self-contained page (figures embedded, no scripts, no network)."""
    from plasticity_rl.report import write_report

    try:
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml)")
        path = write_report(run_dir)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001
        _fail(exc)
    if quiet:
        print(path)
    else:
        err.print(f"[bold]report:[/bold] {path}")


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
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def main() -> None:
    enable_compilation_cache()
    try:
        app(standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.exit(code)


if __name__ == "__main__":
    main()
