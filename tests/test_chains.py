"""Parallel chains with the data as an argument: NumPyro's draws, compiled once per data shape.

The pytest process has one JAX device, so the parallel path runs in a subprocess given four
host devices (as the CLI and the notebooks give themselves).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plasticity_rl.config import bundled_config_path, load_config

_SCRIPT = r"""
import json, logging, sys
import numpyro
numpyro.set_host_device_count(4)
import jax, numpy as np
# The sameness is tested in float64: the two programs below are the same sampler compiled twice,
# and float32 rounding differences between them (which differ from one CPU to another) grow
# chaotically along NUTS's trajectories, to the draws' whole range within eight draws on some
# machines. In float64 they start 1e9 times smaller and stay far below the tolerance.
jax.config.update("jax_enable_x64", True)
from numpyro.infer import MCMC, NUTS, init_to_value
from plasticity_rl.config import config_from_dict
from plasticity_rl.simulate import simulate
from plasticity_rl.inference import fit
from plasticity_rl._engine.chains import BoundModel, run_parallel_nuts
from plasticity_rl.inference.model import belief_model, build, init_values
from plasticity_rl.inference.prepare import prepare

raw = json.loads(sys.argv[1])
def cohort(seed):
    raw["experiment"]["seed"] = seed
    return simulate(config_from_dict(raw))

# 1. Same kernel, same keys: with no warm-up (nothing to adapt) the draws equal MCMC's. A small
# step size: at NUTS's unadapted 1.0 every transition diverges and no chain moves.
def f64(tree):
    return jax.tree.map(lambda a: a.astype(np.float64) if getattr(a, "dtype", None) == np.float32 else a, tree)
fd = prepare(cohort(1))
model, spec, x = build(fd)
x, init = f64(x), f64(init_values(spec, fd.n_patients))
bound = BoundModel(belief_model, spec)
ours, stats = run_parallel_nuts(bound, x, init, chains=4, warmup=0, draws=8, seed=5, step_size=0.05)
mcmc = MCMC(NUTS(model, init_strategy=init_to_value(values=init), step_size=0.05), num_warmup=0, num_samples=8,
            num_chains=4, chain_method="parallel", progress_bar=False)
mcmc.run(jax.random.key(5), x, extra_fields=("num_steps", "diverging"))
theirs = mcmc.get_samples(group_by_chain=True)
moving = float(np.min(np.ptp(ours["mu_A"], axis=1)))  # every chain's draws differ
diverged = int(np.sum(stats["diverging"]))
def rel_diff(a, b):  # largest difference, relative to the range the chains' draws cover
    return max(float(np.max(np.abs(a[k] - np.asarray(b[k]))) / np.ptp(a[k])) for k in a)
worst = rel_diff(ours, theirs)
same_steps = bool(np.array_equal(stats["num_steps"], np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])))

# 1b. The same with a dense block over the group-level sites and a non-unit starting matrix:
# the block form reaches NumPyro's kernel as NUTS(dense_mass=[block]) takes it.
from plasticity_rl._engine.chains import block_inverse_mass, chain_transforms, group_block
block = group_block(chain_transforms(bound, x))
sizes = {k: int(np.prod(np.shape(init[k]))) for k in chain_transforms(bound, x)}
diag = np.linspace(0.5, 2.0, sum(sizes.values()))
ours_d, stats_d = run_parallel_nuts(bound, x, init, chains=4, warmup=0, draws=8, seed=5,
                                    inverse_mass_matrix=diag, dense_block=block, step_size=0.05)
mcmc = MCMC(NUTS(model, init_strategy=init_to_value(values=init), dense_mass=[block], step_size=0.05,
                 inverse_mass_matrix=block_inverse_mass(diag, sizes, block)),
            num_warmup=0, num_samples=8, num_chains=4, chain_method="parallel", progress_bar=False)
mcmc.run(jax.random.key(5), x, extra_fields=("num_steps",))
theirs_d = mcmc.get_samples(group_by_chain=True)
worst_dense = rel_diff(ours_d, theirs_d)
moved = rel_diff(ours_d, ours)  # the matrix changed the path

# 2. A second data set of the same shape compiles nothing (in the fit's own float32).
jax.config.update("jax_enable_x64", False)
seen = []
fit(cohort(1), warmup=10, draws=10, seed=0)
class Log(logging.Handler):
    def emit(self, record):
        seen.append(record.getMessage())
