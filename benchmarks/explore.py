"""How fast the live explorer answers: one slider move, server to curves, and the page's redraw.

Two measurements, both on the bundled flagship as the base config:

- **compute**: :func:`plasticity_rl.explore.explore_curves` for a sequence of slider values (each
  slider moved through five values in turn), after the warm-up that ``plasticity-rl explore``
  does at start. Median and worst time per move, and the compile time of the start and of
  switching to each other belief model.
- **round trip in the browser** (if Debian's ``chromium`` and Playwright are installed): the
  time from an arrow-key press on the A slider to the redrawn belief curve, in headless
  Chromium against a real server, over ``--moves`` presses.

Run: ``python benchmarks/explore.py [--moves 30]``. Writes ``benchmarks/results/explore.md``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from _machine import cpu_name  # benchmarks/_machine.py (scripts run from here)

from plasticity_rl.config import as_config
from plasticity_rl.explore import Settings, explore_curves, open_explorer, settings_from_config, warm_up
from plasticity_rl.registry import MODELS

MOVES = {
    "A": (1.0, 2.0, 4.0, 5.0, 6.0),
    "alpha0": (0.005, 0.02, 0.04, 0.08, 0.01),
    "kappa": (0.002, 0.005, 0.01, 0.02, 0.0075),
    "tau_k_hours": (6.0, 18.0, 24.0, 36.0, 12.0),
    "bias": (0.1, 0.2, 0.4, 0.5, 0.3),
    "infusions": (2, 3, 4, 6, 1),
    "therapy_delay_days": (0, 2, 5, 10, 1),
    "sessions": (2, 6, 8, 12, 4),
    "n_c": (2, 4, 8, 12, 6),
}


def compute_times(base) -> tuple[float, list[float], dict[str, float]]:
    start = warm_up(base)
    s = settings_from_config(base)
    times = []
    for name, values in MOVES.items():
        for v in values:
            s = s.model_copy(update={name: v})
            t = time.perf_counter()
            explore_curves(base, s)
            times.append(time.perf_counter() - t)
    switches = {}
    for variant in MODELS:
        t = time.perf_counter()
        explore_curves(base, Settings.model_validate({**s.model_dump(), "variant": variant}))
        switches[variant] = time.perf_counter() - t
    return start, times, switches


def browser_times(moves: int) -> list[float] | None:
    binary = shutil.which("chromium")
    if binary is None:
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    server, url = open_explorer("flagship", port=0)
    line = "#panel-V path[data-arm='ketamine_cbt'][data-series='V']"
    out = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=binary, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("body[data-updates='1']", timeout=120_000)
            page.focus("#in-A")
            for i in range(moves):
                n = int(page.get_attribute("body", "data-updates"))
                key = "ArrowRight" if i % 20 < 10 else "ArrowLeft"
                t = time.perf_counter()
                page.keyboard.press(key)
                page.wait_for_selector(f"body[data-updates='{n + 1}']", timeout=60_000)
                page.wait_for_selector(line)
                out.append(time.perf_counter() - t)
            browser.close()
    finally:
        server.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "explore.md")
    args = ap.parse_args()
    base = as_config("flagship")
    start, times, switches = compute_times(base)
    clicks = browser_times(args.moves)
    ms = lambda x: f"{1000 * x:.0f} ms"  # noqa: E731
    rows = [
        f"# The live explorer's speed ({time.strftime('%Y-%m-%d')}, {cpu_name()}, {len(MOVES) * 5} slider moves)",
        "",
        "| what | time |",
        "|---|---|",
        f"| start: compile and first curves (`warm_up`) | {start:.2f} s |",
        f"| one slider move, computed (median / worst) | {ms(statistics.median(times))} / {ms(max(times))} |",
    ]
    if clicks:
        rows.append(
            f"| one key press on a slider to the redrawn curve in headless Chromium, {len(clicks)} presses "
            f"(median / worst) | {ms(statistics.median(clicks))} / {ms(max(clicks))} |"
        )
    else:
        rows.append("| browser round trip | not measured (no chromium or playwright) |")
    for variant, t in switches.items():
        rows.append(f"| switch to `{variant}` (first time: compiles) | {ms(t)} |")
    text = "\n".join(rows) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
