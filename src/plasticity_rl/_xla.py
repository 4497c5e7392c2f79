"""Keep XLA:CPU away from a miscompiling code path before JAX starts its backend.

jaxlib 0.10.2 (and 0.11.0) route some fused elementwise + reduce kernels on CPU through YNNPACK
("ynn fusion"), which gives wrong numbers once an array passes about 32,000 elements. Measured
here: the Beta log-densities of 50,400 EMA ratings (a vmap over 200 parameter draws) were wrong
for every element past index 32,760, by up to 40 nats, with no error; one draw at a time was
right. Upstream: jax-ml/jax#39257 and #39352. Setting ``--xla_cpu_experimental_ynn_fusion_type=``
(empty: no ynn fusion) removes the error; jaxlib 0.10.1 runs the old path anyway.

The flag only acts if it is in ``XLA_FLAGS`` before the first computation, so the package sets
it on import and warns when JAX was already running (then set it yourself, or import
plasticity_rl first). ``tests/test_xla_guard.py`` checks the computation that exposed the bug.
"""

from __future__ import annotations

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


def disable_ynn_fusion() -> bool:
    """Add the flag to ``XLA_FLAGS`` unless the user set it; True if it is in effect."""
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG_NAME in flags:
        return True
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
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True
