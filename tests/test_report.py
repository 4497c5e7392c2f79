"""The run report: a self-contained HTML page, checked in a real headless browser.

Browser checks use a tiny Chrome DevTools Protocol client over ``--remote-debugging-pipe``
(file descriptors 3 and 4, NUL-separated JSON): no extra Python dependency, no TCP port, and
every network request and console message arrives as a structured event, which grepping
``--enable-logging`` output cannot promise (request URLs are not logged there at all).
The test is skipped only when no Chromium binary can be found (CI installs the Debian package).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from plasticity_rl.cli import app
from plasticity_rl.report import failed_rows

# ----------------------------------------------------------------------------- a small run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_study):
    """A run folder made by the CLI from the tiny study of conftest.py, plus lesson figures and a fake fit."""
    base = tmp_path_factory.mktemp("report")
    data, tiny_fit = tiny_study  # the recovery tests' study and fit: their compiled programs are reused
    cfg_path = base / "tiny.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(data))
    # The whole pipeline (simulate, fit both variants, compare, report) with a deliberately short
    # fit, so the real diagnostics fail and the report must say so.
    result = CliRunner().invoke(
        app, ["run", str(cfg_path), "--out", str(base / "runs"), "--quiet", *tiny_fit]
    )
    assert result.exit_code == 0, result.output
    folder = Path(result.output.strip().splitlines()[-1])
    assert (folder / "report.html").is_file(), "plasticity-rl run must write report.html"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "report.html" in manifest

    fit = folder / "fit"
    fit.mkdir()
    pd.DataFrame(
        {
            "parameter": ["mu_A", "kappa"],
            "mean": [2.9, 0.0076],
            "r_hat": [1.001, 1.32],
            "ess_bulk": [812.0, 14.0],
            "failed": [False, True],
        }
    ).to_csv(fit / "summary.csv", index=False)
    (fit / "diagnostics.json").write_text(json.dumps({"divergences": 0, "max_r_hat": 1.32, "ok": False}))
    result = CliRunner().invoke(app, ["report", str(folder), "--quiet"])
    assert result.exit_code == 0, result.output
    return folder


def test_report_is_self_contained(run_dir):
    text = (run_dir / "report.html").read_text()
    assert "<script" not in text.lower()
    # no external resources: every src/href is a data URI or an in-page anchor
    for attr in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text):
        assert attr.startswith(("data:image/png;base64,", "#")), attr
    assert not re.search(r"url\(\s*['\"]?(?!data:)", text), "CSS must not load anything"
    pngs = sorted((run_dir / "figures").glob("*.png"))
    assert {"single_patient.png", "clinician_vs_published.png", "belief_curves.png"} <= {p.name for p in pngs}
    every_png = (
        pngs + sorted(run_dir.glob("fit*/figures/*.png")) + sorted(run_dir.glob("compare/figures/*.png"))
    )
    assert text.count('<img src="data:image/png;base64,') == len(every_png)  # run, fits, comparison
    for p in pngs:  # each figure appears with its caption
        assert f'id="fig-{p.stem}"' in text
    assert "not a trial result" in text
    assert "Lii et al. 2023" in text  # the published-data caption travels with the figure
    assert "provenance" in text.lower() and "git.revision" in text
    assert "placebo infusion" in text  # arms table


def test_report_highlights_failed_fit_rows(run_dir):
    text = (run_dir / "report.html").read_text()
    assert "fit/summary.csv" in text and "fit/diagnostics.json" in text
    fit_section = text.split('<section id="fit">')[1].split("</section>")[0]
    ranked_failed = sum(
        int((~pd.read_csv(run_dir / "compare" / name)["diagnostics_passed"]).sum())
        for name in ("loo.csv", "loo_conditional.csv")
    )
    assert (
        fit_section.count('<tr class="failed">') == 1 + ranked_failed
    )  # the fake fit's row + ranked failed fits
    assert "flags the fit as failed" in text
    df = pd.DataFrame({"ok": [True, False], "status": ["ok", "ok"], "x": [1, 2]})
    assert failed_rows(df).tolist() == [False, True]
    assert failed_rows(pd.DataFrame({"status": ["error", "fine"]})).tolist() == [True, False]


def test_report_shows_the_real_fits_and_the_model_comparison(run_dir):
    text = (run_dir / "report.html").read_text()
    for variant in ("schema", "schema_ungated"):
        assert f"fit-{variant}/diagnostics.json" in text and f"fit-{variant}/contrasts.csv" in text
        assert f'id="fig-fit-{variant}-posterior_belief_curves"' in text
    assert "compare/loo.csv" in text and 'id="fig-compare-loo_comparison"' in text
    # compare ranks by integrated LOO and keeps the conditional ranking beside it
    assert (run_dir / "compare" / "loo_conditional.csv").is_file()
    assert (run_dir / "fit-schema" / "loo_marginal.nc").is_file()
    # 1 chain x 20 draws cannot pass the diagnostics: both real fits and the fake one say so.
    assert text.count("this file flags the fit as failed") == 3


def test_the_comparison_marks_every_ranked_fit_that_failed_its_diagnostics(run_dir):
    """1 chain x 20 draws: both fits fail their diagnostics; the ranking still shows them, marked
    in the table, the figure and its caption."""
    table = pd.read_csv(run_dir / "compare" / "loo.csv")
    assert set(table["model"]) == {"schema", "schema_ungated"}
    assert not table["diagnostics_passed"].any()
    captions = (run_dir / "compare" / "figures" / "captions.md").read_text()
    assert "FAILED its diagnostics" in captions and "schema_ungated" in captions


def test_report_leads_with_the_runs_verdicts_and_folds_its_tables(run_dir):
    text = (run_dir / "report.html").read_text()
    sections = re.findall(r'<section id="([^"]+)">', text)
    assert sections[0] == "summary" and sections[1] == "config"
    glance = text.split('<section id="summary">')[1].split("</section>")[0]
    for variant in ("schema", "schema_ungated"):  # 1 chain x 20 draws: both fail, and say so first
        assert f"<code>fit-{variant}</code>" in glance
    assert glance.count("FAILED its diagnostics</span>") == 3  # the two real fits and the fake one
    assert "New patients are predicted better by" in glance and "nats (integrated PSIS-LOO)" in glance
    ranking = glance.split("New patients")[1].split("</li>")[0]  # its caveats, at the top
    assert "PSIS-LOO UNRELIABLE" in ranking and "--kfold" in ranking
    assert re.search(r"(schema, schema_ungated|schema_ungated, schema) failed its diagnostics", ranking)
    assert "Published trials:" in glance and "checked targets" in glance
    # every fit file is a collapsed block, except those that flag a failure, which open by themselves
    fit_section = text.split('<section id="fit">')[1].split("</section>")[0]
    blocks = re.findall(r"<details( open)?><summary><code>([^<]+)</code>", fit_section)
    opened = {name for flag, name in blocks if flag}
    assert len(blocks) > 20 and "fit-schema/arm_curves.csv" not in opened
    assert {"fit-schema/diagnostics.json", "fit-schema_ungated/diagnostics.json", "compare/loo.csv"} <= opened


def test_report_shows_the_model_against_published_trials(run_dir):
    """A single-infusion run checks itself against the published trials, misses highlighted."""
    table = pd.read_csv(run_dir / "validation.csv", keep_default_na=False)
    assert {"hit", "miss", "not checked"} == set(table["verdict"])
    text = (run_dir / "report.html").read_text()
    section = text.split('<section id="published">')[1].split("</section>")[0]
    assert section.count('<tr class="failed">') == int((table["verdict"] == "miss").sum())
    assert "Murrough et al. 2013" in section and "Not checked" in section
    assert f"{int((table['verdict'] == 'miss').sum())} row(s) missed" in section


def test_report_command_rejects_a_non_run_folder(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2


# ----------------------------------------------------------------------------- the browser


class PipeCDP:
    """Minimal Chrome DevTools Protocol client over --remote-debugging-pipe (fds 3 in, 4 out)."""

    def __init__(self, binary: str, user_data_dir: Path):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-default-apps",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={user_data_dir}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        # Chromium reads commands on fd 3 and writes replies on fd 4. A tiny Python trampoline moves
        # the pipe ends there and execs Chromium (not preexec_fn: a Python callback between fork and
        # exec can deadlock a multithreaded JAX process; not sh: dash rejects fd numbers above 9).
        move = (
            "import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); os.dup2(a, 3); os.dup2(b, 4); "
            "os.close(a); os.close(b); os.set_inheritable(3, True); os.set_inheritable(4, True); "
            "os.execv(sys.argv[3], sys.argv[3:])"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", move, str(to_chrome_r), str(from_chrome_w), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r), os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0
    ):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._next(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._next(deadline))
        except TimeoutError:
            pass

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(
                    "Chromium closed the pipe: " + self.proc.stderr.read().decode(errors="replace")[-2000:]
                )
            self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w), os.close(self._r)
        if self.proc.stderr:
            self.proc.stderr.close()


def test_report_in_headless_chromium(run_dir, tmp_path, chromium):
    binary = chromium
    url = (run_dir / "report.html").resolve().as_uri()
    cdp = PipeCDP(binary, tmp_path / "profile")
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            cdp.send(f"{domain}.enable", session=s)
        cdp.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False},
            session=s,
        )
        cdp.events.clear()
        cdp.send("Page.navigate", {"url": url}, session=s)
        cdp.wait_for("Page.loadEventFired", timeout=60)
        cdp.drain(1.0)  # late console messages or requests
        shot = cdp.send("Page.captureScreenshot", {"format": "png"}, session=s, timeout=60)
        metrics = cdp.send(
            "Runtime.evaluate",
            {
                "expression": "JSON.stringify([document.images.length, "
                "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length, "
                "document.body.scrollHeight, document.getElementById('summary').getBoundingClientRect().bottom])",
                "returnByValue": True,
            },
            session=s,
        )
    finally:
        cdp.close()

    requests = [
        e["params"]["request"]["url"] for e in cdp.events if e.get("method") == "Network.requestWillBeSent"
    ]
    external = [u for u in requests if not u.startswith(("file:", "data:", "about:"))]
    assert not external, f"the report made external requests: {external[:5]}"
    assert any(u.startswith("file:") for u in requests), "the page itself was not requested"
    console = [
        e
        for e in cdp.events
        if e.get("method") in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown")
        and (e["method"] == "Runtime.exceptionThrown" or e["params"].get("type") in ("error", "assert"))
    ]
    logs = [
        e["params"]["entry"]
        for e in cdp.events
        if e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error"
    ]
    assert not console and not logs, f"console errors: {console[:3]} {logs[:3]}"
    n_img, n_loaded, height, summary_bottom = json.loads(metrics["result"]["value"])
    assert n_img >= 5 and n_loaded == n_img, f"{n_loaded} of {n_img} embedded figures decoded"
    assert height > 3000
    assert summary_bottom < 1600, "the run's verdicts ('At a glance') must fit in the first screen"

    import base64
    from io import BytesIO

    from PIL import Image

    png = base64.b64decode(shot["data"])
    out = Path(os.environ.get("REPORT_SCREENSHOT", tmp_path / "report.png"))
    out.write_bytes(png)
    img = np.asarray(Image.open(BytesIO(png)).convert("RGB"), dtype=float)
    assert img.shape[:2] == (1600, 1280)
    assert img.std() > 20.0, "screenshot is (almost) blank"
    assert (img.min(axis=2) < 200).mean() > 0.02, "screenshot has almost no ink"
