"""Belief update rules: pure JAX step functions behind one registry.

Add a variant by building a :class:`BeliefModel` and registering it in ``MODELS``; the
simulator and the likelihood pick it up by name.
"""

from plasticity_rl.models.base import BeliefModel, Beliefs, Trajectory, run_beliefs
from plasticity_rl.models.variants import MODELS


def get_model(name: str) -> BeliefModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model variant {name!r}; allowed: {sorted(MODELS)}") from None


__all__ = ["MODELS", "BeliefModel", "Beliefs", "Trajectory", "get_model", "run_beliefs"]
