"""Parallel NUTS chains that take the data as an argument, so one compilation serves many fits.

NumPyro's ``MCMC(chain_method="parallel")`` closes over the model's arguments inside the
``pmap`` it builds: each new data set, even of the same shape, is traced and compiled again
(NumPyro documents that ``jit_model_args`` does not apply to parallel chains). Compiling the NUTS
program takes 10-15 s even for a small cohort (tests/test_chains.py's case: 16 s for the first
fit, 1.8 s for the next), which recovery, SBC and the lesson notebooks paid once per data set.

This module runs the same NUTS kernel (``numpyro.infer.hmc.hmc``: the same warm-up adaptation,
step size and mass-matrix blocks as ``NUTS(dense_mass=...)``; see ``group_block``) with one
``pmap`` per program, cached on everything static (the model and its spec, warm-up length, target
acceptance, tree depth, chunk length, dense block) and called with the data as a broadcast
argument. Random keys are derived exactly as ``MCMC`` derives them: without warm-up the draws
match ``MCMC(chain_method="parallel")``'s from the same seed, tree for tree, up to float32
rounding grown along the trajectories (tested: within 1e-2 of the draws' range after 8 draws of
63 leapfrog steps; measured 3e-4 to 2e-3 depending on the machine and the mass matrix, while
another mass matrix moves them by 1.6 times their range). Those rounding differences (the same
arithmetic, compiled into a different program) keep growing along NUTS's chaotic trajectories,
so over a whole fit the chains are the same sampler but not the same numbers.

The chains advance in chunks of iterations (one compiled program reused for warm-up and
sampling), so a caller can show progress between chunks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions.transforms import biject_to
from numpyro.handlers import seed, trace
from numpyro.infer.hmc import hmc
from numpyro.infer.util import potential_energy

from plasticity_rl._engine.xla import jit_fit_program

# HMCState field -> name in the returned stats (the names fit.py's _STATS maps to ArviZ names)
FIELDS = ("diverging", "energy", "potential_energy", "num_steps", "accept_prob", "adapt_state.step_size")
# Iterations per compiled call: progress every few seconds at flagship size. Chains wait for
# each other at the end of each chunk; measured cost: none (20 patients, 4 chains x (200 + 200):
# 69.8 s in chunks of 50 vs 69.1 s in one chunk per phase).
MAX_CHUNK = 50


class BoundModel(NamedTuple):
    """A NumPyro model function with its static description (``model(x)`` calls ``fn(x, spec=spec)``).

    Hashable by value (the function's identity and the spec's fields), unlike a
    ``functools.partial``: the compiled programs below are cached on it, so a second fit of the
    same model and data shape reuses them.
    """

    fn: Callable
    spec: object

    def __call__(self, *args, **kwargs):
        return self.fn(*args, spec=self.spec, **kwargs)


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


def group_block(sites) -> tuple[str, ...]:
    """The latent sites that share a dense mass-matrix block: every group-level one, sorted.

    Why. The group-level parameters are few (13 in the flagship fit) and correlated (the
    coupling kappa trades off against the schema's mean starting level, the mean plasticity
    boost against the window's length: posterior correlations +0.68 and -0.53 in the flagship
    `schema` fit), which a diagonal mass matrix cannot express, so NUTS takes small steps along
    those ridges. Adapting their full covariance costs a 13 x 13 matrix; the per-patient z-scores
    (hundreds, nearly independent a posteriori under the non-centred parameterisation) stay
    diagonal. Measured at flagship size, 4 x (500 + 1000), same data and seed
    (benchmarks/README.md): leapfrogs per draw 31.0 -> 23.2 (schema) and 39.9 -> 31.0
    (schema_ungated); ESS per gradient +14 % and +72 %.
    """
    return tuple(sorted(name for name in sites if not name.startswith("z_")))


def block_inverse_mass(diagonal, sizes: dict[str, int], block: tuple[str, ...]) -> dict:
    """A flat diagonal (sites in sorted order, each raveled) in NumPyro's block form.

    ``{block: its diagonal, other sites: theirs}``: NumPyro turns the dense block's diagonal
    into a diagonal matrix, which the warm-up's first window then replaces with its estimate.
    """
    names = sorted(sizes)
    parts = dict(zip(names, jnp.split(jnp.asarray(diagonal), np.cumsum([sizes[k] for k in names])[:-1])))
    out = {tuple(block): jnp.concatenate([parts[k] for k in block])}
    rest = tuple(k for k in names if k not in block)
    if rest:
        out[rest] = jnp.concatenate([parts[k] for k in rest])
    return out


@lru_cache(maxsize=8)
def program(
    model: BoundModel,
    shapes,
    warmup: int,
    chunk: int,
    target_accept: float,
    max_tree_depth: int,
    dense_block: tuple[str, ...] = (),
    step_size: float = 1.0,
) -> Program:
    """The compiled-once pieces for one model and data shape (``shapes``: the cache key only)."""
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda x: partial(potential_energy, model, (x,), {}), algo="NUTS"
    )

    def init_one(key, z0, inverse_mass_matrix, x):
        # As NUTS.init: one split of the chain's key, the first half drives the kernel.
        key, _ = jax.random.split(key)
        # dense_mass=[]: NUTS.init's structural form of dense_mass=False (a diagonal per site);
        # [dense_block]: that block dense, the other sites diagonal.
        # inverse_mass_matrix: the first window's (ones = NumPyro's default), in block form.
        return init_kernel(
            z0,
            num_warmup=warmup,
            dense_mass=[dense_block] if dense_block else [],
            inverse_mass_matrix=inverse_mass_matrix,
            step_size=step_size,
            target_accept_prob=target_accept,
            trajectory_length=None,
            max_tree_depth=max_tree_depth,
            model_args=(x,),
            rng_key=key,
        )

    def advance_one(state, x):
        def body(state, _):
            state = sample_kernel(state, model_args=(x,))
            return state, (state.z,) + tuple(_field(state, f) for f in FIELDS)

        return jax.lax.scan(body, state, None, length=chunk)

    return Program(  # jit of a pmap: the same program, with the fit's compiler options (_xla.py)
        init=jit_fit_program(jax.pmap(init_one, in_axes=(0, 0, None, None))),
        advance=jit_fit_program(jax.pmap(advance_one, in_axes=(0, None))),
        chunk=chunk,
    )


@lru_cache(maxsize=8)
def _transforms(model: BoundModel, shapes) -> dict:
    """Latent site -> bijection from the unconstrained space NUTS works in."""
    return _site_transforms(model, _abstract(shapes))


def chain_transforms(model: BoundModel, x) -> dict:
    """Latent site -> bijection from NUTS's unconstrained space, for data ``x``."""
    return _transforms(model, _shapes(x))


