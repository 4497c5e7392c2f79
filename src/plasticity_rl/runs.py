"""Run folders: resolved config, provenance, atomic writes.

A run is built in a hidden sibling folder ``.<name>.partial`` and renamed into place only when
everything is written, so a folder named ``runs/<name>-<timestamp>`` is always complete. An
interrupted run removes its partial folder; rerunning the same command starts it again, and the
same config and seed give the same tables.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from plasticity_rl.config import Config, config_to_yaml

PACKAGES = (
    "plasticity-rl",
    "jax",
    "jaxlib",
    "numpyro",
    "arviz",
    "numpy",
    "pandas",
    "pyarrow",
    "pydantic",
    "matplotlib",
    "typer",
    "rich",
)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_revision() -> dict[str, str | bool | None]:
    """The git revision of the plasticity_rl source tree (None when not in a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return {"revision": rev, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}


def provenance(cfg: Config, command: list[str] | None = None) -> dict:
    return {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "experiment": cfg.experiment.name,
        "seed": cfg.experiment.seed,
        "model_variant": cfg.model.variant,
        "command": command if command is not None else sys.argv,
        "git": git_revision(),
        "packages": package_versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "cpus": os.cpu_count()},
    }


def timestamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def unique_run_dir(base: Path, name: str) -> Path:
    stem = f"{name}-{timestamp()}"
    path, k = base / stem, 1
    while path.exists() or (base / f".{path.name}.partial").exists():
        k += 1
        path = base / f"{stem}-{k}"
    return path


@contextlib.contextmanager
def atomic_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``final`` only if the block completes."""
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists; choose another folder or pass --force")
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.parent / f".{final.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_run_metadata(folder: Path, cfg: Config, command: list[str] | None = None) -> None:
    write_text(folder / "config.yaml", config_to_yaml(cfg))
    write_text(folder / "provenance.json", json.dumps(provenance(cfg, command), indent=2) + "\n")


def write_manifest(folder: Path) -> Path:
    """sha256 of every file in the run (provenance.json excluded: it holds the time)."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in ("manifest.json", "provenance.json"):
            files[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    out = folder / "manifest.json"
    out.write_text(json.dumps(files, indent=2) + "\n")
    return out
