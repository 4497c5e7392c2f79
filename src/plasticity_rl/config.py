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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from plasticity_rl.params import PARAMS, fittable, param
from plasticity_rl.registry import MODELS

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Hour = Annotated[float, Field(ge=0.0, lt=24.0)]
Day = Annotated[int, Field(ge=0)]


def _field(name: str):
    """A config field whose default, allowed range and description come from the parameter table."""
    p = param(name)
    unit = f" [{p.unit}]" if p.unit else ""
    source = f" Source: {p.source}." if p.source else ""
    return Field(default=p.default, description=f"{p.meaning}{unit}.{source}", **p.limits)


def _population(name: str):
    p = param(name)
    return Field(
        default_factory=lambda: NormalDist(mean=p.default, sd=p.default_sd),
        description=f"{p.meaning}: Normal(mean, sd) over patients [{p.unit}]",
    )


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
    # One everyday experience every waking two hours.
    steps_per_day: int = Field(default=8, ge=1, le=96)
    patients_per_arm: int = Field(default=40, ge=1, le=1_000_000)
    description: str = ""


# --------------------------------------------------------------------------- plasticity


class Plasticity(_Strict):
    """The plasticity window (kernel, saturation) and the acute gate; values and sources in plasticity_rl.params.

    gamma: K(tau) = (tau/(n tau_k))^n exp(n - tau/tau_k), peak at n tau_k = 24 h by default;
    diffexp: the long-window alternative (the human window's length is unknown). Ketamine given
    just before extinction training impaired extinction in rats, so no learning is written while
    the acute drug state (``gate``) is on.
    """

    kernel: Literal["gamma", "diffexp"] = "gamma"
    gamma_shape: float = _field("gamma_shape")
    tau_k_hours: float = _field("tau_k_hours")
    tau_rise_hours: float = _field("tau_rise_hours")
    tau_decay_hours: float = _field("tau_decay_hours")
    saturation: float = _field("saturation")
    gate: bool = True
    infusion_minutes: float = _field("infusion_minutes")
    half_life_hours: float = _field("half_life_hours")
    dissociation_gone_by_hours: float = _field("dissociation_gone_by_hours")

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
    """Per-patient parameters (Normal on unconstrained scales) and group-level constants.

    Each field's default, range and source are in the parameter table (plasticity_rl.params).
    """

    logit_alpha0: NormalDist = _population("logit_alpha0")
    A: NormalDist = _population("A")
    logit_S0: NormalDist = _population("logit_S0")
    logit_alpha0_pos: NormalDist = _population("logit_alpha0_pos")
    logit_alpha0_neg: NormalDist = _population("logit_alpha0_neg")
    A_pos: NormalDist = _population("A_pos")
    A_neg: NormalDist = _population("A_neg")
    kappa: float = _field("kappa")
    epsilon: float = _field("epsilon")
    omega: float = _field("omega")
    alpha_T: float = _field("alpha_T")
    V0_offset: float = _field("V0_offset")


# --------------------------------------------------------------------------- environment


class Environment(_Strict):
    p_env: float = _field("p_env")
    bias: float = _field("bias")


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
    phi: float = _field("phi")
    missing_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


DEFAULT_VISIT_DAYS = (0.0, 7.0, 7.5, 8.0, 9.0, 10.0, 14.0, 21.0, 28.0, 35.0, 42.0, 49.0, 56.0)


