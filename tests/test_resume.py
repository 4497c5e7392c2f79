"""An interrupted `plasticity-rl run` (Ctrl-C, SIGTERM, kill -9) is resumed by the same command.

The run's partial folder is kept with `resume.json` (its run key and the finished steps); a
rerun with the same config, settings and code takes it over, reuses the simulation and every
finished fit folder, does the rest and renames the folder into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from plasticity_rl.cli import app
from plasticity_rl.config import bundled_config_path, load_config

runner = CliRunner()


def tiny_config(tmp_path: Path, seed: int | None = None) -> Path:
    data = yaml.safe_load(bundled_config_path("flagship").read_text())
    data["experiment"].update({"patients_per_arm": 3, "days": 28})
    data["observations"]["visits"]["days"] = [0, 6.9, 8, 14, 28]
    if seed is not None:
        data["experiment"]["seed"] = seed
    path = tmp_path / f"tiny-{seed}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def partials(runs: Path) -> list[Path]:
    return sorted(p for p in runs.iterdir() if p.name.endswith(".partial"))


def finished_steps(partial: Path) -> list[str]:
    return json.loads((partial / "resume.json").read_text())["done"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_interrupted_run_is_kept_and_the_same_command_resumes_it(tmp_path, monkeypatch):
    import plasticity_rl.data as data

    runs = tmp_path / "runs"
    cfg = tiny_config(tmp_path)
    command = ["run", str(cfg), "--out", str(runs), "--no-fit", "--no-figures"]

    def interrupted(*args, **kwargs):  # Ctrl-C while the tables are written
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(data, "write_tables", interrupted)
        res = runner.invoke(app, command)
    assert res.exit_code == 130, res.output
    assert "rerun the same command to resume" in res.output
    (partial,) = partials(runs)
    assert list(runs.iterdir()) == [partial]  # nothing that looks like a finished run
    assert finished_steps(partial) == []  # the simulate step did not finish
    # Another seed is another run: it does not take the partial folder, and says it is there.
    res = runner.invoke(
        app, ["run", str(tiny_config(tmp_path, seed=7)), "--out", str(runs), "--no-fit", "--no-figures"]
    )
    assert res.exit_code == 0, res.output
    assert "cannot be resumed" in res.output and partial.name in res.output
    assert partial.is_dir()
    # The same command finishes it: one more complete folder, no partial one left.
    res = runner.invoke(app, command)
    assert res.exit_code == 0, res.output
    assert partials(runs) == []
    folder = runs / partial.name.removeprefix(".").removesuffix(".partial")
    assert (folder / "manifest.json").is_file() and (folder / "data" / "ema.csv").is_file()
    assert not (folder / "resume.json").exists()


def test_interrupt_during_the_next_fit_keeps_the_finished_fit_for_the_rerun(tmp_path, monkeypatch):
    """Ctrl-C while the foil samples and `schema`'s folder is still being written: the run waits
    for the writer, records that folder as finished, and the rerun fits only the foil."""
    import plasticity_rl.cli as cli
    import plasticity_rl.report as report
    import plasticity_rl.workflow as wf

    fitted, written = [], []

    def fit_posterior(tabs, cfg, variant, settings, progress=False):
        fitted.append(variant)
        if variant != cfg.model.variant and len(fitted) == 2:
            raise KeyboardInterrupt  # the first run, during the foil's fit
        return "idata"

    def write_fit_folder(idata, tabs, cfg, variant, out, settings, seconds_before=0.0):
        time.sleep(1.0)  # still writing when the interrupt comes
        (out / "diagnostics.json").write_text(
            json.dumps({"variant": variant, "passed": True, "failures": [], "data_used": None})
        )  # fails if the folder is already gone
        written.append(variant)
        return wf.FitOutcome(out, variant, True, [], 1.0)

    monkeypatch.setattr(wf, "fit_posterior", fit_posterior)
    monkeypatch.setattr(wf, "write_fit_folder", write_fit_folder)
    monkeypatch.setattr(wf, "compare_fits", lambda dirs, out: out.mkdir() or None)
    monkeypatch.setattr(cli, "report_loo", lambda *args: None)
    monkeypatch.setattr(report, "write_report", lambda folder: (folder / "report.html").write_text("ok"))
    runs = tmp_path / "runs"
    command = ["run", str(tiny_config(tmp_path)), "--out", str(runs), "--no-figures"]
    res = runner.invoke(app, command)
    assert res.exit_code == 130, res.output
    assert written == ["schema"]  # finished before the run stopped
    (partial,) = partials(runs)
    assert finished_steps(partial) == ["simulate", "fit-schema"]
    res = runner.invoke(app, command)
    assert res.exit_code == 0, res.output
    assert fitted == ["schema", "schema_ungated", "schema_ungated"]  # schema was not fitted again
    assert written == ["schema", "schema_ungated"]
    assert "reuse fit-schema from the interrupted run" in res.output
    assert partials(runs) == []
    (folder,) = runs.iterdir()
    prov = json.loads((folder / "provenance.json").read_text())
    assert len(prov["resumed"]) == 1  # the provenance says the run was resumed


def _start_run(cfg: Path, runs: Path, fit_options, cache) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if cache is not None:  # the session's compilation cache: the child reuses the tests' programs
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache)
    command = [sys.executable, "-m", "plasticity_rl.cli", "run", str(cfg), "--out", str(runs)]
    return subprocess.Popen(
        [*command, "--no-figures", *fit_options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_step(proc: subprocess.Popen, runs: Path, step: str, timeout: float = 600) -> Path:
    """The run's partial folder, once ``step`` is recorded as finished in it."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        found = partials(runs) if runs.is_dir() else []
        if found and (found[0] / "resume.json").is_file() and step in finished_steps(found[0]):
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {step} was recorded:\n{proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{step} not recorded within {timeout} s")


def test_sigterm_stops_a_command_as_ctrl_c_does():
    """A batch scheduler's SIGTERM becomes the KeyboardInterrupt that keeps a run for resuming."""
    from plasticity_rl.cli import stop_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    try:
        stop_on_sigterm()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; never reached
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_run_killed_during_the_second_fit_resumes_with_the_first_fit_reused(
    tmp_path, tiny_study, session_compilation_cache
):
    """A real `plasticity-rl run` in a child process, killed with SIGKILL (nothing of it runs
    after that) once the first fit's folder is written; the same command then finishes it."""
    data, fit_options = tiny_study  # the recovery and report tests' study: its programs are cached
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(data))
    runs = tmp_path / "runs"
    first = f"fit-{load_config(cfg).model.variant}"
    proc = _start_run(cfg, runs, fit_options, session_compilation_cache)
    partial = _wait_for_step(proc, runs, first)
    posterior = sha(partial / first / "posterior.nc")
    proc.kill()
    proc.communicate(timeout=60)
    done = finished_steps(partial)
    assert done == ["simulate", first], f"killed too late to test resuming: {done}"
    assert proc.returncode == -signal.SIGKILL and partial.is_dir()

    res = runner.invoke(app, ["run", str(cfg), "--out", str(runs), "--no-figures", *fit_options])
    assert res.exit_code == 0, res.output
    assert f"reuse {first} from the interrupted run" in res.output
    assert partials(runs) == []
    (folder,) = runs.iterdir()
    assert folder.name == partial.name.removeprefix(".").removesuffix(".partial")
    assert sha(folder / first / "posterior.nc") == posterior  # reused, not refitted
    manifest = json.loads((folder / "manifest.json").read_text())
    foil = [name for name in manifest if name.startswith("fit-") and not name.startswith(first + "/")]
    assert any(name.endswith("/posterior.nc") for name in foil)  # the foil was fitted
    assert "compare/loo.csv" in manifest and "report.html" in manifest