def _abstract(shapes):
    treedef, leaves = shapes
    return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaves])


def _shapes(x):
    leaves, treedef = jax.tree.flatten(x)
    return treedef, tuple((tuple(np.shape(v)), jnp.result_type(v)) for v in leaves)


def run_parallel_nuts(
    model: BoundModel,
    x,
    init: dict,
    chains: int,
    warmup: int,
    draws: int,
    seed: int,
    target_accept: float = 0.8,
    max_tree_depth: int = 10,
    on_progress: Callable[[int, int], None] | None = None,
    *,
    z_start: dict | None = None,
    inverse_mass_matrix=None,
    dense_block: tuple[str, ...] = (),
    step_size: float = 1.0,
    extend_draws: int = 0,
    needs_more: Callable[[dict, dict], bool] | None = None,
):
    """NUTS with one chain per local device; returns (samples, stats), each (chains, draws, ...).

    ``samples`` holds every latent site on its constrained scale; ``stats`` the fields in FIELDS.
    All chains start from ``init`` (constrained values), as ``init_to_value`` does in NumPyro,
    unless ``z_start`` gives each chain its own start (unconstrained, site -> (chains, ...)).
    ``inverse_mass_matrix``: the diagonal the warm-up starts from (flat, sites in sorted order;
    default ones, as NumPyro). ``dense_block``: sites whose mass matrix is adapted as one dense
    block (``group_block``; empty: all diagonal). ``step_size``: the first (NUTS's ``step_size``;
    the warm-up adapts it). ``on_progress(done, total)`` is called after each chunk of iterations.

    ``extend_draws``, ``needs_more``: after the ``draws``, while ``needs_more(samples, stats)`` says
    the draws so far are not enough and fewer than ``extend_draws`` extra draws have been taken,
    every chain continues from where it stopped (same adapted step size and mass matrix) for
    another round of up to ``draws`` draws (whole chunks of iterations), kept with the others:
    longer chains of the same sampler, at most ``draws + extend_draws`` draws per chain.
    """
    if jax.local_device_count() < chains:
        raise ValueError(
            f"parallel chains need a device per chain: {chains} chains, "
            f"{jax.local_device_count()} devices (numpyro.set_host_device_count)"
        )
    shapes = _shapes(x)
    transforms = _transforms(model, shapes)
    missing = set(transforms) - set(init)
    if missing:
        raise ValueError(f"no initial value for latent site(s) {sorted(missing)}")
    prog = program(
        model,
        shapes,
        int(warmup),
        chunk_length(warmup, draws),
        float(target_accept),
        int(max_tree_depth),
        tuple(dense_block),
        float(step_size),
    )
    if z_start is None:
        z0 = {
            k: jnp.broadcast_to(t.inv(jnp.asarray(init[k])), (chains,) + jnp.shape(init[k]))
            for k, t in transforms.items()
        }
    else:
        z0 = {k: jnp.asarray(z_start[k]) for k in transforms}
    if inverse_mass_matrix is None:
        inverse_mass_matrix = jnp.ones(sum(int(np.prod(v.shape[1:])) for v in z0.values()))
    inverse_mass_matrix = jnp.asarray(inverse_mass_matrix)
    if dense_block:
        sizes = {k: int(np.prod(v.shape[1:])) for k, v in z0.items()}
        inverse_mass_matrix = block_inverse_mass(inverse_mass_matrix, sizes, tuple(dense_block))
    keys = jax.random.split(jax.random.key(seed), chains)  # as MCMC.run
    state = prog.init(keys, z0, inverse_mass_matrix, x)
    total, done, kept = warmup + draws, 0, []
    while done < total:
        state, out = prog.advance(state, x)
        done += prog.chunk
        if done > warmup:
            kept.append(jax.device_get(out))
        if on_progress is not None:
            # JAX dispatches asynchronously: without waiting, the warm-up's chunks are all queued
            # in a blink and the progress bar reaches the warm-up's end long before the chains do.
            jax.block_until_ready(state)
            on_progress(done, total)

    def collected():
        z = jax.tree.map(lambda *p: np.concatenate(p, axis=1), *[k[0] for k in kept])
        samples = {k: np.asarray(transforms[k](jnp.asarray(v))) for k, v in z.items()}
        stats = {f: np.concatenate([k[1 + i] for k in kept], axis=1) for i, f in enumerate(FIELDS)}
        return samples, stats

    samples, stats = collected()
    extra = 0
    # needs_more is asked after every round, the last included: its answer may also choose
    # which draws to keep (inference/fit.py), so it must see the final ones.
    while needs_more is not None and needs_more(samples, stats) and extra + prog.chunk <= extend_draws:
        rounds = min(draws, extend_draws - extra) // prog.chunk  # whole chunks, within the budget
        total = done + rounds * prog.chunk
        for _ in range(rounds):
            state, out = prog.advance(state, x)
            done += prog.chunk
            kept.append(jax.device_get(out))
            if on_progress is not None:
                jax.block_until_ready(state)
                on_progress(done, total)
        extra += rounds * prog.chunk
        samples, stats = collected()
    return samples, stats
