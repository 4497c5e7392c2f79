"""Run folders: resolved config, provenance, atomic writes.

A run is built in a hidden sibling folder ``.<name>-<timestamp>.partial`` and renamed into place
only when everything is written, so a folder named ``runs/<name>-<timestamp>`` is always complete.

An interrupted run (Ctrl-C, SIGTERM, kill -9, a lost machine) keeps its partial folder, with
``resume.json`` saying which steps finished and under which *run key*: the digest of the resolved
config, the run's settings and the package's own source. Rerunning the same command finds the
partial folder with the same key (:func:`resumable_dir`), reuses the finished steps (the
simulated tables, each complete fit folder) and does the rest; the same config and seed give the
same tables and the same draws either way. A partial folder being written by a running process
is locked (``flock``) and never taken over; one with another key is left alone and named.
"""

from __future__ import annotations

import contextlib
import dataclasses
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


RESUME_FILE = "resume.json"  # in a partial run folder only; removed before the rename


def code_digest() -> str:
    """sha256 of the package's own files (code, bundled configs, tables): a resumed run must be
    finished by the code that started it, checkout or installed wheel alike."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".yaml", ".csv") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def run_key(cfg: Config, settings: dict) -> str:
    """What makes two runs the same run: resolved config, the run's settings, the code."""
    blob = json.dumps(
        {"config": config_to_yaml(cfg), "settings": settings, "code": code_digest()}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclasses.dataclass
class RunState:
    """The steps of a partial run that are finished, kept in its ``resume.json``."""

    folder: Path  # the partial folder
    final: Path
    key: str
    done: list[str]

    def finished(self, step: str) -> bool:
        return step in self.done

    def mark(self, step: str) -> None:
        """Record ``step`` as finished."""
        if step not in self.done:
            self.done.append(step)
        self.save()

    def save(self) -> None:
        """Write ``resume.json`` atomically: a kill mid-write leaves the previous one."""
        tmp = self.folder / f".{RESUME_FILE}.tmp"
        tmp.write_text(json.dumps({"key": self.key, "final": self.final.name, "done": self.done}) + "\n")
        os.replace(tmp, self.folder / RESUME_FILE)


class RunInterrupted(Exception):
    """A run stopped by Ctrl-C or SIGTERM whose partial folder was kept for a rerun to resume."""

    def __init__(self, state: RunState):
        self.state = state
        finished = ", ".join(state.done) or "nothing yet"
        super().__init__(
            f"interrupted: the partial run {state.folder} was kept (finished: {finished}); "
            "rerun the same command to resume it"
        )


def _lock(folder: Path):
    """An exclusive, non-blocking flock on the folder itself (released when the process dies,
    kill -9 included); None if another process holds it."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking; resuming still works one process at a time
        return -1
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _read_state(partial: Path) -> dict | None:
    try:
        return json.loads((partial / RESUME_FILE).read_text())
    except (OSError, ValueError):
        return None


def partial_runs(base: Path, name: str) -> list[Path]:
    """Partial run folders of experiment ``name`` under ``base``, newest first."""
    if not base.is_dir():
        return []
    found = [p for p in base.glob(f".{name}-*.partial") if p.is_dir()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


@contextlib.contextmanager
def resumable_dir(base: Path, name: str, key: str, on_stale=None) -> Iterator[RunState]:
    """A partial run folder for run ``key``: the newest unlocked one left by an interrupted run
    with the same key, or a new one. It becomes ``base/<name>-<timestamp>`` when the block
    completes; on Ctrl-C (or SIGTERM, which the CLI turns into one) it is kept and
    :class:`RunInterrupted` raised; on any other error it is removed.

    ``on_stale(path)``: called for each partial folder of this experiment that cannot be resumed
    (another config, settings or code), so the caller can say it is there.
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    state, fd = None, None
    for partial in partial_runs(base, name):
        saved = _read_state(partial)
        if saved is None or saved.get("key") != key:
            if on_stale is not None:
                on_stale(partial)
            continue
        if state is not None:
            continue
        fd = _lock(partial)
        if fd is None:
            continue  # another process is running it now
        final = base / saved["final"]
        if final.exists():  # a folder of that name appeared meanwhile: finish under a new name
            final = unique_run_dir(base, name)
        state = RunState(partial, final, key, list(saved.get("done", [])))
    if state is None:
        final = unique_run_dir(base, name)
        partial = final.parent / f".{final.name}.partial"
        partial.mkdir()
        fd = _lock(partial)
        state = RunState(partial, final, key, [])
        state.save()
    try:
        try:
            yield state
        except KeyboardInterrupt:
            raise RunInterrupted(state) from None
        except BaseException:
            shutil.rmtree(state.folder, ignore_errors=True)
            raise
        (state.folder / RESUME_FILE).unlink()
        os.replace(state.folder, state.final)
    finally:
        if fd is not None and fd >= 0:
            os.close(fd)


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


def note_resumed(folder: Path) -> None:
    """Add this resumption's time and command to the run's provenance.json."""
    path = folder / "provenance.json"
    prov = json.loads(path.read_text())
    when = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    prov.setdefault("resumed", []).append({"at": when, "command": sys.argv, "git": git_revision()})
    write_text(path, json.dumps(prov, indent=2) + "\n")


def write_manifest(folder: Path) -> Path:
    """sha256 of every file in the run (provenance.json excluded: it holds the time)."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in ("manifest.json", "provenance.json"):
            files[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    out = folder / "manifest.json"
    out.write_text(json.dumps(files, indent=2) + "\n")
    return out
