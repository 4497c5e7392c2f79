"""Keep XLA:CPU away from a miscompiling code path before JAX starts its backend.

(Below that guard: the compiler options the fit's programs are compiled with, ``jit_fit_program``.)

jaxlib 0.10.2 (and 0.11.0) route some fused elementwise + reduce kernels on CPU through YNNPACK
("ynn fusion"), which gives wrong numbers once an array passes about 32,000 elements. Measured
here: the Beta log-densities of 50,400 EMA ratings (a vmap over 200 parameter draws) were wrong
for every element past index 32,760, by up to 40 nats, with no error; one draw at a time was
right. Upstream: jax-ml/jax#39257 and #39352. Setting ``--xla_cpu_experimental_ynn_fusion_type=``
(empty: no ynn fusion) removes the error; jaxlib 0.10.1 runs the old path anyway.

The flag only acts if it is in ``XLA_FLAGS`` before the first computation, so the package sets
it on import and warns when JAX was already running (then set it yourself, or import
plasticity_rl first). ``tests/test_xla_guard.py`` checks the computation that exposed the bug.

The guard has a price, measured at flagship size (benchmarks/README.md): with ynn
fusion on, a NUTS leapfrog of the four parallel chains takes 1.26 ms instead of 1.62 ms - but
the potential's gradient then differs from the guarded one by 2e-4 of its sum, far beyond
float32 rounding (1e-7). Whether a jaxlib with the bug fixed keeps that speed is for a
benchmark to say.
"""

from __future__ import annotations

import functools
import os
import warnings

FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
FLAG = f"--{FLAG_NAME}="


def _jaxlib_at_least(major: int, minor: int, patch: int) -> bool:
    try:
        from jaxlib.version import __version__ as v
    except ImportError:  # pragma: no cover - jax without jaxlib cannot run anyway
        return False
    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in v.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts))) >= (major, minor, patch)


def _backend_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # noqa: BLE001 - private API; if it moved, assume not started
        return False


def _effective_tokens(flags: str) -> list[str]:
    """The tokens of ``XLA_FLAGS`` that XLA reads: those before the first one not starting with "--".

    XLA silently ignores that token and every flag after it (measured, jaxlib 0.10.2:
    ``--xla_cpu_experimental_ynn_fusion_type= bogus=1 --xla_force_host_platform_device_count=3``
    gives 3 devices; with the last two swapped, 1).
    """
    tokens = flags.split()
    bad = next((i for i, t in enumerate(tokens) if not t.startswith("--")), len(tokens))
    return tokens[:bad]


def disable_ynn_fusion() -> bool:
    """Put the flag first in ``XLA_FLAGS`` unless the user set it; True if it is in effect.

    First, not last: a token without "--" (for instance ``intra_op_parallelism_threads=1``, a
    recipe often copied for JAX on CPU) makes XLA ignore every flag after it, so an appended flag
    was silently dropped and the miscompiling path came back on (tests/test_xla_guard.py).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    tokens = flags.split()
    if tokens and not tokens[0].startswith("--"):
        # XLA then reads its flags from the file named by XLA_FLAGS; adding to it would make XLA
        # look for a file that does not exist and abort.
        warnings.warn(
            f"plasticity_rl: XLA_FLAGS={flags!r} does not start with '--', so XLA reads its flags "
            f"from a file of that name; make sure it holds {FLAG} (jaxlib 0.10.2 miscompiles some "
            "large reductions without it: wrong log-likelihoods).",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    effective = _effective_tokens(flags)
    if any(t.startswith(f"--{FLAG_NAME}=") for t in effective):
        return True  # the user's own setting, where XLA reads it
    if not _jaxlib_at_least(0, 10, 1):  # older XLA does not know the flag (and has no ynn fusion)
        return False
    if _backend_started():
        warnings.warn(
            "plasticity_rl: JAX was already running when plasticity_rl was imported, so XLA's "
            f"CPU ynn fusion could not be turned off; jaxlib 0.10.2 miscompiles some large "
            f"reductions with it (wrong log-likelihoods). Set XLA_FLAGS='{FLAG}' before starting "
            "Python, or import plasticity_rl before running any JAX computation.",
            RuntimeWarning,
            stacklevel=3,
        )
        return False
    if len(effective) < len(tokens):
        ignored = " ".join(tokens[len(effective) :])
        warnings.warn(
            f"plasticity_rl: XLA ignores the end of XLA_FLAGS from {tokens[len(effective)]!r} on "
            f"({ignored!r}): every flag must start with '--'. plasticity_rl put its own flag first.",
            RuntimeWarning,
            stacklevel=3,
        )
    os.environ["XLA_FLAGS"] = " ".join([FLAG] + tokens)
    return True


# ----------------------------------------------------------------------------- fit programs

# The fit's programs (ADVI, NUTS's init and advance, the derived curves, the integrated LOO) are
# compiled with XLA:CPU's older elemental emitters instead of its MLIR "fusion emitters". Why:
# compiling is a fifth of the first flagship run (~35 s of ~210), and these programs compile
# ~25 % faster that way while running as fast (benchmarks/README.md: a pmapped loop
# of the flagship gradient compiles in 1.7-1.9 s instead of 2.4-2.6 s and runs at 1.21-1.36 ms
# per 4 gradients against 1.24-1.36; the gradient is as close to a float64 evaluation as with
# the default, 1.9e-4 against 2.2e-4 of its norm). Scoped to these programs, not set in
# XLA_FLAGS: the simulator's small loops ran ~15 % slower (median) with it, and a user's own JAX
# programs in the same process are not ours to change.
FIT_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def fit_compiler_options() -> dict | None:
    """FIT_COMPILER_OPTIONS if this XLA accepts them (checked once on a tiny program), else None."""
    import jax
    import jax.numpy as jnp

    if not FIT_COMPILER_OPTIONS or jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda v: v + 1, compiler_options=FIT_COMPILER_OPTIONS).lower(jnp.zeros(1)).compile()
    except Exception:  # noqa: BLE001 - an XLA without the option: compile as JAX does by default
        return None
    return dict(FIT_COMPILER_OPTIONS)


def jit_fit_program(fun, **jit_kwargs):
    """``jax.jit(fun, **jit_kwargs)`` compiled with :data:`FIT_COMPILER_OPTIONS` where supported.

    ``fun`` may be a ``jax.pmap``: pmap has no compiler options, but the jit of a pmap compiles
    the same program (bit-identical results, checked) and takes them.
    """
    import jax

    return jax.jit(fun, compiler_options=fit_compiler_options(), **jit_kwargs)


def fit_program(**jit_kwargs):
    """Decorator form of :func:`jit_fit_program`, jitting on the first call.

    Lazily, because checking the options starts JAX's backend, which a module-level decorator
    must not do at import (``numpyro.set_host_device_count`` only acts before it starts).
    """

    def decorate(fun):
        @functools.cache
        def jitted():
            return jit_fit_program(fun, **jit_kwargs)

        @functools.wraps(fun)
        def call(*args, **kwargs):
            return jitted()(*args, **kwargs)

        call.lower = lambda *args, **kwargs: jitted().lower(*args, **kwargs)  # as jax.jit's, for AOT use
        # JAX takes compiler options on top-level programs only: inside another program (a pmap
        # over devices), call ``.inline``, the undecorated function, which that program compiles.
        call.inline = fun
        return call

    return decorate