logging.getLogger("jax").addHandler(Log())
logging.getLogger("jax").setLevel(logging.DEBUG)
jax.config.update("jax_log_compiles", True)
calls = []
idata = fit(cohort(2), warmup=10, draws=10, seed=0, progress=lambda done, total: calls.append([done, total]))
compiles = [m[:120] for m in seen if m.startswith("Compiling")]
seen.clear()
jax.jit(lambda v: v * 3 + 1)(2.0)  # control: a new program is logged
control = [m for m in seen if m.startswith("Compiling")]
print(json.dumps({"keys": sorted(ours), "mcmc_keys": sorted(theirs), "worst": worst, "same_steps": same_steps,
                  "block": list(block), "moving": moving, "diverged": diverged, "worst_dense": worst_dense, "moved": moved,
                  "mass_matrix": idata.posterior.attrs["mass_matrix"],
                  "compiles": compiles, "control": len(control),
                  "chain_method": idata.posterior.attrs["chain_method"],
                  "draws": list(idata.posterior["mu_A"].shape), "progress": calls}))
"""


@pytest.fixture(scope="module")
def parallel_result():
    raw = load_config(bundled_config_path("flagship")).model_dump(mode="json")
    raw["experiment"]["patients_per_arm"] = 2
    raw["experiment"]["days"] = 28
    raw["observations"]["visits"]["days"] = [0, 7, 28]
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(raw)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_parallel_chains_draw_what_numpyro_mcmc_draws(parallel_result):
    latent = set(parallel_result["keys"])
    assert latent and latent <= set(parallel_result["mcmc_keys"])  # MCMC adds deterministic sites
    assert parallel_result["moving"] > 1e-4 and parallel_result["diverged"] == 0  # the chains move
    # the same arithmetic compiled into a different program, in float64: rounding grown along
    # 8 draws of up to 63 leapfrog steps moved draws by 9e-13 of their range where measured; in
    # float32 the same growth reaches the whole range on some CPUs, which is why it runs in float64
    assert parallel_result["worst"] < 1e-6
    assert parallel_result["same_steps"]


def test_a_dense_group_block_reaches_numpyro_as_nuts_dense_mass_does(parallel_result):
    block = parallel_result["block"]
    assert "mu_A" in block and "tau_k_hours" in block and not any(n.startswith("z_") for n in block)
    assert parallel_result["moved"] > 0.05  # a different mass matrix gives different draws ...
    # ... the same ones NumPyro's NUTS draws with it, up to float64 rounding (5e-13 of the range
    # where measured)
    assert parallel_result["worst_dense"] < 1e-6
    assert parallel_result["mass_matrix"].startswith("dense over the group-level parameters (")


def test_block_inverse_mass_splits_a_flat_diagonal_by_site():
    import numpy as np

    from plasticity_rl._engine.chains import block_inverse_mass, group_block

    sizes = {"z_b": 3, "mu_a": 1, "tau_a": 1}  # sorted order: mu_a, tau_a, z_b
    block = group_block(sizes)
    assert block == ("mu_a", "tau_a")
    out = block_inverse_mass(np.arange(5.0), sizes, block)
    assert set(out) == {("mu_a", "tau_a"), ("z_b",)}
    np.testing.assert_array_equal(out[("mu_a", "tau_a")], [0.0, 1.0])
    np.testing.assert_array_equal(out[("z_b",)], [2.0, 3.0, 4.0])


def test_a_second_data_set_of_the_same_shape_compiles_nothing(parallel_result):
    assert parallel_result["control"] >= 1, "the compile log was not captured"
    assert parallel_result["compiles"] == []
    assert parallel_result["chain_method"] == "parallel"
    assert parallel_result["draws"] == [4, 10]


def test_a_fit_reports_progress_after_each_chunk_of_iterations(parallel_result):
    assert parallel_result["progress"] == [[10, 20], [20, 20]]  # chunks of 10: warm-up, then sampling


def test_parallel_chains_need_a_device_per_chain(flagship_sim):
    import jax

    from plasticity_rl._engine.chains import BoundModel, run_parallel_nuts
    from plasticity_rl.inference.model import belief_model, build, init_values
    from plasticity_rl.inference.prepare import prepare

    fd = prepare(flagship_sim)
    _, spec, x = build(fd)
    chains = jax.local_device_count() + 1
    with pytest.raises(ValueError, match=f"{chains} chains, {chains - 1} devices"):
        run_parallel_nuts(
            BoundModel(belief_model, spec), x, init_values(spec, fd.n_patients), chains, 10, 10, 0
        )
