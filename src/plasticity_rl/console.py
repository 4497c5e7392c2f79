"""How the command line talks: a line per stage, loud failed fits, and exit codes.

Exit codes: 0 ok, 1 internal error, 2 bad input (config, arguments, data; the message names the
field, the value and what is allowed), 3 a fit failed its diagnostics under ``--strict``,
130 interrupted.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from plasticity_rl.config import ConfigError

err = Console(stderr=True, soft_wrap=True)
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_FIT_FAILED = 0, 1, 2, 3


class Reporter:
    """Stage-by-stage progress on stderr (a spinner per stage), silent with --quiet."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    @contextmanager
    def stage(self, text: str):
        if self.quiet:
            yield lambda more: None
            return
        t = time.perf_counter()
        with err.status(f"{text} ...") as status:
            yield lambda more: status.update(f"{text} ... {more}")
        err.print(f"[green]✓[/green] {text} [dim]({time.perf_counter() - t:.1f} s)[/dim]")

    @contextmanager
    def wait(self, text: str):
        """A spinner while waiting for ``text`` (no line when done: the caller says what it took)."""
        if self.quiet:
            yield
            return
        with err.status(f"{text} ..."):
            yield

    def line(self, text: str):
        if not self.quiet:
            err.print(text)

    def done(self, text: str):
        if not self.quiet:
            err.print(f"{text} [dim](total {time.perf_counter() - self.t0:.1f} s)[/dim]")


def iterations(say, warmup: int):
    """A fit progress callback that writes 'warm-up 150/500' or 'sampling 200/500' into a stage."""

    def update(done: int, total: int):
        say(f"warm-up {done}/{warmup}" if done <= warmup else f"sampling {done - warmup}/{total - warmup}")

    return update


def failed_fits_note(table, fit_column: str) -> str | None:
    """'k OF n FITS FAILED DIAGNOSTICS' for a recovery or SBC table (one fit per ``fit_column``)."""
    failed = table.groupby(fit_column)["diagnostics_passed"].first().eq(False)
    return f"{int(failed.sum())} OF {failed.size} FITS FAILED DIAGNOSTICS" if failed.any() else None


def report_fit(outcome, rep: Reporter) -> None:
    """What the fit used, and loudly when it fails its diagnostics (also in diagnostics.json
    and figure titles)."""
    if not rep.quiet and outcome.data_used:
        err.print(f"  {used_text(outcome.data_used, outcome.likelihood)}")
        for note in outcome.data_used.get("notes", []):
            err.print(f"  [yellow]note:[/yellow] {note}")
    if not rep.quiet and outcome.extra_draws > 0:
        err.print(f"  [yellow]sampled longer:[/yellow] {outcome.extension}")
    if outcome.passed:
        if not rep.quiet:
            err.print(f"  [green]diagnostics passed[/green] ({outcome.folder.name})")
        return
    err.print(f"  [red]FIT FAILED DIAGNOSTICS[/red] ({outcome.folder.name}):")
    for f in outcome.failures:
        err.print(f"    - {f}")


def used_text(used: dict, likelihood: str) -> str:
    """One line: what a fit used (:meth:`plasticity_rl.inference.FitData.usage`)."""
    ema, visits, sessions = used["ema_ratings"], used["visits"], used["sessions"]
    how = "outcomes integrated out" if likelihood == "marginal" else "conditional on the logged outcomes"
    return (
        f"used {used['patients']} patients, {ema['used']:,} EMA ratings ({ema['missing']:,} missing), "
        f"{visits['used']:,} visits ({visits['missing']:,} missing), {sessions['attended']:,} sessions "
        f"attended ({sessions['missed']:,} missed); likelihood: {likelihood} ({how})"
    )


def report_loo(folder: Path, table, rep: Reporter, fits: list[Path] | None = None) -> None:
    import json

    from plasticity_rl.workflow import loo_warning

    integrated = (folder / "loo_conditional.csv").is_file()
    if not rep.quiet:
        kind = "integrated (new-patient) PSIS-LOO" if integrated else "conditional PSIS-LOO"
        err.print(f"  {kind}:")
        err.print(table[["rank", "elpd_loo", "elpd_diff", "dse", "weight"]].round(2).to_string())
    note = loo_warning(json.loads((folder / "loo_pareto_k.json").read_text()), integrated, fits)
    if note:
        err.print(f"  [red]{note}[/red]")
    if "diagnostics_passed" in table.columns:
        for model in table.index[~table["diagnostics_passed"].astype(bool)]:
            err.print(
                f"  [red]{model} FAILED ITS DIAGNOSTICS: its place in this ranking is unreliable[/red] "
                "(its diagnostics.json says why)"
            )


def fail(exc: BaseException) -> None:
    if isinstance(exc, ConfigError):
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    from plasticity_rl.inference import DataError

    if isinstance(exc, DataError):
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if isinstance(exc, (FileExistsError, FileNotFoundError)):
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_BAD_INPUT)
    if isinstance(exc, KeyboardInterrupt):
        err.print(
            "[yellow]interrupted:[/yellow] no output folder was left; rerun the same command to start again "
            "(same config and seed give the same results)"
        )
        raise typer.Exit(130)
    err.print(f"[red]internal error:[/red] {type(exc).__name__}: {exc}")
    err.print(
        "please report it with the command line and config; rerun with PLASTICITY_RL_DEBUG=1 for a traceback"
    )
    import os

    if os.environ.get("PLASTICITY_RL_DEBUG"):
        raise exc
    raise typer.Exit(EXIT_INTERNAL)
