"""Experiment configuration: YAML in, validated pydantic objects out.

Every value a user can set lives here, with its default, its allowed range and (for the
values calibrated on the literature) the source in a comment. Validation errors are
re-raised as :class:`ConfigError`, whose message names the field path, the bad value and
what is allowed, one line per problem.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
OpenProbability = Annotated[float, Field(gt=0.0, lt=1.0)]
Hour = Annotated[float, Field(ge=0.0, lt=24.0)]
Day = Annotated[int, Field(ge=0)]

VARIANTS = ("rw", "rw_asym", "schema", "schema_ungated", "schema_asym")
Variant = Literal["rw", "rw_asym", "schema", "schema_ungated", "schema_asym"]


class ConfigError(ValueError):
    """A configuration that cannot be used. ``problems`` holds one line per bad field."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = problems
        self.source = source
        head = f"invalid config{f' {source}' if source else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- experiment


class Experiment(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=80)
    seed: int = Field(ge=0, lt=2**32)
    days: int = Field(default=56, ge=1, le=3650)
    # One everyday experience every waking two hours (DESIGN 1).
    steps_per_day: int = Field(default=8, ge=1, le=96)
    patients_per_arm: int = Field(default=40, ge=1, le=1_000_000)
    description: str = ""


# --------------------------------------------------------------------------- plasticity


class Plasticity(_Strict):
    # gamma: K(tau) = (tau/(n tau_k))^n exp(n - tau/tau_k), peak at n*tau_k = 24 h: new spines
    # from ~12 h, clinical peak near 24 h (Moda-Sava et al. 2019 Science 364:eaat8078; Coyle &
    # Laws 2015), a mouse critical period open ~48 h (Nardou et al. 2023 Nature 618:790).
    # diffexp: the long-window alternative; the human window's length is unknown.
    kernel: Literal["gamma", "diffexp"] = "gamma"
    gamma_shape: float = Field(default=2.0, gt=0.0, le=20.0)
    tau_k_hours: float = Field(default=12.0, gt=0.0, le=24 * 30)
    tau_rise_hours: float = Field(default=14.0, gt=0.0, le=24 * 30)
    tau_decay_hours: float = Field(default=48.0, gt=0.0, le=24 * 60)
    # g(k) = k_max tanh(k / k_max): linear for one dose, bounded for many close doses, so
    # alpha <= sigmoid(logit alpha0 + A k_max) < 1 whatever the schedule.
    saturation: float = Field(default=2.0, gt=0.0, le=100.0)
    # Acute drug state (dissociation): 40-min infusion, elimination half-life ~2.75 h
    # (Zanos et al. 2018 Pharmacol Rev 70:621). Ketamine just before extinction training
    # impaired extinction in rats, so no learning is written while it is on.
    gate: bool = True
    infusion_minutes: float = Field(default=40.0, gt=0.0, le=24 * 60)
    half_life_hours: float = Field(default=2.75, gt=0.0, le=48.0)
    # Dissociation peaks at the end of the infusion and is gone by about 2 h after its start
    # (CADSS ratings: Zarate et al. 2006; Murrough et al. 2013).
    dissociation_gone_by_hours: float = Field(default=2.0, gt=0.0, le=48.0)

    @model_validator(mode="after")
    def _rise_before_decay(self) -> Plasticity:
        if self.dissociation_gone_by_hours <= self.infusion_minutes / 60.0:
            raise ValueError(
                f"dissociation_gone_by_hours ({self.dissociation_gone_by_hours}) must be later than "
                f"the end of the infusion ({self.infusion_minutes / 60.0:g} h)"
            )
        if self.kernel == "diffexp" and not self.tau_rise_hours < self.tau_decay_hours:
            raise ValueError(
                f"tau_rise_hours ({self.tau_rise_hours}) must be smaller than "
                f"tau_decay_hours ({self.tau_decay_hours}) for the diffexp kernel"
            )
        return self


# --------------------------------------------------------------------------- population


class NormalDist(_Strict):
    """A per-patient parameter on its unconstrained scale: Normal(mean, sd)."""

    mean: float = Field(allow_inf_nan=False)
    sd: float = Field(ge=0.0, le=10.0)


