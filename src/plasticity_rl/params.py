"""Every model parameter once: level, support, prior, default, unit, config field, meaning.

The config's defaults and allowed ranges, the simulator's population, the fit's priors and
supports, the figures' axis labels and ``plasticity-rl params`` all read :data:`PARAMS`, so a
parameter's facts live in one row.

Levels:

- ``patient``: one value per patient, drawn from the population Normal(mean, sd) on the
  parameter's (unconstrained) scale; fitted hierarchically (non-centred: mu + tau z);
- ``group``: one value for the cohort, fitted with the prior named in its row;
- ``fixed``: a known constant of the design, read from the config, never fitted.

Any ``patient`` or ``group`` parameter can be held fixed in a fit instead (``fit --fix
kappa=0.05``, or ``model.fixed`` in a config); a fixed patient-level parameter gives every
patient the same value.

Priors (``prior``): ``("hierarchical", mu_sd, tau_scale)`` - mu ~ Normal(config mean, mu_sd),
tau ~ HalfNormal(tau_scale); ``("logit_normal", sd)`` - logit-normal around the config value;
``("beta", a, b)``; ``("log_normal", sd, min_centre)`` - log-normal around the config value
(or ``min_centre`` if larger, so a config value of 0 still gives a proper prior).

This module imports nothing from the package: every other layer may read it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Level = Literal["patient", "group", "fixed"]


@dataclass(frozen=True)
class Param:
    name: str
    level: Level
    config: str  # dotted path of the config field that sets it (patient: a {mean, sd} pair)
    default: float  # the config's default (patient: the population mean)
    unit: str
    symbol: str  # as figures label it
    meaning: str
    support: tuple[float, float] = (-math.inf, math.inf)  # the fit's support (inclusive ends)
    prior: tuple = ()  # see the module docstring; () for fixed parameters
    default_sd: float | None = None  # patient level: the population SD
    # the config's allowed range (pydantic gt/ge/lt/le)
    limits: dict[str, float] = field(default_factory=dict)
    # when it is fitted: "" always (if the variant uses it), else "gamma", "diffexp", "ema", "visits"
    applies: str = ""
    source: str = ""

    @property
    def prior_text(self) -> str:
        """The prior in words (centres are the config's values)."""
        if not self.prior:
            return "fixed (not fitted)"
        kind, *a = self.prior
        if kind == "hierarchical":
            return f"mean ~ Normal(config mean, {a[0]:g}), SD ~ HalfNormal({a[1]:g})"
        if kind == "logit_normal":
            return f"logit-normal(config value, {a[0]:g})"
        if kind == "beta":
            return f"Beta({a[0]:g}, {a[1]:g})"
        return f"log-normal(config value, {a[0]:g})" + (f", centre at least {a[1]:g}" if a[1] else "")

    @property
    def default_text(self) -> str:
        """The config's default; for a patient-level parameter, its population mean and SD."""
        return f"{self.default:g}" + (f" (sd {self.default_sd:g})" if self.default_sd is not None else "")

    @property
    def label(self) -> str:
        return f"{self.symbol} ({self.unit})" if self.unit else self.symbol

    def check_value(self, value, where: str) -> str | None:
        """A problem with holding this parameter at ``value`` (None if allowed): finite, inside the support."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{where}: got {value!r}; {self.name} needs a finite number"
        lo, hi = self.support
        if not (value > lo and (value <= hi if "le" in self.limits else value < hi)):
            top = "]" if "le" in self.limits else ")"
            return f"{where}: got {value!r}; allowed for {self.name}: ({lo:g}, {hi:g}{top} ({self.unit})"
        return None


_UNIT = (0.0, 1.0)
_POS = (0.0, math.inf)
_OPEN_UNIT = {"gt": 0.0, "lt": 1.0}

# The table reads best as a table: one entry per parameter, not one line per field.
# fmt: off
_ROWS = (
    # ------------------------------------------------------------------ per patient
    Param("logit_alpha0", "patient", "population.logit_alpha0", -4.595, "logit", "logit α0",
          "baseline learning rate α0 on the logit scale (-4.595: α0 = 0.01)",
          prior=("hierarchical", 1.0, 0.5), default_sd=0.3),
    Param("A", "patient", "population.A", 3.0, "logit units", "A",
          "ketamine boost of the learning rate's logit per unit of plasticity drive; "
          "not measured in any human study: sweep it, fit it",
          prior=("hierarchical", 1.5, 0.5), default_sd=0.5),
    Param("logit_S0", "patient", "population.logit_S0", -1.15, "logit", "logit S0",
          "initial core belief (schema) S0 on the logit scale (-1.15: S0 = 0.24)",
          prior=("hierarchical", 1.0, 0.5), default_sd=0.3),
    Param("logit_alpha0_pos", "patient", "population.logit_alpha0_pos", -4.9, "logit", "logit α0+",
          "asymmetric variants: baseline rate for good news (α0+ = 0.0074)",
          prior=("hierarchical", 1.0, 0.5), default_sd=0.3,
          source="depressed patients learn more from bad news than good: Pike & Robinson 2022 "
                 "JAMA Psychiatry 79:313"),
    Param("logit_alpha0_neg", "patient", "population.logit_alpha0_neg", -4.3, "logit", "logit α0−",
          "asymmetric variants: baseline rate for bad news (α0− = 0.0134)",
          prior=("hierarchical", 1.0, 0.5), default_sd=0.3),
    Param("A_pos", "patient", "population.A_pos", 3.3, "logit units", "A+",
          "asymmetric variants: ketamine boost of the good-news rate",
          prior=("hierarchical", 1.5, 0.5), default_sd=0.5,
          source="ketamine raised updating from good news: Bottemanne et al. 2022 JAMA Psychiatry 79:1060"),
    Param("A_neg", "patient", "population.A_neg", 1.0, "logit units", "A−",
          "asymmetric variants: ketamine boost of the bad-news rate",
          prior=("hierarchical", 1.5, 0.5), default_sd=0.5),
    # ------------------------------------------------------------------ group: beliefs
    Param("kappa", "group", "population.kappa", 0.0075, "per step", "κ",
          "how fast V relaxes toward the schema S after each everyday event",
          support=_UNIT, prior=("logit_normal", 1.0), limits=_OPEN_UNIT,
          source="a single dose's benefit halves in ~6 days (Zarate et al. 2006) and is gone by "
                 "days 12-14 (Coyle & Laws 2015)"),
    Param("epsilon", "group", "population.epsilon", 0.05, "fraction", "ε",
          "share of an everyday prediction error that reaches the schema",
          support=_UNIT, prior=("logit_normal", 1.0), limits=_OPEN_UNIT),
    Param("omega", "group", "population.omega", 1.0, "fraction", "ω",
          "share of a corrective experience's prediction error that reaches the schema",
          support=_UNIT, prior=("beta", 3.0, 1.0), limits={"gt": 0.0, "le": 1.0}),
    Param("alpha_T", "group", "population.alpha_T", 0.1, "per experience", "α_T",
          "schema_ungated: the therapy learning rate, the same at any time (the timing-blind foil)",
          support=_UNIT, prior=("logit_normal", 1.0), limits=_OPEN_UNIT),
    # ------------------------------------------------------------------ group: the window
    Param("tau_k_hours", "group", "plasticity.tau_k_hours", 12.0, "hours", "τ_k",
          "gamma kernel's time constant: peak plasticity at gamma_shape x τ_k after a dose",
          support=_POS, prior=("log_normal", 0.5, 0.0), limits={"gt": 0.0, "le": 24 * 30}, applies="gamma",
          source="new spines from ~12 h, clinical peak near 24 h (Moda-Sava et al. 2019 Science "
                 "364:eaat8078); a mouse critical period open ~48 h (Nardou et al. 2023 Nature 618:790)"),
    Param("tau_rise_hours", "group", "plasticity.tau_rise_hours", 14.0, "hours", "τ_rise",
          "difference-of-exponentials kernel: rise time constant (the long-window alternative)",
          support=_POS, prior=("log_normal", 0.5, 0.0), limits={"gt": 0.0, "le": 24 * 30}, applies="diffexp"),
    Param("tau_decay_hours", "group", "plasticity.tau_decay_hours", 48.0, "hours", "τ_decay",
          "difference-of-exponentials kernel: decay time constant; fitted as τ_rise plus a "
          "log-normal gap, so the two cannot swap",
          support=_POS, prior=("log_normal", 0.5, 0.0), limits={"gt": 0.0, "le": 24 * 60}, applies="diffexp"),
    # ------------------------------------------------------------------ group: observations
    Param("phi", "group", "observations.ema.phi", 20.0, "Beta precision", "φ",
          "precision of the daily EMA rating Beta(V φ, (1 - V) φ)",
          support=_POS, prior=("log_normal", 0.75, 0.0), limits={"gt": 0.0, "le": 10_000.0}, applies="ema"),
    Param("sigma_baseline", "group", "observations.visits.noise_sd_baseline", 7.0, "MADRS points", "σ_baseline",
          "clinician score noise SD before the arm's first treatment",
          support=_POS, prior=("log_normal", 0.5, 0.5), limits={"ge": 0.0, "le": 30.0}, applies="visits",
          source="Lii et al. 2023: SD 7-8 at baseline, 8-12 after treatment"),
    Param("sigma_treated", "group", "observations.visits.noise_sd_treated", 10.0, "MADRS points", "σ_treated",
          "clinician score noise SD from the arm's first treatment on",
          support=_POS, prior=("log_normal", 0.5, 0.5), limits={"ge": 0.0, "le": 30.0}, applies="visits"),
    # ------------------------------------------------------------------ fixed: design constants
    Param("V0_offset", "fixed", "population.V0_offset", 0.0, "belief units", "V0 offset",
          "moves V's start from its quasi-equilibrium between S0 and the everyday evidence",
          limits={"ge": -1.0, "le": 1.0}),
    Param("p_env", "fixed", "environment.p_env", 0.6, "probability", "p_env",
          "how often everyday experiences actually go well", limits={"ge": 0.0, "le": 1.0}),
    Param("bias", "fixed", "environment.bias", 0.3, "probability", "b",
          "negative interpretation bias: everyday outcome o ~ Bernoulli(p_env (1 - b))",
          limits={"ge": 0.0, "le": 1.0}),
    Param("gamma_shape", "fixed", "plasticity.gamma_shape", 2.0, "", "n",
          "gamma kernel's shape: K(τ) = (τ/(n τ_k))^n exp(n - τ/τ_k)", limits={"gt": 0.0, "le": 20.0}),
    Param("saturation", "fixed", "plasticity.saturation", 2.0, "drive units", "k_max",
          "g(k) = k_max tanh(k / k_max): linear for one dose, bounded for many close doses",
          limits={"gt": 0.0, "le": 100.0}),
    Param("infusion_minutes", "fixed", "plasticity.infusion_minutes", 40.0, "minutes", "infusion",
          "length of an infusion (the acute gate's rise)", limits={"gt": 0.0, "le": 24 * 60}),
    Param("half_life_hours", "fixed", "plasticity.half_life_hours", 2.75, "hours", "t½",
          "elimination half-life of the plasma-like drug state", limits={"gt": 0.0, "le": 48.0},
          source="Zanos et al. 2018 Pharmacol Rev 70:621"),
    Param("dissociation_gone_by_hours", "fixed", "plasticity.dissociation_gone_by_hours", 2.0, "hours",
          "dissociation end", "dissociation (no learning written) is gone this long after the infusion starts",
          limits={"gt": 0.0, "le": 48.0}, source="CADSS ratings: Zarate et al. 2006; Murrough et al. 2013"),
    Param("m_max", "fixed", "observations.visits.m_max", 42.0, "MADRS points", "m_max",
          "clinician score at V = 0 (baseline V0 0.24 gives ~32)", limits={"gt": 0.0, "le": 60.0}),
    Param("acute_lift", "fixed", "observations.visits.acute_lift", 6.0, "MADRS points per unit dose", "D",
          "acute drug-state lift D(t) of the clinician score: onset within hours, before any spine forms",
          limits={"ge": 0.0, "le": 60.0},
          source="Moda-Sava et al. 2019; aimed at ketamine -16.5 vs midazolam -8.8 MADRS at 24 h (Murrough et "
                 "al. 2013), which the defaults miss (about -12 vs -8; plasticity-rl check-targets)"),
    Param("acute_onset_hours", "fixed", "observations.visits.acute_onset_hours", 1.0, "hours", "D onset",
          "time constant of the onset of D(t) and E(t)", limits={"gt": 0.0, "le": 48.0}),
    Param("acute_half_life_hours", "fixed", "observations.visits.acute_half_life_hours", 36.0, "hours", "D t½",
          "half-life of the acute lift D(t)", limits={"gt": 0.0, "le": 24 * 30}),
    Param("infusion_response", "fixed", "observations.visits.infusion_response", 9.0, "MADRS points", "E",
          "non-specific response E(t) to any infusion, active or placebo", limits={"ge": 0.0, "le": 60.0},
          source="midazolam -8.8 MADRS at 24 h (Murrough et al. 2013); a placebo masked by anaesthesia "
                 "matched ketamine (Lii et al. 2023)"),
    Param("infusion_response_half_life_days", "fixed", "observations.visits.infusion_response_half_life_days",
          7.0, "days", "E t½", "half-life of the non-specific infusion response E(t)",
          limits={"gt": 0.0, "le": 365.0},
          source="a guess; a placebo masked by anaesthesia stayed improved for two weeks (Lii et al. 2023), "
                 "which this half-life misses from day 3-5 on"),
)
# fmt: on

PARAMS: dict[str, Param] = {p.name: p for p in _ROWS}


def param(name: str) -> Param:
    try:
        return PARAMS[name]
    except KeyError:
        raise KeyError(f"unknown parameter {name!r}; the parameter table has: {sorted(PARAMS)}") from None


def fittable() -> list[str]:
    """Parameters a fit can estimate (or hold fixed): every patient- and group-level row."""
    return [p.name for p in _ROWS if p.level != "fixed"]


def config_value(cfg: Any, name: str):
    """The parameter's value in a config (patient level: its population {mean, sd})."""
    obj = cfg
    for part in param(name).config.split("."):
        obj = getattr(obj, part)
    return obj


def mean_outcome(cfg: Any) -> float:
    """mu_o = p_env (1 - bias): the chance an everyday outcome is perceived as good."""
    return float(config_value(cfg, "p_env")) * (1.0 - float(config_value(cfg, "bias")))


def support_bounds(name: str) -> tuple[float, float]:
    """The support of a fitted site: a parameter's, or for ``mu_*`` / ``tau_*`` of a patient-level one."""
    if name in PARAMS:
        return PARAMS[name].support
    if name.startswith("tau_") and name[4:] in PARAMS and PARAMS[name[4:]].level == "patient":
        return _POS
    if name == "window_gap_hours":
        return _POS
    return (-math.inf, math.inf)


def true_on_support_bound(level: str, name: str, true_values) -> bool:
    """Whether every generating value of a group parameter sits on a bound of its support.

    A true value on a bound (the flagship's omega = 1) cannot sit inside any central posterior
    interval.
    """
    return level == "group" and all(float(v) in support_bounds(name) for v in true_values)


def unit_of(site: str) -> str:
    """The unit of a fitted site (``mu_A``, ``tau_A``, ``kappa``, ...), in plain words for axis titles."""
    base = site[3:] if site.startswith("mu_") else site
    if site.startswith("tau_") and site[4:] in PARAMS:
        base = site[4:]
    p = PARAMS.get(base)
    if p is None:
        return "hours" if site.endswith("_hours") else "model units"
    if p.support == _UNIT:
        return "fraction, 0–1"
    return p.unit or "model units"


def belief_values(cfg: Any) -> dict[str, float]:
    """What the belief recurrence reads besides the per-patient parameters, from a config.

    The beliefs' group-level parameters (kappa, epsilon, omega, alpha_T: each variant reads the
    ones it uses), V0_offset, and mu_o, the mean everyday outcome (V's quasi-equilibrium start).
    """
    out = {"mu_o": mean_outcome(cfg)}
    out.update(
        {p.name: float(config_value(cfg, p.name)) for p in _ROWS if p.level == "group" and not p.applies}
    )
    out["V0_offset"] = float(config_value(cfg, "V0_offset"))
    return out


def params_markdown() -> str:
    """The parameter table as Markdown (``docs/model.md`` holds it; a test keeps the two the same)."""
    lines = [
        "| name | symbol | level | default | unit | prior in a fit | config field | meaning |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in PARAMS.values():
        meaning = p.meaning + (f". Source: {p.source}" if p.source else "")
        cells = [
            f"`{p.name}`",
            p.symbol,
            p.level,
            p.default_text,
            p.unit,
            p.prior_text,
            f"`{p.config}`",
            meaning,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
