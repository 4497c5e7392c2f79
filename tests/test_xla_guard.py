"""The XLA:CPU miscompilation that gave wrong Beta log-densities for large batches stays away.

A vmap over 200 parameter draws of the EMA likelihood (50,400 Beta log-densities) was wrong past
element 32,760 under jaxlib 0.10.2's ynn fusion; plasticity_rl turns that path off on import.
"""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

import plasticity_rl  # noqa: F401 - sets XLA_FLAGS before the first computation
from plasticity_rl._engine.xla import FLAG, FLAG_NAME, _jaxlib_at_least


def test_flag_is_set_where_jaxlib_knows_it():
    if _jaxlib_at_least(0, 10, 1):
        assert FLAG_NAME in os.environ.get("XLA_FLAGS", "")


def _batched_equals_one_by_one():
    B, N, T, D = 200, 18, 56, 14
    V = jax.random.uniform(jax.random.key(0), (B, N, T), minval=0.1, maxval=0.9)
    y = jax.random.uniform(jax.random.key(1), (N, D), minval=0.05, maxval=0.95)
    idx = jnp.arange(D) * 4 + 3

    @jax.jit
    def log_density(V):
        v = jnp.clip(V[..., idx], 1e-6, 1 - 1e-6)
        return dist.Beta(v * 18.0, (1.0 - v) * 18.0).log_prob(y)

    batched = np.asarray(log_density(V))
    one_by_one = np.concatenate([np.asarray(log_density(V[i : i + 1])) for i in range(B)])
    return float(np.max(np.abs(batched - one_by_one)))


def test_large_batched_beta_log_density_matches_one_row_at_a_time():
    assert _batched_equals_one_by_one() < 1e-4


_CHILD = """
import os, warnings
warnings.simplefilter("error")  # the flags below must make plasticity_rl warn
try:
    import plasticity_rl
except RuntimeWarning as w:
    print("warned:", w)
    warnings.simplefilter("ignore")
    import plasticity_rl
import jax
print("flags:", os.environ["XLA_FLAGS"])
print("devices:", jax.local_device_count())
import sys
sys.path.insert(0, {path!r})
from test_xla_guard import _batched_equals_one_by_one
print("error:", _batched_equals_one_by_one())
"""


def _run_child(xla_flags: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": xla_flags}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(path=os.path.dirname(__file__))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)


def test_the_guard_survives_a_flag_without_dashes():
    # XLA ignores every flag after a token that does not start with "--" (as in the often
    # copied "... intra_op_parallelism_threads=1"): an appended guard flag was silently lost and
    # the batched densities came out wrong again. The package puts its flag first, and says why.
    if not _jaxlib_at_least(0, 10, 1):
        return
    got = _run_child("--xla_force_host_platform_device_count=2 intra_op_parallelism_threads=1")
    assert "every flag must start with '--'" in got["warned"]
    assert got["flags"].split()[0] == FLAG
    assert got["devices"] == "2"  # flags before the bad token still count
    assert float(got["error"]) < 1e-4


def test_a_flags_file_is_left_alone():
    # XLA_FLAGS that do not start with "--" name a file XLA reads its flags from; adding a flag
    # to the name would make XLA look for another file and abort.
    code = (
        "import os, warnings\nwith warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n    import plasticity_rl\n"
        "print(os.environ['XLA_FLAGS']); print(any('reads its flags' in str(x.message) for x in w))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "XLA_FLAGS": "/tmp/my_xla_flags"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["/tmp/my_xla_flags", "True"]
