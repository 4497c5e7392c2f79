"""Hierarchical Bayesian inference for the belief variants.

The likelihood calls :func:`plasticity_rl.models.run_beliefs`, the recurrence the simulator runs.

    from plasticity_rl.inference import fit, diagnose
    idata = fit(sim)                      # a Simulation, or fit(tables, cfg) for real data
    print(diagnose(idata))
"""

from plasticity_rl.inference.diagnostics import Diagnostics, Thresholds, diagnose
from plasticity_rl.inference.fit import fit, resolve_chain_method
from plasticity_rl.inference.model import (
    ModelSpec,
    Priors,
    belief_model,
    build,
    patient_log_lik,
    true_theta,
)
from plasticity_rl.inference.prepare import (
    DataError,
    FitData,
    ModelInputs,
    from_simulation,
    from_tables,
    prepare,
)

__all__ = [
    "DataError",
    "Diagnostics",
    "FitData",
    "ModelInputs",
    "ModelSpec",
    "Priors",
    "Thresholds",
    "belief_model",
    "build",
    "diagnose",
    "fit",
    "from_simulation",
    "from_tables",
    "patient_log_lik",
    "prepare",
    "resolve_chain_method",
    "true_theta",
]
