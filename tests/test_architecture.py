"""The package's shape: one-way imports, a registry extended from outside, parameters held fixed.

The import test reads every module's source (module-level and function-level imports alike, all
but those under ``if TYPE_CHECKING:``), so a lazy import that dodges a cycle is caught too.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import arviz as az
import jax.numpy as jnp
import numpy as np
import pytest

import plasticity_rl
from plasticity_rl.config import ConfigError, config_from_dict
from plasticity_rl.models import BeliefModel, Beliefs, get_model, register
from plasticity_rl.models.base import delta_rule, repeated_delta_rule
from plasticity_rl.models.variants import symmetric_rates
from plasticity_rl.params import PARAMS
from plasticity_rl.registry import MODELS

SRC = Path(plasticity_rl.__file__).resolve().parent

# Data flows one way: a module may import from its own layer or an earlier one, never a later one.
LAYERS = [
    ("plasticity_rl.params", "plasticity_rl.registry", "plasticity_rl._engine"),
    ("plasticity_rl.config",),
    ("plasticity_rl.schedule",),
    ("plasticity_rl.plasticity",),
    ("plasticity_rl.models",),
    ("plasticity_rl.observe",),
    ("plasticity_rl.simulate",),
    ("plasticity_rl.data", "plasticity_rl.table_checks", "plasticity_rl.validation"),
    ("plasticity_rl.inference",),
    ("plasticity_rl.analysis", "plasticity_rl.trust"),
    ("plasticity_rl.plots",),
    (
        "plasticity_rl.report",
        "plasticity_rl.runs",
        "plasticity_rl.batch",
        "plasticity_rl.workflow",
        "plasticity_rl.recovery",
        "plasticity_rl.kfold",
        "plasticity_rl.lessons",
        "plasticity_rl.explore",
        "plasticity_rl.sweep",
        "plasticity_rl.console",
        "plasticity_rl.cli",
    ),
]


def module_name(path: Path) -> str:
    parts = ("plasticity_rl",) + path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def layer(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    if module == "plasticity_rl":
        return len(LAYERS)  # the package's front door re-exports everything
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


class _Imports(ast.NodeVisitor):
    def __init__(self, here: str, is_package: bool):
        self.here, self.is_package, self.found = here, is_package, set()

    def visit_If(self, node: ast.If):
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import):
        self.found.update(a.name for a in node.names if a.name.startswith("plasticity_rl"))

    def visit_ImportFrom(self, node: ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = self.here if self.is_package else self.here.rsplit(".", 1)[0]
            for _ in range(node.level - 1):
                package = package.rsplit(".", 1)[0]
            base = f"{package}.{base}" if base else package
        if not base.startswith("plasticity_rl"):
            return
        for alias in node.names:  # "from plasticity_rl import observe" imports a module
            sub = f"{base}.{alias.name}"
            self.found.add(sub if sub in MODULES else base)


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    visitor = _Imports(module, path.name == "__init__.py")
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return {m for m in visitor.found if m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_import_points_down_the_layers():
    upward = [
        f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
        for a, targets in GRAPH.items()
        if a != "plasticity_rl"
        for b in targets
        if layer(b) > layer(a)
    ]
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for n in sorted(GRAPH.get(m, ())):
            if n == "plasticity_rl":
                continue
            if state.get(n) == 1:
                cycles.append(" -> ".join(path[path.index(n) :] + [n]) if n in path else f"{m} -> {n}")
            elif n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_inference_never_reaches_the_simulator():
    reached, todo = set(), [m for m in MODULES if m.startswith("plasticity_rl.inference")]
    while todo:
        m = todo.pop()
        for n in GRAPH.get(m, ()):
            if n not in reached and n != "plasticity_rl":
                reached.add(n)
                todo.append(n)
    assert "plasticity_rl.simulate" not in reached
    assert not any(m.startswith(("plasticity_rl.plots", "plasticity_rl.workflow")) for m in reached)


def test_the_plots_neither_simulate_nor_fit():
    for m in MODULES:
        if m.startswith("plasticity_rl.plots"):
            assert "plasticity_rl.simulate" not in GRAPH[m] and not any(
                n.startswith("plasticity_rl.inference") for n in GRAPH[m]
            ), (m, GRAPH[m])


def test_the_model_code_imports_none_of_the_machinery_but_its_named_pieces():
    """models/ and observe read like equations: from the engine they use only the adjoint scan and log Gamma."""
    allowed = {"plasticity_rl._engine.adjoint", "plasticity_rl._engine.special"}
    for m in MODULES:
        if m.startswith("plasticity_rl.models") or m == "plasticity_rl.observe":
            engine = {n for n in GRAPH[m] if n.startswith("plasticity_rl._engine")}
            assert engine <= allowed, (m, engine)
    for m in MODULES:  # and the engine never reads the model
        if m.startswith("plasticity_rl._engine"):
            assert all(n.startswith("plasticity_rl._engine") for n in GRAPH[m]), (m, GRAPH[m])


# ----------------------------------------------------------------------------- the parameter table


def test_config_defaults_and_ranges_come_from_the_parameter_table(flagship_cfg):
    from plasticity_rl.params import config_value

    default = config_from_dict(
        {"experiment": {"name": "t", "seed": 0}, "arms": [{"name": "a", "doses": [{"day": 1}]}]}
    )
    for name, p in PARAMS.items():
        value = config_value(default, name)
        if p.level == "patient":
            assert (value.mean, value.sd) == (p.default, p.default_sd), name
        else:
            assert value == p.default, name
    # the range too: kappa's row says (0, 1)
    raw = flagship_cfg.model_dump(mode="json")
    raw["population"]["kappa"] = 1.0
    with pytest.raises(ConfigError, match=r"population.kappa: got 1.0; allowed: > 0.0 and < 1.0"):
        config_from_dict(raw)


def test_a_fixed_parameter_must_be_a_fitted_one_with_a_value_in_its_support(flagship_cfg):
    raw = flagship_cfg.model_dump(mode="json")
    raw["model"]["fixed"] = {"kapa": 0.05, "omega": 0.0}
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw)
    text = str(err.value)
    assert "'kapa' is not a fitted parameter" in text and "omega: got 0.0" in text


# ----------------------------------------------------------------------------- a variant from outside


def _toy_everyday(s: Beliefs, o, r, p) -> Beliefs:
    """Learn from the outcome, then forget toward one half at rate kappa (a leaky Rescorla-Wagner)."""
    V = (1.0 - p["kappa"]) * delta_rule(s.V, o, r["alpha"]) + p["kappa"] * 0.5
    return Beliefs(V, V)


def _toy_session(s: Beliefs, cs, n, r, p) -> Beliefs:
    V = repeated_delta_rule(s.V, cs, n, r["alpha"])
    return Beliefs(V, V)


TOY = BeliefModel(
    name="toy_leaky_rw",
    description="test-only: Rescorla-Wagner that forgets toward 1/2",
    patient_params=("logit_alpha0", "A", "logit_S0"),
    group_params=("kappa",),
    has_schema=False,
    asymmetric=False,
    rates=symmetric_rates,
    session=_toy_session,
    everyday=_toy_everyday,
    foil="rw",
)


@pytest.fixture
def toy_registered():
    register(TOY)
    yield TOY
    MODELS.pop(TOY.name)


def _tiny_config(variant: str, fixed: dict | None = None):
    return config_from_dict(
        {
            "experiment": {"name": "tiny", "seed": 3, "days": 8, "patients_per_arm": 8},
            "model": {"variant": variant, "fixed": fixed or {}},
            "population": {"kappa": 0.05},
            "observations": {"visits": {"days": [0, 2, 4, 8]}},
            "arms": [
                {"name": "ketamine", "doses": [{"day": 1}]},
                {"name": "ketamine_cbt", "doses": [{"day": 1}], "sessions": [{"day": 2, "repeat": 2}]},
            ],
        }
    )


SVI = dict(method="svi", svi_steps=300, chains=1, draws=100, seed=0)


def test_a_variant_registered_from_a_test_simulates_fits_and_compares(toy_registered):
    from plasticity_rl.inference import fit
    from plasticity_rl.inference.marginal import marginal_loo_data
    from plasticity_rl.simulate import simulate

    cfg = _tiny_config(TOY.name)  # the config knows the name once it is registered
    sim = simulate(cfg)
    # Its own rule ran: with alpha near 0.01 and kappa 0.05, V forgets toward 1/2 (S0 is ~0.24).
    assert np.mean(sim.trajectory.V[:, -1]) > np.mean(sim.trajectory.V[:, 0]) + 0.05
    toy = fit(sim, **SVI)
    foil = fit(sim, variant=get_model(TOY.name).foil, **SVI)
    assert toy.posterior.attrs["variant"] == TOY.name and "kappa" in toy.posterior
    loo = {
        v: marginal_loo_data(i, sim, variant=v, max_draws=20, importance_samples=32)
        for v, i in ((TOY.name, toy), ("rw", foil))
    }
    table = az.compare(loo)
    assert table.index[0] == TOY.name  # the model that generated the data predicts new patients better
    assert table.loc["rw", "elpd_diff"] > 2 * table.loc["rw", "dse"]


def test_an_unregistered_variant_is_a_config_error_naming_the_registered_ones():
    with pytest.raises(ConfigError, match=r"model.variant: got 'toy_leaky_rw'; allowed: \[.*'schema'"):
        _tiny_config(TOY.name)


def test_registering_a_parameter_the_table_lacks_fails_with_its_name():
    bad = BeliefModel(**{**TOY.__dict__, "name": "toy_bad", "group_params": ("leak",)})
    with pytest.raises(ValueError, match="'leak' is not a group-level parameter"):
        register(bad)
    assert "toy_bad" not in MODELS


# ----------------------------------------------------------------------------- holding a parameter fixed


def test_a_fixed_parameter_has_no_draws_is_recorded_and_is_used():
    from plasticity_rl.inference import build, fit, from_simulation, patient_log_lik
    from plasticity_rl.simulate import simulate

    sim = simulate(_tiny_config("schema"))
    idata = fit(sim, fixed={"kappa": 0.05, "logit_S0": -1.0}, **SVI)
    post = idata.posterior
    assert "kappa" not in post and "mu_logit_S0" not in post and "logit_S0" not in post
    assert "epsilon" in post and "mu_A" in post
    assert json.loads(post.attrs["fixed"]) == {"kappa": 0.05, "logit_S0": -1.0}
    # The likelihood reads the held values: leaving them out equals passing them.
    fd = from_simulation(sim)
    _, spec, x = build(fd, fixed={"kappa": 0.05, "logit_S0": -1.0})
    theta = {n: jnp.asarray(post[n].values[0, 0]) for n in spec.fitted if n in post}
    full = {**theta, "kappa": jnp.float32(0.05), "logit_S0": jnp.full(fd.n_patients, -1.0, jnp.float32)}
    assert np.allclose(patient_log_lik(spec, theta, x), patient_log_lik(spec, full, x), atol=1e-5)
    other = {**full, "kappa": jnp.float32(0.2)}
    assert not np.allclose(patient_log_lik(spec, theta, x), patient_log_lik(spec, other, x), atol=1e-2)