class Population(_Strict):
    # Per-patient parameters, Normal on unconstrained scales (DESIGN 1.5).
    logit_alpha0: NormalDist = NormalDist(mean=-4.595, sd=0.3)  # alpha0 = 0.01 (prototype)
    # The ketamine boost A is not measured in any human study: sweep it, fit it.
    A: NormalDist = NormalDist(mean=3.0, sd=0.5)
    logit_S0: NormalDist = NormalDist(mean=-1.15, sd=0.3)  # S0 = V0 = 0.24 (prototype)
    # Asymmetric variants: depressed patients learn more from bad news than good
    # (Pike & Robinson 2022 JAMA Psychiatry 79:313); ketamine raised updating from good news
    # (Bottemanne et al. 2022 JAMA Psychiatry 79:1060), so it boosts alpha+ more than alpha-.
    logit_alpha0_pos: NormalDist = NormalDist(mean=-4.9, sd=0.3)  # alpha0+ = 0.0074
    logit_alpha0_neg: NormalDist = NormalDist(mean=-4.3, sd=0.3)  # alpha0- = 0.0134
    A_pos: NormalDist = NormalDist(mean=3.3, sd=0.5)
    A_neg: NormalDist = NormalDist(mean=1.0, sd=0.5)
    # Group-level constants (per step). kappa: V relaxes to S; calibrated so a single dose's
    # benefit halves in about 6 days (Zarate 2006) and is gone by days 12-14 (Coyle & Laws 2015).
    kappa: OpenProbability = 0.0075
    epsilon: OpenProbability = 0.05  # everyday evidence reaching the schema (prototype)
    omega: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0  # corrective experience reaching the schema
    alpha_T: OpenProbability = 0.1  # schema_ungated: therapy learning rate, timing-blind
    V0_offset: float = Field(default=0.0, ge=-1.0, le=1.0)  # V0 = S0 + offset (0: V0 = S0)


# --------------------------------------------------------------------------- environment


class Environment(_Strict):
    p_env: Probability = 0.6  # how often everyday experiences actually go well
    bias: Probability = 0.3  # negative interpretation bias: o ~ Bernoulli(p_env (1 - bias))


# --------------------------------------------------------------------------- arms


class Dose(_Strict):
    day: Day
    hour: Hour = 10.0
    # 1.0 = 0.5 mg/kg IV over 40 min. 0.0 = a placebo infusion: the non-specific infusion
    # response E(t) but no drug state and no plasticity.
    amount: float = Field(default=1.0, ge=0.0, le=4.0)
    repeat: int = Field(default=1, ge=1, le=1000)
    every_days: float = Field(default=1.0, gt=0.0, le=365.0)

    def times_days(self) -> list[float]:
        start = self.day + self.hour / 24.0
        return [start + i * self.every_days for i in range(self.repeat)]


class Session(_Strict):
    """A therapy session (or a block of ``repeat`` sessions ``every_days`` apart)."""

    day: Day
    hour: Hour = 14.0
    n_c: int = Field(default=6, ge=1, le=100)  # corrective experiences per session (stored as int8)
    p_c: Probability = 0.9  # chance each corrective experience goes well
    repeat: int = Field(default=1, ge=1, le=1000)
    every_days: float = Field(default=1.0, gt=0.0, le=365.0)
    attendance: Probability = 1.0  # chance a patient attends; a missed session delivers nothing

    def times_days(self) -> list[float]:
        start = self.day + self.hour / 24.0
        return [start + i * self.every_days for i in range(self.repeat)]


class Arm(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_+.-]+$", min_length=1, max_length=60)
    label: str = ""
    doses: list[Dose] = []
    sessions: list[Session] = []
    patients: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _not_empty(self) -> Arm:
        if not self.doses and not self.sessions:
            raise ValueError(
                f"arm {self.name!r} has no doses and no sessions; give it at least one "
                "(a placebo infusion is a dose with amount: 0)"
            )
        return self