class Visits(_Strict):
    enabled: bool = True
    # Default: DEFAULT_VISIT_DAYS up to the experiment's last day (filled in by Config).
    days: list[float] = list(DEFAULT_VISIT_DAYS)
    m_max: float = _field("m_max")
    noise_sd_baseline: float = _field("sigma_baseline")
    noise_sd_treated: float = _field("sigma_treated")
    acute_lift: float = _field("acute_lift")
    acute_onset_hours: float = _field("acute_onset_hours")
    acute_half_life_hours: float = _field("acute_half_life_hours")
    infusion_response: float = _field("infusion_response")
    infusion_response_half_life_days: float = _field("infusion_response_half_life_days")
    missing_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class Observations(_Strict):
    ema: Ema = Ema()
    visits: Visits = Visits()
    # What the trial logs besides the ratings. A depression trial records daily ratings,
    # clinician visits and session attendance, not the outcome of every everyday experience:
    # then the fit integrates the outcomes out (the "marginal" likelihood). Experience-sampling
    # data that logs every outcome can be fitted conditionally on them ("conditional").
    outcomes_recorded: bool = Field(
        default=True,
        description=(
            "whether the trial logs every everyday and corrective outcome: true fits the "
            "conditional likelihood, false integrates the outcomes out (the marginal likelihood)"
        ),
    )


class ModelSpec(_Strict):
    variant: str = Field(
        default="schema", description="the belief model (plasticity_rl.models.register adds one)"
    )
    # Parameters a fit holds at a value instead of estimating (name -> value on the parameter's
    # own scale; a patient-level one gives every patient that value). The simulator ignores it.
    fixed: dict[str, float] = Field(default_factory=dict, description="parameters a fit holds fixed")

    @field_validator("variant")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"got {value!r}; allowed: {sorted(MODELS)} (the registered variants)")
        return value

    @field_validator("fixed")
    @classmethod
    def _fixable(cls, fixed: dict[str, float]) -> dict[str, float]:
        problems = []
        for name, value in fixed.items():
            if name not in fittable():
                problems.append(f"{name!r} is not a fitted parameter; allowed: {fittable()}")
            elif (problem := param(name).check_value(value, name)) is not None:
                problems.append(problem)
        if problems:
            raise ValueError("\n".join(problems))
        return fixed


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


def _bounds_text(limits: dict[str, Any]) -> str:
    ops = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
    return " and ".join(f"{op} {limits[k]}" for k, op in ops if k in limits)


# A bound error reports only the bound it broke; a parameter's row knows the whole range.
_RANGE_OF_FIELD = {p.config: p.limits for p in PARAMS.values() if p.limits and p.level != "patient"}


def _allowed(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    typ = err["type"]
    full = _RANGE_OF_FIELD.get(_format_loc(err["loc"]))
    if full and any(k in ctx for k in ("ge", "gt", "le", "lt")):
        return "allowed: " + _bounds_text(full)
    if typ == "extra_forbidden":
        return "unknown key; check the spelling against the documented fields"
    if typ == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    if bounds := _bounds_text(ctx):
        return "allowed: " + bounds
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
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x}); save the config as UTF-8"],
            str(path),
        ) from None
    if "\x00" in text:
        raise ConfigError(["not a text file (it holds NUL bytes); a config is YAML text"], str(path))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from None
    except RecursionError:
        raise ConfigError(["not valid YAML: nested too deeply to read"], str(path)) from None
    return config_from_dict(data, str(path))


def bundled_config_path(name: str = "flagship") -> Path:
    """Path of a config shipped with the package (``configs/NAME.yaml``)."""
    here = Path(__file__).resolve().parent / "configs" / f"{name}.yaml"
    if here.is_file():
        return here
    raise ConfigError([f"no bundled config named {name!r}; see 'plasticity-rl configs'"])


def as_config(cfg: Config | str | Path) -> Config:
    """A config given as itself, a YAML path, or the name of a bundled config (``"timing_sweep"``)."""
    if isinstance(cfg, Config):
        return cfg
    path = Path(cfg)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        return load_config(path)
    return load_config(bundled_config_path(str(cfg)))


def config_from_yaml(text: str, source: str | None = None) -> Config:
    """A config from YAML text (e.g. the one a fit records in ``posterior.nc``): the inverse of
    :func:`config_to_yaml`."""
    return config_from_dict(yaml.safe_load(text), source)


def config_to_yaml(cfg: Config) -> str:
    """The fully resolved config (every default filled in), as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
