"""Parallel NUTS chains that take the data as an argument, so one compilation serves many fits.

NumPyro's ``MCMC(chain_method="parallel")`` closes over the model's arguments inside the
``pmap`` it builds: each new data set, even of the same shape, is traced and compiled again
(NumPyro documents that ``jit_model_args`` does not apply to parallel chains). Compiling the NUTS
program takes 10-15 s even for a small cohort (tests/test_chains.py's case: 16 s for the first
fit, 1.8 s for the next), which recovery, SBC and the lesson notebooks paid once per data set.

This module runs the same NUTS kernel (``numpyro.infer.hmc.hmc``: the same warm-up adaptation,
step size and diagonal mass matrix as ``NUTS`` with its defaults) with one ``pmap`` per program,
cached on everything static (model spec, warm-up length, target acceptance, tree depth, chunk
length) and called with the data as a broadcast argument. Random keys are derived exactly as
``MCMC`` derives them: without warm-up the draws equal ``MCMC(chain_method="parallel")``'s from
the same seed up to float32 rounding (tested). With warm-up those rounding differences (the
same arithmetic, compiled into a different program) grow along NUTS's chaotic trajectories, so
the chains are the same sampler but not the same numbers.

The chains advance in chunks of iterations (one compiled program reused for warm-up and
sampling), so a caller can show progress between chunks.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to
from numpyro.handlers import seed, trace
from numpyro.infer.hmc import hmc
from numpyro.infer.util import potential_energy

from plasticity_rl.inference.model import ModelSpec, belief_model

# HMCState field -> name in the returned stats (the names fit.py's _STATS maps to ArviZ names)
FIELDS = ("diverging", "energy", "potential_energy", "num_steps", "accept_prob", "adapt_state.step_size")
# Iterations per compiled call: progress every few seconds at flagship size. Chains wait for
# each other at the end of each chunk; measured cost: none (20 patients, 4 chains x (200 + 200):
# 69.8 s in chunks of 50 vs 69.1 s in one chunk per phase).
MAX_CHUNK = 50


class Program(NamedTuple):
    init: Callable  # pmapped (keys, z0, x) -> HMCState per chain
    advance: Callable  # pmapped (state, x) -> (state, collected fields over `chunk` iterations)
    chunk: int


def chunk_length(warmup: int, draws: int) -> int:
    """The longest chunk up to MAX_CHUNK that divides both phases (one compiled length)."""
    g = math.gcd(int(warmup), int(draws))
    return max(d for d in range(1, min(g, MAX_CHUNK) + 1) if g % d == 0)


def _site_transforms(model, x) -> dict:
    """Bijections to each latent site's support, read off one abstract trace of the model."""
    found = {}

    def run(x):
        for name, site in trace(seed(model, 0)).get_trace(x).items():
            if site["type"] == "sample" and not site["is_observed"]:
                found[name] = biject_to(site["fn"].support)
        return 0

    jax.eval_shape(run, x)
    return found


def _field(state, dotted: str):
    for part in dotted.split("."):
        state = getattr(state, part)
    return state


@lru_cache(maxsize=8)
def program(spec: ModelSpec, shapes, warmup: int, chunk: int, target_accept: float,
            max_tree_depth: int) -> Program:
    """The compiled-once pieces for one model and data shape (``shapes``: the cache key only)."""
    model = partial(belief_model, spec=spec)
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda x: partial(potential_energy, model, (x,), {}), algo="NUTS")

    def init_one(key, z0, inverse_mass_matrix, x):
        # As NUTS.init: one split of the chain's key, the first half drives the kernel.
        key, _ = jax.random.split(key)
        # dense_mass=[]: NUTS.init's structural form of dense_mass=False (a diagonal per site).
        # inverse_mass_matrix: the first window's diagonal (ones = NumPyro's default).
        return init_kernel(z0, num_warmup=warmup, dense_mass=[], inverse_mass_matrix=inverse_mass_matrix,
                           target_accept_prob=target_accept, trajectory_length=None,
                           max_tree_depth=max_tree_depth, model_args=(x,), rng_key=key)

    def advance_one(state, x):
        def body(state, _):
            state = sample_kernel(state, model_args=(x,))
            return state, (state.z,) + tuple(_field(state, f) for f in FIELDS)

        return jax.lax.scan(body, state, None, length=chunk)

    return Program(
        init=jax.pmap(init_one, in_axes=(0, 0, None, None)),
        advance=jax.pmap(advance_one, in_axes=(0, None)),
        chunk=chunk,
    )


