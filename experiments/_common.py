"""Shared plumbing of the claim scripts: arguments, small-run overrides, saving figures."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from plasticity_rl.config import Config, bundled_config_path, config_from_dict, load_config
from plasticity_rl.plots import caption_of, save_figure
from plasticity_rl.simulate import Simulation, simulate


def parser(description: str, default_out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--patients",
        type=int,
        default=None,
        help="patients per arm (overrides the config; tiny values for tests)",
    )
    p.add_argument("--out", type=Path, default=Path(default_out), help="folder for the figures")
    p.add_argument("--formats", default="png,svg", help="comma-separated image formats")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    return p


def load(name: str, patients: int | None = None, seed: int | None = None) -> Config:
    """A bundled config, with patients per arm (every arm) and the seed optionally overridden."""
    cfg = load_config(bundled_config_path(name))
    if patients is None and seed is None:
        return cfg
    data = cfg.model_dump(mode="json")
    if patients is not None:
        data["experiment"]["patients_per_arm"] = patients
        for arm in data["arms"]:
            arm["patients"] = None
    if seed is not None:
        data["experiment"]["seed"] = seed
    return config_from_dict(data, f"{name} (overridden)")


def run(name: str, args: argparse.Namespace) -> Simulation:
    return simulate(load(name, args.patients, args.seed))


def save(fig, args: argparse.Namespace, name: str) -> list[Path]:
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    paths = save_figure(fig, args.out, name, formats)
    (Path(args.out) / f"{name}.txt").write_text(caption_of(fig) + "\n")
    return paths


def arm_mean_at(sim: Simulation, which: str, day: float) -> dict[str, float]:
    """Mean belief per arm at the end of ``day`` (days)."""
    x = np.asarray(getattr(sim.trajectory, which))
    step = int(min(max(round(day * sim.schedules.steps_per_day) - 1, 0), x.shape[1] - 1))
    return {a: float(x[sim.arm_index == i, step].mean()) for i, a in enumerate(sim.schedules.arm_names)}


def write_summary(args: argparse.Namespace, name: str, lines: list[str]) -> Path:
    path = Path(args.out) / f"{name}_summary.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return path
