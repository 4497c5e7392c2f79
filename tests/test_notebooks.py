"""The teaching notebooks run top to bottom (small cohorts: FULL_RUN is unset) and are stored clean."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="install the test extra: pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="install the test extra: pip install -e '.[test]'")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 600  # per cell: a guard against hangs, not a speed target
# Time budgets (issue 5: all five together under 3 minutes). Speed targets are measured, not
# asserted (a loaded CI machine would fail them at random): over budget gives a warning in the
# test summary with the seconds.
NOTEBOOK_BUDGET_S = 60  # each notebook
ALL_NOTEBOOKS_BUDGET_S = 180  # all five together
SECONDS: dict[str, float] = {}  # notebook -> run time, filled by test_notebook_runs


def test_the_five_lessons_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "01_prediction_errors.ipynb",
        "02_ketamine_window.ipynb",
        "03_therapy_timing.ipynb",
        "04_fitting_a_trial.ipynb",
        "05_trusting_a_fit.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.delenv("FULL_RUN", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    if not os.environ.get("PLASTICITY_RL_NO_CACHE"):
        # the kernel keeps JAX compilations on disk, as the CLI does: a second run skips compiling
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(base / "plasticity_rl" / "jax"))
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(
        nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = SECONDS[path.name] = time.perf_counter() - t0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = sum(
        "image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert images >= 2, f"{path.name} shows {images} figures"
    if seconds > NOTEBOOK_BUDGET_S:
        warnings.warn(f"{path.name} took {seconds:.0f} s (budget {NOTEBOOK_BUDGET_S} s)", stacklevel=1)


def test_all_five_notebooks_ran():
    """Runs after test_notebook_runs (file order); skipped unless all five ran in this process."""
    if len(SECONDS) != len(NOTEBOOKS):
        pytest.skip(f"only {len(SECONDS)} of {len(NOTEBOOKS)} notebooks ran in this process")
    total = sum(SECONDS.values())
    times = ", ".join(f"{name}: {s:.0f} s" for name, s in sorted(SECONDS.items()))
    assert all(s > 0 for s in SECONDS.values())
    if total > ALL_NOTEBOOKS_BUDGET_S:
        warnings.warn(
            f"the notebooks took {total:.0f} s together ({times}); budget {ALL_NOTEBOOKS_BUDGET_S} s",
            stacklevel=1,
        )


def test_timing_notebook_says_it_is_a_prediction():
    nb = nbformat.read(NOTEBOOKS[2], as_version=4)
    text = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "model's prediction, not a trial result" in text
    assert "No clinical trial has randomised therapy" in text
