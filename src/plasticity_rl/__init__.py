"""plasticity_rl: the ketamine plasticity window as a runnable, fittable, teachable model.

Typical use::

    from plasticity_rl import load_config, simulate, tables
    sim = simulate(load_config("configs/flagship.yaml"))
    tabs = tables(sim)
"""

from importlib.metadata import PackageNotFoundError, version

from plasticity_rl._engine.xla import disable_ynn_fusion

disable_ynn_fusion()  # before anything computes: see plasticity_rl/_engine/xla.py

from plasticity_rl.config import Config, ConfigError, bundled_config_path, load_config
from plasticity_rl.data import tables
from plasticity_rl.models import MODELS, BeliefModel, get_model, register, run_beliefs
from plasticity_rl.params import PARAMS
from plasticity_rl.simulate import Simulation, simulate

try:
    __version__ = version("plasticity-rl")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "MODELS",
    "PARAMS",
    "BeliefModel",
    "Config",
    "ConfigError",
    "Simulation",
    "bundled_config_path",
    "get_model",
    "load_config",
    "register",
    "run_beliefs",
    "simulate",
    "tables",
]