class TimingSweep(_Strict):
    """Expands into one arm per therapy delay (days after the infusion), plus a no-therapy arm."""

    dose: Dose
    therapy: Session  # ``day`` is ignored: the block starts on dose day + delay, at ``hour``
    delays_days: list[float] = Field(min_length=1)
    include_no_therapy: bool = True
    followup_day: int | None = None  # default: the last day


# --------------------------------------------------------------------------- observations


class Ema(_Strict):
    enabled: bool = True
    # Beta(V phi, (1 - V) phi) daily self-rating of V at the end of the day.
    phi: float = Field(default=20.0, gt=0.0, le=10_000.0)
    missing_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


DEFAULT_VISIT_DAYS = (0.0, 7.0, 7.5, 8.0, 9.0, 10.0, 14.0, 21.0, 28.0, 35.0, 42.0, 49.0, 56.0)


class Visits(_Strict):
    enabled: bool = True
    # Default: DEFAULT_VISIT_DAYS up to the experiment's last day (filled in by Config).
    days: list[float] = list(DEFAULT_VISIT_DAYS)
    m_max: float = Field(default=42.0, gt=0.0, le=60.0)  # MADRS at V = 0: baseline V0 0.24 -> ~32
    # Noise SD before and after the first treatment (Lii et al. 2023: SD 7-8 at baseline,
    # 8-12 after treatment).
    noise_sd_baseline: float = Field(default=7.0, ge=0.0, le=30.0)
    noise_sd_treated: float = Field(default=10.0, ge=0.0, le=30.0)
    # Acute drug-state lift D(t), MADRS points per unit dose: onset within 1-2 h, before any
    # spine forms (Moda-Sava et al. 2019). Size: ketamine -16.5 vs midazolam -8.8 at 24 h
    # (Murrough et al. 2013), less the part V's learning carries by then.
    acute_lift: float = Field(default=6.0, ge=0.0, le=60.0)
    acute_onset_hours: float = Field(default=1.0, gt=0.0, le=48.0)
    acute_half_life_hours: float = Field(default=36.0, gt=0.0, le=24 * 30)
    # Non-specific response to any infusion, active or placebo: midazolam -8.8 MADRS at 24 h
    # (Murrough et al. 2013); a placebo masked by anaesthesia matched ketamine (Lii et al. 2023).
    infusion_response: float = Field(default=9.0, ge=0.0, le=60.0)
    infusion_response_half_life_days: float = Field(default=7.0, gt=0.0, le=365.0)
    missing_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class Observations(_Strict):
    ema: Ema = Ema()
    visits: Visits = Visits()


class ModelSpec(_Strict):
    variant: Variant = "schema"


# --------------------------------------------------------------------------- top level


class Config(_Strict):
    experiment: Experiment
    model: ModelSpec = ModelSpec()
    plasticity: Plasticity = Plasticity()
    population: Population = Population()
    environment: Environment = Environment()
    observations: Observations = Observations()
    arms: list[Arm] = []
    timing_sweep: TimingSweep | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_visit_days(cls, data: Any) -> Any:
        """Unset visit days default to DEFAULT_VISIT_DAYS within the experiment's length."""
        if not isinstance(data, dict):
            return data
        exp, obs = data.get("experiment"), data.get("observations", {})
        days = exp.get("days", 56) if isinstance(exp, dict) else 56
        visits = obs.get("visits", {}) if isinstance(obs, dict) else None
        if isinstance(visits, dict) and "days" not in visits and isinstance(days, (int, float)):
            visits = {**visits, "days": [d for d in DEFAULT_VISIT_DAYS if d <= days]}
            data = {**data, "observations": {**obs, "visits": visits}}
        return data

    @model_validator(mode="after")
    def _check_schedule(self) -> Config:
        if not self.arms and self.timing_sweep is None:
            raise ValueError("give at least one arm in 'arms' (or a 'timing_sweep')")
        problems = []
        names = [a.name for a in self.all_arms()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"arm names must be unique; repeated: {dupes}")
        days = self.experiment.days
        for i, arm in enumerate(self.all_arms()):
            where = f"arms[{i}] ({arm.name})"
            for kind, items in (("doses", arm.doses), ("sessions", arm.sessions)):
                for j, item in enumerate(items):
                    for t in item.times_days():
                        if not 0.0 <= t < days:
                            problems.append(
                                f"{where}.{kind}[{j}]: time {t:g} d is outside the experiment "
                                f"(allowed: 0 <= day + hour/24 < experiment.days = {days})"
                            )
                            break
        for k, d in enumerate(self.observations.visits.days):
            if not 0.0 <= d <= days:
                problems.append(
                    f"observations.visits.days[{k}]: {d:g} is outside the experiment "
                    f"(allowed: 0 to experiment.days = {days})"
                )
        if self.timing_sweep and self.timing_sweep.followup_day is not None:
            if not 0 < self.timing_sweep.followup_day <= days:
                problems.append(
                    f"timing_sweep.followup_day: {self.timing_sweep.followup_day} must be in "
                    f"1..experiment.days ({days})"
                )
        if problems:
            raise ValueError("\n".join(problems))  # one line per problem (see _problems)
        return self

    def all_arms(self) -> list[Arm]:
        """The configured arms followed by those a timing sweep expands into."""
        return list(self.arms) + (expand_sweep(self.timing_sweep) if self.timing_sweep else [])

    def patients_in(self, arm: Arm) -> int:
        return arm.patients or self.experiment.patients_per_arm

    @property
    def followup_day(self) -> int:
        if self.timing_sweep and self.timing_sweep.followup_day is not None:
            return self.timing_sweep.followup_day
        return self.experiment.days


