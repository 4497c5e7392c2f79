"""Shared fixtures: one small flagship simulation, reused by every test that needs a cohort.

JAX compiles once per array shape, and compiling is what a test run mostly pays for. So tests
share one small flagship cohort (and derived configs that keep its shapes: another seed, a lower
session attendance) instead of each simulating its own.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import numpyro
import pytest

# Several host devices, as the CLI sets (plasticity_rl.cli.main), so tests take the paths users
# get: parallel chains, and patients and integrated-LOO draws split over devices. Before JAX starts.
numpyro.set_host_device_count(4)

from plasticity_rl.config import Config, bundled_config_path, config_from_dict, load_config  # noqa: E402

SMALL_PATIENTS_PER_ARM = 4  # 5 arms x 4 = 20 patients, 56 days x 8 steps


def edited(cfg: Config | dict, **changes: Any) -> Config:
    """A validated copy of ``cfg`` with dotted-path fields replaced.

    ``edited(cfg, **{"experiment.seed": 7, "arms[2].sessions[0].attendance": 0.5})``
    """
    data = copy.deepcopy(cfg if isinstance(cfg, dict) else cfg.model_dump(mode="json"))
    for path, value in changes.items():
        node, keys = data, _split(path)
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return config_from_dict(data)


def _split(path: str) -> list[str | int]:
    keys: list[str | int] = []
    for part in path.split("."):
        name, *indices = part.split("[")
        if name:
            keys.append(name)
        keys += [int(i.rstrip("]")) for i in indices]
    return keys


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


@pytest.fixture(scope="session")
def chromium() -> str:
    """A Chromium binary for the browser tests (Debian's package; CHROMIUM=/path overrides), or skip."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    found = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    if found is None:
        pytest.skip(
            "Chromium not found (install the Debian package 'chromium', or set CHROMIUM=/path/to/chrome)"
        )
    return found


@pytest.fixture(scope="session")
def edit():
    """The :func:`edited` helper, as a fixture (test modules do not import conftest)."""
    return edited


@pytest.fixture(scope="session")
def flagship_cfg() -> Config:
    """The shipped flagship design with 4 patients per arm."""
    cfg = load_config(bundled_config_path("flagship"))
    return edited(cfg, **{"experiment.patients_per_arm": SMALL_PATIENTS_PER_ARM})


@pytest.fixture(scope="session")
def flagship_sim(flagship_cfg):
    from plasticity_rl.simulate import simulate

    return simulate(flagship_cfg)


@pytest.fixture(scope="session")
def flagship_tables(flagship_sim):
    from plasticity_rl.data import tables

    return tables(flagship_sim)


@pytest.fixture(scope="session", autouse=True)
def session_compilation_cache(tmp_path_factory):
    """One persistent JAX compilation cache for the whole run, fresh each run.

    Dask workers (recovery, SBC) and subprocesses are new processes; with a shared on-disk cache
    a program compiled by one of them is loaded by the next (plasticity_rl.batch hands the
    caller's cache to its workers, as the CLI's users get). Fresh per run, so no test can pass
    on a stale compilation. PLASTICITY_RL_NO_CACHE=1 turns it off.
    """
    import os

    import jax

    if os.environ.get("PLASTICITY_RL_NO_CACHE") or jax.config.jax_compilation_cache_dir is not None:
        yield None
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n: the workers of one run share one cache
        cache = tmp_path_factory.getbasetemp().parent / "jax-cache"
        cache.mkdir(exist_ok=True)
    else:
        cache = tmp_path_factory.mktemp("jax-cache")
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    yield cache
    jax.config.update("jax_compilation_cache_dir", None)


# A tiny single-infusion study and a tiny fit, shared by the recovery, SBC and report tests: the
# same data shapes and sampler settings make the same programs, so whichever test compiles a
# fit first leaves it in the session's compilation cache for the others (and their workers).
TINY_FIT = ("--chains", "1", "--warmup", "20", "--draws", "20")


@pytest.fixture(scope="session")
def tiny_study() -> tuple[dict, tuple[str, ...]]:
    """(config as a dict: single_infusion, 3 patients per arm, 14 days), CLI fit options."""
    import yaml

    data = yaml.safe_load(bundled_config_path("single_infusion").read_text())
    data["experiment"].update({"patients_per_arm": 3, "days": 14})
    data["observations"] = {"ema": {"missing_rate": 0.1}, "visits": {"days": [0, 6.9, 8, 14]}}
    return data, TINY_FIT