@lru_cache(maxsize=8)
def _transforms(spec: ModelSpec, shapes) -> dict:
    """Latent site -> bijection from the unconstrained space NUTS works in."""
    return _site_transforms(partial(belief_model, spec=spec), _abstract(shapes))


def chain_transforms(spec: ModelSpec, x) -> dict:
    """Latent site -> bijection from NUTS's unconstrained space, for data ``x``."""
    return _transforms(spec, _shapes(x))


def _abstract(shapes):
    treedef, leaves = shapes
    return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])


def _shapes(x):
    leaves, treedef = jax.tree.flatten(x)
    return treedef, tuple((tuple(np.shape(v)), jnp.result_type(v)) for v in leaves)


def run_parallel_nuts(spec: ModelSpec, x, init: dict, chains: int, warmup: int, draws: int, seed: int,
                      target_accept: float = 0.8, max_tree_depth: int = 10,
                      on_progress: Callable[[int, int], None] | None = None, *,
                      z_start: dict | None = None, inverse_mass_matrix=None):
    """NUTS with one chain per local device; returns (samples, stats), each (chains, draws, ...).

    ``samples`` holds every latent site on its constrained scale; ``stats`` the fields in FIELDS.
    All chains start from ``init`` (constrained values), as ``init_to_value`` does in NumPyro,
    unless ``z_start`` gives each chain its own start (unconstrained, site -> (chains, ...)).
    ``inverse_mass_matrix``: the diagonal the warm-up starts from (flat, sites in sorted order;
    default ones, as NumPyro). ``on_progress(done, total)`` is called after each chunk of iterations.
    """
    if jax.local_device_count() < chains:
        raise ValueError(f"parallel chains need a device per chain: {chains} chains, "
                         f"{jax.local_device_count()} devices (numpyro.set_host_device_count)")
    shapes = _shapes(x)
    transforms = _transforms(spec, shapes)
    missing = set(transforms) - set(init)
    if missing:
        raise ValueError(f"no initial value for latent site(s) {sorted(missing)}")
    prog = program(spec, shapes, int(warmup), chunk_length(warmup, draws), float(target_accept),
                   int(max_tree_depth))
    if z_start is None:
        z0 = {k: jnp.broadcast_to(t.inv(jnp.asarray(init[k])), (chains,) + jnp.shape(init[k]))
              for k, t in transforms.items()}
    else:
        z0 = {k: jnp.asarray(z_start[k]) for k in transforms}
    if inverse_mass_matrix is None:
        inverse_mass_matrix = jnp.ones(sum(int(np.prod(v.shape[1:])) for v in z0.values()))
    keys = jax.random.split(jax.random.key(seed), chains)  # as MCMC.run
    state = prog.init(keys, z0, jnp.asarray(inverse_mass_matrix), x)
    total, done, kept = warmup + draws, 0, []
    while done < total:
        state, out = prog.advance(state, x)
        done += prog.chunk
        if done > warmup:
            kept.append(jax.device_get(out))
        if on_progress is not None:
            on_progress(done, total)
    z = jax.tree.map(lambda *p: np.concatenate(p, axis=1), *[k[0] for k in kept])
    samples = {k: np.asarray(transforms[k](jnp.asarray(v))) for k, v in z.items()}
    stats = {f: np.concatenate([k[1 + i] for k in kept], axis=1) for i, f in enumerate(FIELDS)}
    return samples, stats
