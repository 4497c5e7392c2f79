"""The live explorer: the numbers it draws, its settings' errors, its export, and the page in Chromium."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import yaml

from plasticity_rl.config import ConfigError, as_config, config_from_dict, config_from_yaml
from plasticity_rl.explore import (
    Settings,
    curves,
    error_text,
    explore_curves,
    export_yaml,
    make_server,
    settings_config,
    settings_from_config,
)
from plasticity_rl.simulate import simulate

BASE = as_config("flagship")


def best_delay(**change) -> float:
    s = settings_from_config(BASE).model_copy(update=change)
    return explore_curves(BASE, s)["timing"]["best_delay_days"]


def followup(out: dict, arm: str) -> float:
    return out["summary"][arm]["V_followup"]


@pytest.fixture(scope="module")
def default_curves():
    return explore_curves(BASE, settings_from_config(BASE))


def test_the_sliders_start_at_the_base_configs_values():
    s = settings_from_config(BASE)
    pop = BASE.population
    assert (s.variant, s.A, s.kappa, s.tau_k_hours, s.bias) == (
        "schema",
        pop.A.mean,
        pop.kappa,
        BASE.plasticity.tau_k_hours,
        BASE.environment.bias,
    )
    assert s.alpha0 == pytest.approx(0.01, rel=1e-3)


def test_therapy_inside_the_window_beats_each_part_alone(default_curves):
    # The package's central claim, drawn live: the combination is more than the sum of its parts.
    both, ket = followup(default_curves, "ketamine_cbt"), followup(default_curves, "ketamine")
    cbt, plc = followup(default_curves, "cbt_alone"), followup(default_curves, "placebo")
    assert both - ket > 2 * (cbt - plc) > 0
    assert both > max(ket, cbt) + 0.05
    # the window is shaded where the drive is at least half its peak: about two days from a few
    # hours after the infusion on day 7 (gamma kernel, peak 24 h after the dose)
    (start, end), *rest = default_curves["window"]
    assert not rest and 7.4 < start < 8.0 and 1.5 < end - start < 2.5


def test_a_longer_window_moves_the_best_therapy_delay_later():
    # tau_k 12 h -> 36 h moves the best start of CBT from the infusion day to about two days
    # after it: the window's unknown length matters as much as its height A.
    short, long = best_delay(tau_k_hours=12.0), best_delay(tau_k_hours=36.0)
    assert short <= 1.0
    assert 2.0 <= long - short <= 4.0


def test_a_larger_boost_gives_more_benefit_from_therapy():
    gains = []
    for A in (1.0, 3.0, 5.0):
        out = explore_curves(BASE, settings_from_config(BASE).model_copy(update={"A": A}))
        gains.append(followup(out, "ketamine_cbt") - followup(out, "cbt_alone"))
    assert gains[0] < gains[1] < gains[2] and gains[0] > -0.01


def test_the_curves_are_the_simulators_mean():
    """The page draws the exact mean over everyday outcomes; a simulated cohort of identical
    patients (population SDs 0) averages to it, within Monte Carlo error."""
    s = settings_from_config(BASE)
    cfg = settings_config(BASE, s)
    data = cfg.model_dump(mode="json")
    for name in ("logit_alpha0", "A", "logit_S0"):
        data["population"][name]["sd"] = 0.0
    data["experiment"]["patients_per_arm"] = 400
    data["observations"]["ema"]["enabled"] = data["observations"]["visits"]["enabled"] = False
    sim = simulate(config_from_dict(data))
    drawn = curves(cfg)
    for i, arm in enumerate(drawn["arms"]):
        V = np.asarray(sim.trajectory.V)[sim.arm_index == i]
        se = V.std(axis=0) / np.sqrt(V.shape[0])
        gap = np.abs(V.mean(axis=0) - np.asarray(arm["V"]))
        assert np.all(gap < 5 * se + 1e-3), (arm["name"], float(gap.max()), float(se.max()))


def test_bad_settings_name_the_field_the_value_and_the_limit():
    with pytest.raises(Exception) as exc:
        Settings(A=100)
    assert "A: got 100" in error_text(exc.value) and "less than or equal to 8" in error_text(exc.value)
    with pytest.raises(ConfigError) as exc:
        settings_config(BASE, Settings(infusions=8, every_days=7))
    text = error_text(exc.value)
    assert "infusions, every_days" in text and "day 56.4" in text and "allowed" in text
    with pytest.raises(ConfigError, match="variant: got 'nope'"):
        settings_config(BASE, Settings(variant="nope"))


def test_the_export_is_a_config_that_draws_the_same_curves(default_curves):
    s = settings_from_config(BASE).model_copy(update={"A": 4.5, "therapy_delay_days": 2, "sessions": 6})
    cfg = config_from_yaml(export_yaml(BASE, s))
    assert cfg.timing_sweep is None and [a.name for a in cfg.arms] == [
        "ketamine_cbt",
        "ketamine",
        "cbt_alone",
        "placebo",
    ]
    assert cfg.population.A.mean == 4.5 and cfg.arms[0].sessions[0].day == 9
    page = explore_curves(BASE, s)
    for drawn, again in zip(page["arms"], curves(cfg)["arms"]):
        assert drawn["name"] == again["name"] and drawn["V"] == again["V"]


def test_every_variant_draws(default_curves):
    for variant in ("rw", "schema_asym"):
        out = explore_curves(BASE, settings_from_config(BASE).model_copy(update={"variant": variant}))
        arm = out["arms"][0]
        assert (arm["S"] is None) == (variant == "rw")
        assert (arm["alpha_neg"] is not None) == (variant == "schema_asym")


# ----------------------------------------------------------------------------- the server and the page


@pytest.fixture(scope="module")
def server():
    srv = make_server(BASE, port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _post(url: str, body: dict) -> tuple[int, bytes]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_server_answers_and_refuses_bad_settings(server):
    spec = json.loads(urllib.request.urlopen(f"{server}/api/spec", timeout=10).read())
    assert {s["name"] for s in spec["sliders"]} >= {"A", "alpha0", "kappa", "tau_k_hours", "bias", "sessions"}
    assert "schema_asym" in spec["variants"]
    status, body = _post(f"{server}/api/curves", {"A": 99})
    assert status == 400 and "A: got 99" in json.loads(body)["error"]
    status, body = _post(f"{server}/api/curves", {"tau_k": 20})
    assert status == 400 and "tau_k: got 20; Extra inputs are not permitted" in json.loads(body)["error"]
    status, body = _post(f"{server}/api/config.yaml", {"kappa": 0.01})
    assert status == 200 and yaml.safe_load(body)["population"]["kappa"] == 0.01


def test_the_explorer_in_headless_chromium(server, tmp_path, chromium):
    from playwright.sync_api import sync_playwright

    requests, problems = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(server + "/")
            page.wait_for_selector("body[data-updates='1']", timeout=60_000)
            line = "#panel-V path[data-arm='ketamine_cbt'][data-series='V']"
            before = page.get_attribute(line, "d")
            assert before and before.count("L") > 400, "the belief curve was not drawn"
            assert page.locator("#panel-alpha rect[data-window]").count() == 1

            # Move the boost A the way a user does: focus the slider and press the arrow keys.
            page.focus("#in-A")
            for _ in range(10):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "(d) => document.querySelector(\"#panel-V path[data-arm='ketamine_cbt'][data-series='V']\")"
                ".getAttribute('d') !== d && !document.getElementById('error').textContent",
                arg=before,
                timeout=60_000,
            )
            page.wait_for_timeout(300)  # a coalesced last update may still be in flight
            assert page.input_value("#in-A") == "4"
            assert page.text_content("#out-A") == "4"

            with page.expect_download() as download:
                page.click("#export")
            exported = yaml.safe_load(open(download.value.path()).read())
            assert exported["population"]["A"]["mean"] == 4.0

            # A schedule past the experiment's end is refused with the config's own words.
            page.eval_on_selector(
                "#in-infusions", "e => { e.value = '8'; e.dispatchEvent(new Event('input')); }"
            )
            page.eval_on_selector(
                "#in-every_days", "e => { e.value = '7'; e.dispatchEvent(new Event('input')); }"
            )
            page.wait_for_function("() => document.getElementById('error').textContent.includes('past the')")
            page.screenshot(path=str(tmp_path / "explore.png"), full_page=True)
            page.screenshot(path="/tmp/explore_shot.png", full_page=True)
        finally:
            browser.close()
    origin = server + "/"
    external = [u for u in requests if not u.startswith((origin, "blob:", "data:"))]
    assert not external, f"the page requested something outside its own server: {external[:5]}"
    # The refused schedule is answered 400 (Bad Request), which Chromium logs; nothing else may be.
    assert not [m for m in problems if "status of 400" not in m], f"console errors: {problems[:3]}"
    assert (tmp_path / "explore.png").stat().st_size > 20_000


def test_the_cli_serves_until_interrupted_and_refuses_a_busy_port(tmp_path):
    import signal
    import socket
    import subprocess
    import sys

    from typer.testing import CliRunner

    from plasticity_rl.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["explore", "--port", str(port), "--no-browser"])
    assert result.exit_code == 2 and f"port {port}" in result.output and "--port" in result.output

    code = "from plasticity_rl.cli import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "explore", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read()
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "<svg" in page and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "explorer stopped" in stderr