def sweep_arm_name(delay: float) -> str:
    return f"delay{delay:+g}d"


def expand_sweep(sweep: TimingSweep) -> list[Arm]:
    """Arms of a timing sweep. Delay d puts the first session on day (dose day + d), at the
    therapy's hour: delay 0 is the infusion day itself, delay 1 the next day."""
    arms = []
    if sweep.include_no_therapy:
        arms.append(Arm(name="no_therapy", label="ketamine, no therapy", doses=[sweep.dose]))
    for delay in sweep.delays_days:
        start = sweep.dose.day + delay + sweep.therapy.hour / 24.0
        day = math.floor(start + 1e-9)
        hour = round((start - day) * 24.0, 6) % 24.0
        fields = {**sweep.therapy.model_dump(), "day": day, "hour": hour}
        # model_construct: a negative day is reported by the config's schedule check, by arm.
        session = Session.model_construct(**fields)
        arms.append(
            Arm(
                name=sweep_arm_name(delay),
                label=f"therapy from day {delay:+g} after the infusion",
                doses=[sweep.dose],
                sessions=[session],
            )
        )
    return arms


# --------------------------------------------------------------------------- loading


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    typ = err["type"]
    if typ == "extra_forbidden":
        return "unknown key; check the spelling against the documented fields"
    if typ == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    bounds = [f"{op} {ctx[k]}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if k in ctx]
    if bounds:
        return "allowed: " + " and ".join(bounds)
    return err["msg"]


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = _format_loc(err["loc"])
        if err["type"] == "value_error":
            lines = err["msg"].removeprefix("Value error, ").splitlines()
            prefix = f"{loc}: " if err["loc"] else ""  # cross-field checks name their own fields
            out.extend(prefix + line for line in lines)
            continue
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        if len(shown) > 60:
            shown = shown[:57] + "..."
        if err["type"] == "missing":
            out.append(f"{loc}: required field is missing")
        else:
            out.append(f"{loc}: got {shown}; {_allowed(err)}")
    return out


def config_from_dict(data: Any, source: str | None = None) -> Config:
    if not isinstance(data, dict):
        raise ConfigError([f"the file must hold a YAML mapping, got {type(data).__name__}"], source)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), source) from None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"no such config file: {path}"], None)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from None
    return config_from_dict(data, str(path))


def bundled_config_path(name: str = "flagship") -> Path:
    """Path of a config shipped with the package (``configs/NAME.yaml``)."""
    here = Path(__file__).resolve().parent / "configs" / f"{name}.yaml"
    if here.is_file():
        return here
    raise ConfigError([f"no bundled config named {name!r}; see 'plasticity-rl configs'"])


def config_to_yaml(cfg: Config) -> str:
    """The fully resolved config (every default filled in), as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
