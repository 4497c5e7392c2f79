"""Many independent jobs (fits for recovery, SBC, sweeps) on dask.distributed.

Each job's result is written to ``<out>/<job>.json`` atomically the moment it finishes, so an
interrupted batch keeps every finished job, and a rerun skips them: results stream to disk and
resume for free. A ``LocalCluster`` (one single-threaded worker process per core) is the default;
pass a scheduler address to use an existing Dask cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Job:
    name: str  # file-safe, unique in the batch
    func: Callable[..., dict]  # importable top-level function returning a JSON-able dict
    kwargs: dict = field(default_factory=dict)


def result_path(out: Path, name: str) -> Path:
    return Path(out) / f"{name}.json"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    os.replace(tmp, path)


def load_results(out: Path, names: list[str]) -> dict[str, dict]:
    return {n: json.loads(result_path(out, n).read_text()) for n in names if result_path(out, n).is_file()}


def pending(jobs: list[Job], out: Path) -> list[Job]:
    return [j for j in jobs if not result_path(out, j.name).is_file()]


def _compilation_cache() -> tuple[str, float] | None:
    """The caller's persistent JAX compilation cache (dir, min compile seconds), if it has one."""
    import jax

    cache_dir = jax.config.jax_compilation_cache_dir
    return (
        (str(cache_dir), float(jax.config.jax_persistent_cache_min_compile_time_secs)) if cache_dir else None
    )


def _run_one(job: Job, cache: tuple[str, float] | None = None) -> dict:
    # Workers are fresh processes: give them the caller's compilation cache, so the second and
    # later workers (and the next study) load a fit's programs instead of compiling them again.
    if cache is not None:
        import jax

        if jax.config.jax_compilation_cache_dir is None:
            jax.config.update("jax_compilation_cache_dir", cache[0])
            jax.config.update("jax_persistent_cache_min_compile_time_secs", cache[1])
    return job.func(**job.kwargs)


def run_jobs(
    jobs: list[Job],
    out: Path,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
    description: str = "jobs",
) -> dict[str, dict]:
    """Run the jobs not already done, writing each result as it finishes; return all results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")
    todo = pending(jobs, out)
    if todo:
        _run_on_dask(todo, out, scheduler, n_workers, progress, description, skipped=len(jobs) - len(todo))
    return load_results(out, names)


def _run_on_dask(todo, out, scheduler, n_workers, progress, description, skipped) -> None:
    from distributed import Client, LocalCluster, as_completed
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if scheduler:
        client, cluster = Client(scheduler), None
    else:
        n = n_workers or min(len(todo), os.cpu_count() or 1)
        # One single-threaded process per core: JAX fits are CPU-bound and hold the GIL.
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        )
        client = Client(cluster)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            task = bar.add_task(f"{description} ({skipped} already done)", total=len(todo))
            cache = _compilation_cache()
            futures = {
                client.submit(_run_one, job, cache, key=f"{job.name}-{os.getpid()}", pure=False): job
                for job in todo
            }
            for fut in as_completed(futures):
                job = futures[fut]
                write_json_atomic(result_path(out, job.name), fut.result())
                bar.advance(task)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
