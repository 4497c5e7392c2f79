"""The registry of belief-model variants: name -> model, filled by :func:`plasticity_rl.models.register`.

It lives apart from :mod:`plasticity_rl.models` so that the config can check a variant's name
without importing the model code (the config comes first in the package's one-way imports).
``import plasticity_rl`` registers the bundled variants before any config is read; a variant of
your own is registered by calling ``register`` once, before the config that names it is loaded.
"""

from __future__ import annotations

MODELS: dict = {}  # name -> BeliefModel, in registration order
