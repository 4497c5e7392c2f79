"""Independent per-draw work split over the local devices (one thread each on CPU).

With the CLI's host devices (one per NUTS chain) a 2-core machine can run two draws at once
after sampling, when the devices are otherwise idle. The draws are split along their leading
axis; the split changes nothing but the wall time.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def device_split(n: int) -> int:
    """How many local devices ``n`` draws are split over (1: run them as they are)."""
    return max(1, min(jax.local_device_count(), n))


def on_devices(pmapped: Callable, shared, batched, n_devices: int):
    """``pmapped(shared, chunk)`` on ``n_devices`` chunks of ``batched`` (leading axis), rejoined.

    ``pmapped`` must map its second argument over devices (``in_axes=(None, 0)``) and return
    arrays with the chunk's leading axis. The last draw is repeated to fill the last device and
    dropped afterwards.
    """
    S = jax.tree.leaves(batched)[0].shape[0]
    pad = (-S) % n_devices

    def split(a):
        a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a
        return a.reshape((n_devices, -1) + a.shape[1:])

    out = pmapped(shared, jax.tree.map(split, batched))
    # explicit sizes, not -1: an output may be empty (e.g. no visits: (devices, n, N, 0))
    return jax.tree.map(lambda a: a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])[:S], out)
