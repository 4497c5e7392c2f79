"""Leapfrogs per draw and ESS per gradient of one fit: diagonal vs dense group-block mass matrix.

Run on demand (not in CI), one cell per process so each starts cold:

    python benchmarks/mass_matrix.py diagonal schema
    python benchmarks/mass_matrix.py dense-group schema
    python benchmarks/mass_matrix.py diagonal schema_ungated   # (and dense-group)
    python benchmarks/mass_matrix.py dense-group schema 300    # a shorter warm-up (default 500)

Data: the medium (flagship-size) benchmark data set of ``compare.py``; 4 chains x (500 + 1000)
on 4 host devices, the fit's defaults otherwise (window fitted). Prints wall time, mean
leapfrogs per draw, step sizes, min bulk/tail ESS and max R-hat over the group-level
parameters, and min bulk ESS per 1,000 sampling gradients (benchmarks/README.md, attempt 34).
"""

import sys
import time
from pathlib import Path

import numpyro

numpyro.set_host_device_count(4)

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from compare import fit_data  # noqa: E402

from plasticity_rl.inference import fit  # noqa: E402

mass, variant = sys.argv[1], sys.argv[2]
warmup = int(sys.argv[3]) if len(sys.argv) > 3 else 500
fd = fit_data("medium")
t0 = time.perf_counter()
idata = fit(
    fd, variant=variant, chains=4, warmup=warmup, draws=1000, seed=fd.config.experiment.seed, mass_matrix=mass
)
wall = time.perf_counter() - t0
ss = idata.sample_stats
group = [n for n in idata.posterior.data_vars if idata.posterior[n].ndim == 2]
s = az.summary(idata, var_names=group, kind="diagnostics")
print(
    f"{mass} {variant}, warm-up {warmup}: wall {wall:.0f} s, mean leapfrogs/draw {float(ss.n_steps.mean()):.1f}, "
    f"step sizes {np.round(ss.step_size.values[:, 0], 3)}"
)
print(
    f"  min bulk ESS {s.ess_bulk.min():.0f} ({s.ess_bulk.idxmin()}), min tail {s.ess_tail.min():.0f}, "
    f"max R-hat {s.r_hat.max():.3f}, divergences {int(ss.diverging.sum())}"
)
print(f"  min bulk ESS per 1,000 sampling gradients {1000 * s.ess_bulk.min() / float(ss.n_steps.sum()):.2f}")
