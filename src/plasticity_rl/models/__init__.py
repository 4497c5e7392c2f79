"""Belief update rules: pure JAX step functions behind one registry.

A variant is one :class:`BeliefModel` (its step functions and the names of its parameters from
:mod:`plasticity_rl.params`) registered with :func:`register`; the config, the simulator, the
likelihood and ``plasticity-rl run``'s comparison (against the variant's ``foil``) pick it up by
name. The bundled variants are in :mod:`plasticity_rl.models.variants`.
"""

from plasticity_rl.models import variants as _bundled  # noqa: F401, E402 - registers the bundled variants
from plasticity_rl.models.base import BeliefModel, Beliefs, Trajectory, register, run_beliefs
from plasticity_rl.registry import MODELS


def get_model(name: str) -> BeliefModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model variant {name!r}; allowed: {sorted(MODELS)}") from None


def foil_of(name: str) -> str:
    """The variant ``plasticity-rl run`` compares ``name`` against."""
    return get_model(name).foil


__all__ = [
    "MODELS",
    "BeliefModel",
    "Beliefs",
    "Trajectory",
    "foil_of",
    "get_model",
    "register",
    "run_beliefs",
]
