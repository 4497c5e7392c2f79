"""The command line as a user meets it: exit codes, run folders, atomic writes, error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from plasticity_rl.cli import app
from plasticity_rl.config import bundled_config_path

runner = CliRunner()


def tiny_config(tmp_path: Path, **experiment) -> Path:
    """The flagship design, shrunk: 3 patients per arm, 14 days."""
    data = yaml.safe_load(bundled_config_path("flagship").read_text())
    data["experiment"].update({"patients_per_arm": 3, "days": 28, **experiment})
    data["observations"]["visits"]["days"] = [0, 6.9, 8, 14, 28]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_writes_a_complete_run_folder(tmp_path):
    cfg = tiny_config(tmp_path)
    res = runner.invoke(
        app, ["run", str(cfg), "--out", str(tmp_path / "runs"), "--quiet", "--no-figures", "--no-fit"]
    )
    assert res.exit_code == 0, res.output
    (folder,) = list((tmp_path / "runs").iterdir())
    assert folder.name.startswith("flagship-")
    for name in ("config.yaml", "provenance.json", "manifest.json"):
        assert (folder / name).is_file()
    for table in ("patients", "events", "sessions", "trajectories", "ema", "visits", "arms"):
        assert (folder / "data" / f"{table}.parquet").is_file()
        assert (folder / "data" / f"{table}.csv").is_file()
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["seed"] == 20261129
    assert {"jax", "numpyro", "arviz", "pandas"} <= set(prov["packages"])
    assert "revision" in prov["git"] and prov["command"]
    # The resolved config reproduces the run: every default is written out.
    resolved = yaml.safe_load((folder / "config.yaml").read_text())
    assert resolved["population"]["kappa"] == pytest.approx(0.0075)
    traj = pd.read_parquet(folder / "data" / "trajectories.parquet")
    assert len(traj) == 15 * 28 * 8


def test_figures_and_report_redraw_what_the_run_drew_and_keep_the_manifest_true(tmp_path):
    import hashlib

    res = runner.invoke(
        app, ["run", str(tiny_config(tmp_path)), "--out", str(tmp_path / "runs"), "--no-fit", "-q"]
    )
    assert res.exit_code == 0, res.output
    (folder,) = list((tmp_path / "runs").iterdir())
    figures = folder / "figures"
    drawn = sorted(p.name for p in figures.iterdir())
    captions = (figures / "captions.md").read_text()
    for p in figures.iterdir():
        p.unlink()
    res = runner.invoke(app, ["figures", str(folder), "-q"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(folder)  # -q: the folder, nothing else
    assert sorted(p.name for p in figures.iterdir()) == drawn  # every figure the run had
    assert (figures / "captions.md").read_text() == captions
    res = runner.invoke(app, ["report", str(folder), "-q"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", "provenance.json")
    }
    assert manifest == on_disk


def test_same_seed_gives_identical_tables(tmp_path):
    cfg = tiny_config(tmp_path)
    for out in ("a", "b"):
        res = runner.invoke(app, ["simulate", str(cfg), "-o", str(tmp_path / out), "--quiet"])
        assert res.exit_code == 0, res.output
    for table in ("events", "trajectories", "ema", "visits"):
        a = (tmp_path / "a" / "data" / f"{table}.csv").read_bytes()
        b = (tmp_path / "b" / "data" / f"{table}.csv").read_bytes()
        assert a == b, table


def test_simulate_refuses_to_overwrite(tmp_path):
    cfg = tiny_config(tmp_path)
    (tmp_path / "out").mkdir()
    res = runner.invoke(app, ["simulate", str(cfg), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "already exists" in res.output


def test_a_folder_that_fails_to_write_stops_the_run(tmp_path, monkeypatch):
    """An error in the writer thread (schema's folder) ends the run with it, and leaves nothing."""
    import plasticity_rl.workflow as wf

    def write_fit_folder(idata, tabs, cfg, variant, out, settings, seconds_before=0.0):
        raise OSError("disk full")

    monkeypatch.setattr(wf, "fit_posterior", lambda tabs, cfg, variant, settings, progress=False: "idata")
    monkeypatch.setattr(wf, "write_fit_folder", write_fit_folder)
    cfg = tiny_config(tmp_path)
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "runs"), "--no-figures"])
    assert res.exit_code != 0
    assert "disk full" in res.output
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.mark.parametrize(
    "edit, field, allowed",
    [
        (lambda d: d["environment"].update(p_env=1.3), "environment.p_env", "<= 1"),
        (lambda d: d["arms"][1]["doses"][0].update(day=-1), "arms[1].doses[0].day", ">= 0"),
        (lambda d: d["arms"][2]["sessions"][0].update(day=60), "sessions[0]", "outside the experiment"),
        (lambda d: d.update(colour="blue"), "colour", "unknown key"),
        (lambda d: d["model"].update(variant="kalman"), "model.variant", "schema_asym"),
    ],
)
def test_bad_config_exits_2_naming_field_value_and_allowed(tmp_path, edit, field, allowed):
    data = yaml.safe_load(tiny_config(tmp_path).read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    for argv in (["validate", str(path)], ["run", str(path), "--out", str(tmp_path / "runs")]):
        res = runner.invoke(app, argv)
        assert res.exit_code == 2, res.output
        assert field in res.output and allowed in res.output, res.output
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def test_missing_config_file_exits_2(tmp_path):
    res = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2
    assert "no such config file" in res.output
    res = runner.invoke(app, ["validate", "no_such_bundled_name"])  # neither a file nor a bundled name
    assert res.exit_code == 2 and "no such config file" in res.output


def test_fit_method_is_a_choice_listed_in_help_and_a_typo_exits_2(tmp_path):
    res = runner.invoke(app, ["fit", str(tmp_path), "--method", "nutz"])
    assert res.exit_code == 2 and "'nutz' is not one of 'nuts'" in res.output and "'svi'" in res.output
    assert "nuts|svi" in runner.invoke(app, ["fit", "--help"]).output


def test_a_bundled_config_is_named_by_its_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called timing_sweep here
    res = runner.invoke(app, ["validate", "timing_sweep"])
    assert res.exit_code == 0, res.output
    assert "timing_sweep" in res.output


@pytest.mark.parametrize("command", ["run", "fit", "recover", "sbc"])
def test_target_accept_out_of_range_exits_2_naming_the_option(command, tmp_path):
    target = str(tmp_path) if command == "fit" else str(bundled_config_path("flagship"))
    res = runner.invoke(app, [command, target, "--target-accept", "1.5"])
    assert res.exit_code == 2
    assert "--target-accept" in res.output and "0.99" in res.output


def test_validate_show_prints_resolved_config():
    res = runner.invoke(app, ["validate", str(bundled_config_path("flagship")), "--show"])
    assert res.exit_code == 0
    resolved = yaml.safe_load(res.stdout)
    assert resolved["plasticity"]["tau_k_hours"] == 12.0
    assert [a["name"] for a in resolved["arms"]][:2] == ["placebo", "ketamine"]


def test_console_script_entry_point(tmp_path):
    """The installed `plasticity-rl` command, as a user runs it, with a usage error."""
    res = subprocess.run(
        [sys.executable, "-m", "plasticity_rl.cli", "validate"], capture_output=True, text=True
    )
    assert res.returncode == 2
    res = subprocess.run(
        [sys.executable, "-m", "plasticity_rl.cli", "configs"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "flagship" in res.stdout and "timing_sweep" in res.stdout


@pytest.fixture(scope="module")
def tiny_sim(tmp_path_factory) -> Path:
    """The tables of a tiny simulated trial (a run folder without fits), shared by the fit tests."""
    root = tmp_path_factory.mktemp("tiny")
    res = runner.invoke(app, ["simulate", str(tiny_config(root)), "-o", str(root / "sim"), "--quiet"])
    assert res.exit_code == 0, res.output
    return root / "sim"


@pytest.fixture(scope="module")
def svi_fit(tiny_sim, tmp_path_factory) -> Path:
    """One quick CLI fit (SVI) of the tiny trial, with a parameter held and chosen contrasts,
    shared by the tests of what a fit folder holds (a fit is the slow part of each)."""
    folder = tmp_path_factory.mktemp("svi") / "fit"
    chosen = ["--fix", "kappa=0.05", "--contrast", "ketamine_cbt_window:ketamine", "--contrast-days", "7,14"]
    res = runner.invoke(app, ["fit", str(tiny_sim), "--method", "svi", *chosen, "-o", str(folder), "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output.strip().endswith(str(folder))  # -q prints the fit folder
    return folder


def test_fit_fix_holds_a_parameter_and_records_it(svi_fit):
    """`fit RUN --fix kappa=0.05` (through the SVI path, which is the quick one): no kappa draws."""
    import arviz as az

    idata = az.from_netcdf(str(svi_fit / "posterior.nc"))
    assert "kappa" not in idata.posterior and "epsilon" in idata.posterior
    assert json.loads(idata.posterior.attrs["fixed"]) == {"kappa": 0.05}
    assert json.loads((svi_fit / "diagnostics.json").read_text())["fixed"] == {"kappa": 0.05}
    summary = pd.read_csv(svi_fit / "summary.csv", index_col=0)
    assert "mu_A" in summary.index and "kappa" not in summary.index


def test_fit_writes_the_contrasts_asked_for(svi_fit):
    contrasts = pd.read_csv(svi_fit / "contrasts.csv")  # the contrasts asked for, no others
    assert set(zip(contrasts["arm_a"], contrasts["arm_b"])) == {("ketamine_cbt_window", "ketamine")}
    assert sorted(set(contrasts["day"])) == [7.0, 14.0]


def test_figures_redraws_a_fit_folder_from_its_own_files(svi_fit, tmp_path):
    """`figures FIT` needs nothing but the fit folder: moved away from its data and its
    figures deleted, it draws them again, the posterior predictive check among them."""
    import shutil

    ppc = pd.read_csv(svi_fit / "ppc.csv")
    assert set(ppc["channel"]) == {"ema", "visits"} and ppc["observed"].notna().all()
    moved = tmp_path / "elsewhere" / "fit"
    shutil.copytree(svi_fit, moved)
    drawn = sorted(p.name for p in (moved / "figures").glob("*.png"))
    assert "posterior_predictive_check.png" in drawn
    shutil.rmtree(moved / "figures")
    res = runner.invoke(app, ["figures", str(moved), "--quiet"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (moved / "figures").glob("*.png")) == drawn
    assert "## posterior_predictive_check" in (moved / "figures" / "captions.md").read_text()
    res = runner.invoke(app, ["figures", str(tmp_path / "elsewhere")])
    assert res.exit_code == 2 and "neither a run folder" in res.output


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--contrast", "ketamine:placebos"], "--contrast: got 'ketamine:placebos'; allowed: ARM_A:ARM_B"),
        (["--contrast", "ketamine"], "--contrast: got 'ketamine'"),
        (["--contrast-days", "7,99"], "--contrast-days: got '99'; allowed: days from 0 to 28"),
    ],
)
def test_fit_refuses_contrasts_of_arms_or_days_the_trial_lacks(tiny_sim, tmp_path, option, message):
    res = runner.invoke(app, ["fit", str(tiny_sim), *option, "-o", str(tmp_path / "fit")])
    assert res.exit_code == 2 and message in " ".join(res.output.split())
    assert not (tmp_path / "fit").exists()


@pytest.mark.parametrize(
    ("fix", "message"),
    [
        ("kapa=0.05", "fixed 'kapa': not a parameter of 'schema'"),
        ("kappa=2", "kappa"),
        ("kappa", "NAME=VALUE"),
    ],
)
def test_fit_fix_rejects_bad_values_with_exit_2(tiny_sim, tmp_path, fix, message):
    res = runner.invoke(app, ["fit", str(tiny_sim), "--fix", fix, "-o", str(tmp_path / "fit")])
    assert res.exit_code == 2
    assert message in res.output
    assert not (tmp_path / "fit").exists()


def _without_outcomes(run: Path, root: Path) -> Path:
    """A copy of a run folder with what no trial records (events, trajectories) deleted."""
    import shutil

    copy = root / "trial"
    shutil.copytree(run, copy)
    for name in ("events", "trajectories"):
        for ext in ("csv", "parquet"):
            (copy / "data" / f"{name}.{ext}").unlink(missing_ok=True)
    return copy


def _as_a_spreadsheet_writes_it(data: Path) -> None:
    """Each table as one CSV the way a spreadsheet saves it: text IDs ("P01"), the trial's own
    column names (subject_id, madrs), a byte-order mark and CRLF line ends."""
    for path in sorted(data.glob("*.parquet")):
        path.unlink()
    for path in sorted(data.glob("*.csv")):
        df = pd.read_csv(path)
        if "patient" in df:  # not arms.csv
            df["patient"] = [f"P{int(p) + 1:02d}" for p in df["patient"]]
        df = df.rename(columns={"patient": "subject_id", "score": "MADRS "})
        path.write_bytes(b"\xef\xbb\xbf" + df.to_csv(index=False, lineterminator="\r\n").encode())


def test_fit_of_what_a_trial_records_integrates_the_outcomes_out(tiny_sim, tmp_path):
    """Only ratings, visits, patients and sessions left, as a spreadsheet writes them, in the
    trial's own column names: the fit is marginal and says so."""
    import arviz as az

    trial = _without_outcomes(tiny_sim, tmp_path)
    _as_a_spreadsheet_writes_it(trial / "data")
    folder = tmp_path / "fit"
    columns = "subject_id=patient,madrs=score"
    res = runner.invoke(
        app, ["fit", str(trial), "--method", "svi", "--columns", columns, "-o", str(folder), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    idata = az.from_netcdf(str(folder / "posterior.nc"))
    assert idata.posterior.attrs["likelihood"] == "marginal"
    diagnostics = json.loads((folder / "diagnostics.json").read_text())
    assert diagnostics["likelihood"] == "marginal"
    used = diagnostics["data_used"]  # what the fit used, recorded with it
    patients = pd.read_csv(trial / "data" / "patients.csv", encoding="utf-8-sig")
    ema = pd.read_csv(trial / "data" / "ema.csv", encoding="utf-8-sig")
    assert list(idata.posterior["patient"].values) == sorted(patients["subject_id"])  # "P01", ...
    assert used["patients"] == len(patients) and not used["outcomes_logged"]
    assert used["ema_ratings"] == {
        "used": int(ema["rating"].notna().sum()),
        "missing": int(ema["rating"].isna().sum()),
    }
    assert used["ema_ratings"]["missing"] > 0  # the tiny study's missing_rate is 0.1
    assert np.isfinite(idata.log_likelihood["obs"].values).all()
    # the fit records where its tables are and how they were renamed, so `compare --kfold`
    # (the command PSIS-LOO's warning suggests) refits the same data without being told again
    from plasticity_rl.kfold import read_data_source

    assert read_data_source(folder) == (trial.resolve(), {"subject_id": "patient", "madrs": "score"})


def test_a_column_mapping_that_matches_nothing_is_refused(tiny_sim, tmp_path):
    res = runner.invoke(
        app, ["fit", str(tiny_sim), "--columns", "subjekt=patient", "-o", str(tmp_path / "f")]
    )
    assert res.exit_code == 2 and "subjekt" in res.output and "found in no table" in res.output
    res = runner.invoke(app, ["fit", str(tiny_sim), "--columns", "subject_id", "-o", str(tmp_path / "f")])
    assert res.exit_code == 2 and "OLD=NEW" in res.output
    assert not (tmp_path / "f").exists()


def test_a_conditional_fit_without_logged_outcomes_is_refused(tiny_sim, tmp_path):
    trial = _without_outcomes(tiny_sim, tmp_path)
    res = runner.invoke(app, ["fit", str(trial), "--likelihood", "conditional", "-o", str(tmp_path / "f")])
    assert res.exit_code == 2
    assert "no events" in res.output and "marginal" in res.output
    assert not (tmp_path / "f").exists()
    res = runner.invoke(app, ["fit", str(trial), "--likelihood", "exact", "-o", str(tmp_path / "f")])
    assert res.exit_code == 2 and "--likelihood" in res.output


def test_kfold_compare_refits_without_each_fold_and_a_rerun_resumes(tiny_sim, tmp_path):
    """`compare FITS --kfold 3`: every patient is scored once per model by a refit that never
    saw them, the folds hold every arm, and a rerun refits nothing. Short SVI fits, the quick
    ones, which the refits repeat (the held-out score itself is checked against Monte Carlo in
    test_inference.py)."""
    import shutil

    from plasticity_rl.config import load_config
    from plasticity_rl.data import read_tables
    from plasticity_rl.inference import fit

    trial = tmp_path / "trial"
    shutil.copytree(tiny_sim, trial)
    tabs, cfg = read_tables(trial), load_config(trial / "config.yaml")
    fits = []
    for variant in ("schema", "schema_ungated"):
        folder = trial / f"fit-{variant}"
        folder.mkdir()
        idata = fit(tabs, cfg, variant=variant, method="svi", svi_steps=300, draws=100, chains=1)
        assert idata.posterior.attrs["svi_steps"] == 300  # what the refits repeat
        idata.to_netcdf(str(folder / "posterior.nc"))
        fits.append(str(folder))
    out = tmp_path / "kfold"
    argv = ["compare", *fits, "--kfold", "3", "--workers", "1", "-o", str(out), "--quiet"]
    res = runner.invoke(app, argv)
    assert res.exit_code == 0, res.output

    folds = pd.read_csv(out / "kfold_folds.csv")
    patients = pd.read_csv(trial / "data" / "patients.csv")
    assert sorted(folds["patient"]) == sorted(patients["patient"])
    assert (folds.groupby("fold")["arm"].nunique() == patients["arm"].nunique()).all()  # stratified
    pointwise = pd.read_csv(out / "kfold_pointwise.csv")
    assert (pointwise.groupby("variant")["patient"].apply(sorted) == [sorted(folds["patient"])] * 2).all()
    assert np.isfinite(pointwise["elpd"]).all()
    # each patient scored by the refit of the fold they were left out of
    fold_of = dict(zip(folds["patient"], folds["fold"]))
    assert (pointwise["fold"] == pointwise["patient"].map(fold_of)).all()
    table = pd.read_csv(out / "kfold.csv", index_col="model")
    assert set(table.index) == {"schema", "schema_ungated"}
    totals = pointwise.groupby("variant")["elpd"].sum()
    np.testing.assert_allclose(table.loc[totals.index, "elpd_kfold"], totals, rtol=1e-9)
    assert table["dse"].min() == 0.0 and (table["se"] > 0).all()
    assert (out / "figures" / "kfold_comparison.png").is_file()

    jobs = sorted((out / "kfold-jobs").glob("kfold3-*.json"))
    assert len(jobs) == 6
    stamps = [p.stat().st_mtime_ns for p in jobs]
    res = runner.invoke(app, argv)  # a rerun finds every refit done
    assert res.exit_code == 0, res.output
    assert [p.stat().st_mtime_ns for p in jobs] == stamps

    res = runner.invoke(app, [*argv[:3], "--kfold", "99", *argv[5:]])
    assert res.exit_code == 2 and "--kfold: got 99" in res.output


def test_version():
    from importlib.metadata import version

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"plasticity-rl {version('plasticity-rl')}"


def test_schema_prints_the_configs_json_schema():
    import json

    res = runner.invoke(app, ["schema"])
    assert res.exit_code == 0, res.output
    schema = json.loads(res.output)
    experiment = schema["$defs"]["Experiment"]["properties"]
    assert experiment["patients_per_arm"]["minimum"] == 1 and experiment["seed"]["description"]
