"""Experiment configuration: YAML in, validated pydantic objects out.

Every value a user can set lives here, with its default, its allowed range and a description
(for the parameters of the model, read from the parameter table, with their sources).
:func:`config_markdown` turns the models into the reference in ``docs/config.md``. Validation
errors are re-raised as :class:`ConfigError`, whose message names the field path, the bad
value and what is allowed, one line per problem.
"""

from __future__ import annotations

import inspect
import math
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from plasticity_rl.params import PARAMS, fittable, param
from plasticity_rl.registry import MODELS

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Hour = Annotated[float, Field(ge=0.0, lt=24.0)]
Day = Annotated[int, Field(ge=0)]


def _param_text(name: str, per_patient: str = "") -> str:
    """A parameter's row in words: meaning [unit], then its source (the table says each once)."""
    p = param(name)
    source = f". Source: {p.source}" if p.source else ""
    return f"{p.meaning} [{p.unit or 'no unit'}]{per_patient}{source}"


def _field(name: str, rule: str = ""):
    """A config field whose default, allowed range and description come from the parameter table.

    ``rule``: what a validator checks beyond the range, for the reference (see :func:`_rule`).
    """
    p = param(name)
    return Field(default=p.default, description=_param_text(name), **p.limits, **_rule(rule))


def _population(name: str):
    p = param(name)
    return Field(
        default_factory=lambda: NormalDist(mean=p.default, sd=p.default_sd),
        description=_param_text(name, per_patient="; per patient Normal(mean, sd) on this scale"),
    )


def _rule(rule: str) -> dict[str, Any]:
    """``Field`` keywords recording a rule a validator checks beyond the field's own constraints.

    The rule is stated in the field's JSON schema (``allowed``) and in the reference's
    ``allowed`` column; it changes nothing in validation.
    """
    return {"json_schema_extra": {"allowed": rule}} if rule else {}


_IN_EXPERIMENT = "each time day + hour/24 (every repeat) < `experiment.days`"


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
    """The trial as a whole: its name, seed, length, time grid and size."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$",
        min_length=1,
        max_length=80,
        description="the experiment's name: it names the run folder (`runs/NAME-<timestamp>/`)",
    )
    seed: int = Field(
        ge=0,
        lt=2**32,
        description=(
            "random seed of the simulation (and of the fits `plasticity-rl run` makes): "
            "the same config and seed give the same results"
        ),
    )
    days: int = Field(
        default=56,
        ge=1,
        le=3650,
        description="length of the trial [days]: every dose, session and visit falls inside it",
    )
    # One everyday experience every waking two hours.
    steps_per_day: int = Field(
        default=8,
        ge=1,
        le=96,
        description=(
            "time steps per day, one everyday experience each [steps per day]; "
            "8 = one everyday experience every waking two hours"
        ),
    )
    patients_per_arm: int = Field(
        default=40,
        ge=1,
        le=1_000_000,
        description="patients simulated in each arm [patients]; an arm's `patients` overrides it",
    )
    description: str = Field(default="", description="free text about the experiment, shown in the report")


# --------------------------------------------------------------------------- plasticity


class Plasticity(_Strict):
    """The plasticity window (kernel, saturation) and the acute gate; each value's source is in the parameter table.

    gamma: K(tau) = (tau/(n tau_k))^n exp(n - tau/tau_k), peak at n tau_k = 24 h by default;
    diffexp: the long-window alternative (the human window's length is unknown). Ketamine given
    just before extinction training impaired extinction in rats, so no learning is written while
    the acute drug state (``gate``) is on.
    """

    kernel: Literal["gamma", "diffexp"] = Field(
        default="gamma",
        description=(
            "shape of the plasticity window K after each dose: `gamma` (peak at gamma_shape x "
            "tau_k_hours, 24 h by default) or `diffexp` (a difference of exponentials: the "
            "long-window alternative, as the human window's length is unknown)"
        ),
    )
    gamma_shape: float = _field("gamma_shape")
    tau_k_hours: float = _field("tau_k_hours")
    tau_rise_hours: float = _field("tau_rise_hours", rule="< `tau_decay_hours` with the diffexp kernel")
    tau_decay_hours: float = _field("tau_decay_hours", rule="> `tau_rise_hours` with the diffexp kernel")
    saturation: float = _field("saturation")
    gate: bool = Field(
        default=True,
        description=(
            "whether the acute drug state gates learning: true writes no learning while the "
            "patient is dissociated (ketamine given just before extinction training impaired "
            "extinction in rats); false: learning goes on while dissociated too"
        ),
    )
    infusion_minutes: float = _field("infusion_minutes")
    half_life_hours: float = _field("half_life_hours")
    dissociation_gone_by_hours: float = _field(
        "dissociation_gone_by_hours", rule="> the end of the infusion (`infusion_minutes` / 60)"
    )

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

    mean: float = Field(
        allow_inf_nan=False,
        description="population mean of the parameter, on its own scale (the parameter's unit)",
        **_rule("a finite number"),
    )
    sd: float = Field(
        ge=0.0,
        le=10.0,
        description="SD between patients, on the same scale; 0 gives every patient the mean",
    )


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
    """The everyday world: how often experiences go well, and how a patient perceives them."""

    p_env: float = _field("p_env")
    bias: float = _field("bias")


# --------------------------------------------------------------------------- arms


class Dose(_Strict):
    """An infusion (or a block of ``repeat`` infusions ``every_days`` apart)."""

    day: Day = Field(description="day of the (first) infusion, from day 0 [days]", **_rule(_IN_EXPERIMENT))
    hour: Hour = Field(default=10.0, description="hour of the day the infusion starts [hours]; 10 = 10:00")
    # 1.0 = 0.5 mg/kg IV over 40 min. 0.0 = a placebo infusion: the non-specific infusion
    # response E(t) but no drug state and no plasticity.
    amount: float = Field(
        default=1.0,
        ge=0.0,
        le=4.0,
        description=(
            "dose relative to a standard infusion [relative dose]: 1 = 0.5 mg/kg IV over 40 min; "
            "0 = a placebo infusion (the non-specific infusion response E(t), but no drug state "
            "and no plasticity)"
        ),
    )
    repeat: int = Field(default=1, ge=1, le=1000, description="infusions in the block [infusions]")
    every_days: float = Field(
        default=1.0, gt=0.0, le=365.0, description="interval between the block's infusions [days]"
    )

    def times_days(self) -> list[float]:
        start = self.day + self.hour / 24.0
        return [start + i * self.every_days for i in range(self.repeat)]


class Session(_Strict):
    """A therapy session (or a block of ``repeat`` sessions ``every_days`` apart)."""

    day: Day = Field(description="day of the (first) session, from day 0 [days]", **_rule(_IN_EXPERIMENT))
    hour: Hour = Field(default=14.0, description="hour of the day of the session [hours]; 14 = 14:00")
    n_c: int = Field(  # stored as int8
        default=6, ge=1, le=100, description="corrective experiences per session [experiences]"
    )
    p_c: Probability = Field(
        default=0.9, description="chance each corrective experience goes well [probability]"
    )
    repeat: int = Field(default=1, ge=1, le=1000, description="sessions in the block [sessions]")
    every_days: float = Field(
        default=1.0, gt=0.0, le=365.0, description="interval between the block's sessions [days]"
    )
    attendance: Probability = Field(
        default=1.0,
        description=(
            "chance a patient attends each session [probability]; a missed session delivers nothing"
        ),
    )

    def times_days(self) -> list[float]:
        start = self.day + self.hour / 24.0
        return [start + i * self.every_days for i in range(self.repeat)]


class Arm(_Strict):
    """One arm of the trial: the infusions and the therapy sessions every patient in it is scheduled."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9_+.-]+$",
        min_length=1,
        max_length=60,
        description="the arm's name, as the tables' `arm` column gives it",
        **_rule("unique among the arms (those of a timing sweep included)"),
    )
    label: str = Field(
        default="", description="a human-readable label for figures and the report (empty: the name)"
    )
    doses: list[Dose] = Field(
        default=[],
        description="the arm's infusions (ketamine, or placebo with amount 0), one block per entry",
        **_rule("an arm needs at least one dose or session"),
    )
    sessions: list[Session] = Field(
        default=[],
        description="the arm's therapy (CBT) sessions, one block per entry",
        **_rule("an arm needs at least one dose or session"),
    )
    patients: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="patients in this arm [patients]; null: `experiment.patients_per_arm`",
    )

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

    dose: Dose = Field(description="the infusion every arm of the sweep gets")
    therapy: Session = Field(
        description=(
            "the therapy block; its `day` is ignored (but must be given): the block starts on "
            "the dose's day + delay, at the therapy's `hour`"
        )
    )
    delays_days: list[float] = Field(
        min_length=1,
        description=(
            "therapy delays after the infusion day [days]: one arm per delay, named `delay+Nd` "
            "(0: the infusion day itself, 1: the next day; negative: therapy before the infusion)"
        ),
    )
    include_no_therapy: bool = Field(
        default=True, description="also add an arm `no_therapy`: the dose, and no therapy"
    )
    followup_day: int | None = Field(
        default=None,
        description=(
            "the day the sweep's outcome is read: V at the end of this day [days]; "
            "null: `experiment.days`, the last day"
        ),
        **_rule("1 to `experiment.days`"),
    )


# --------------------------------------------------------------------------- observations


class Ema(_Strict):
    """The daily EMA self-rating of V at the end of each day, in (0, 1)."""

    enabled: bool = Field(
        default=True, description="whether the trial records the daily self-rating (simulated and fitted)"
    )
    phi: float = _field("phi")
    missing_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0,
        description="share of daily ratings not recorded, at random [probability]; kept as missing rows",
    )


DEFAULT_VISIT_DAYS = (0.0, 7.0, 7.5, 8.0, 9.0, 10.0, 14.0, 21.0, 28.0, 35.0, 42.0, 49.0, 56.0)


class Visits(_Strict):
    """Clinician visits: a MADRS-like score, 0-60 (lower is better), M = m_max (1 - V) - D(t) - E(t) + noise."""

    enabled: bool = Field(
        default=True, description="whether the trial records clinician visits (simulated and fitted)"
    )
    # Default: DEFAULT_VISIT_DAYS up to the experiment's last day (filled in by Config).
    days: list[float] = Field(
        default=list(DEFAULT_VISIT_DAYS),
        description=(
            "times of the visits [days; 6.9 = late on day 6]: each sees V at the start of the "
            "step it lands on. Unset: the default days up to `experiment.days`"
        ),
        **_rule("each 0 to `experiment.days`"),
    )
    m_max: float = _field("m_max")
    noise_sd_baseline: float = _field("sigma_baseline")
    noise_sd_treated: float = _field("sigma_treated")
    acute_lift: float = _field("acute_lift")
    acute_onset_hours: float = _field("acute_onset_hours")
    acute_half_life_hours: float = _field("acute_half_life_hours")
    infusion_response: float = _field("infusion_response")
    infusion_response_half_life_days: float = _field("infusion_response_half_life_days")
    missing_rate: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0,
        description="share of visit scores not recorded, at random [probability]; kept as missing rows",
    )


class Observations(_Strict):
    """What the trial measures: the two channels that see the beliefs, and whether outcomes are logged."""

    ema: Ema = Field(default=Ema(), description="the daily self-rating (EMA)")
    visits: Visits = Field(default=Visits(), description="the clinician visits")
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
    """The belief model that is simulated and fitted, and the parameters a fit holds fixed."""

    variant: str = Field(
        default="schema",
        description=(
            "the belief model: bundled are `rw`, `rw_asym`, `schema`, `schema_ungated` and "
            "`schema_asym` (docs/model.md); `plasticity_rl.models.register` adds one"
        ),
        **_rule("a registered variant"),
    )
    # Parameters a fit holds at a value instead of estimating (name -> value on the parameter's
    # own scale; a patient-level one gives every patient that value). The simulator ignores it.
    fixed: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "parameters a fit holds at a value instead of estimating: name -> value on the "
            "parameter's own scale (`plasticity-rl params`); a patient-level one gives every "
            "patient that value; the simulator ignores it"
        ),
        **_rule(
            "names: " + ", ".join(f"`{n}`" for n in fittable()) + "; each value finite and inside the "
            "parameter's support"
        ),
    )

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
    """A whole config file: every section below, and the arms (or a timing sweep)."""

    experiment: Experiment = Field(description="the trial's name, seed, length and size")
    model: ModelSpec = Field(
        default=ModelSpec(), description="the belief model, and the parameters a fit holds fixed"
    )
    plasticity: Plasticity = Field(
        default=Plasticity(), description="the plasticity window and the acute gate"
    )
    population: Population = Field(
        default=Population(),
        description="the per-patient parameters' population distributions and the group-level constants",
    )
    environment: Environment = Field(
        default=Environment(),
        description="how often everyday experiences go well, and how they are perceived",
    )
    observations: Observations = Field(
        default=Observations(), description="what the trial measures: daily self-ratings and clinician visits"
    )
    arms: list[Arm] = Field(
        default=[],
        description="the trial's arms, each with its doses and sessions",
        **_rule("at least one arm, or a `timing_sweep`; names unique"),
    )
    timing_sweep: TimingSweep | None = Field(
        default=None,
        description="a sweep of therapy delays after one infusion: expands into arms added after `arms`",
    )

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

    @property
    def followup_step(self) -> int:
        """The last step of the follow-up day: V after it is the belief at follow-up."""
        return self.followup_day * self.experiment.steps_per_day - 1


def sweep_arm_name(delay: float) -> str:
    return f"delay{delay:+g}d"


def _delay_label(delay: float) -> str:
    """How a timing-sweep arm reads in figures: "therapy 3 days before the infusion", ..."""
    if delay == 0:
        return "therapy from the infusion day"
    days = f"{abs(delay):g} day{'s' * (abs(delay) != 1)}"
    return f"therapy from {days} {'after' if delay > 0 else 'before'} the infusion"


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
                label=_delay_label(delay),
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
        return _unknown_key_text(err["loc"])
    if typ == "literal_error":
        return f"allowed: {ctx.get('expected')}"
    if bounds := _bounds_text(ctx):
        return "allowed: " + bounds
    return err["msg"]


def _fields_at(loc: tuple) -> list[str] | None:
    """The field names of the model that holds the key at ``loc`` (None if it cannot be told)."""
    model: Any = Config
    for key in loc[:-1]:
        if isinstance(key, int):
            continue  # an entry of a list: the list's model is already taken
        info = model.model_fields.get(key) if isinstance(key, str) else None
        if info is None:
            return None
        model, _ = _model_in(info.annotation)
        if model is None:
            return None
    return list(model.model_fields)


def _unknown_key_text(loc: tuple) -> str:
    """'unknown key; did you mean 'seed'?' and the fields allowed there (docs/config.md lists them)."""
    import difflib

    fields = _fields_at(loc)
    if not fields:
        return "unknown key (docs/config.md lists every field)"
    near = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return f"unknown key; {hint}allowed here: {', '.join(fields)}"


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


# --------------------------------------------------------------------------- reference


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The config model a field holds (optional or not), and whether it holds a list of them."""
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [a for a in get_args(annotation) if a is not type(None)]
        annotation = kept[0] if len(kept) == 1 else None
    if get_origin(annotation) is list:
        inner, _ = _model_in(get_args(annotation)[0])
        return inner, inner is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def config_sections() -> list[tuple[type[BaseModel], list[str]]]:
    """Every model reachable from :class:`Config`, in the order the models name them, with the
    YAML paths it sits at (``""``: the top level; ``arms[]``: each entry of ``arms``)."""
    paths: dict[type[BaseModel], list[str]] = {}

    def walk(model: type[BaseModel], path: str) -> None:
        if model in paths:
            paths[model].append(path)
            return
        paths[model] = [path]
        for name, info in model.model_fields.items():
            sub, is_list = _model_in(info.annotation)
            if sub is not None:
                walk(sub, (f"{path}.{name}" if path else name) + ("[]" if is_list else ""))

    walk(Config, "")
    return list(paths.items())


_PLURAL = {"number": "numbers", "integer": "integers", "string": "strings", "mapping": "mappings"}


def _type_text(annotation: Any) -> str:
    """A field's type in YAML words."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_text(args[0])
    if origin in (Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        text = " or ".join(_type_text(a) for a in kept)
        return text + " or null" if len(kept) < len(args) else text
    if origin is Literal:
        return "string" if all(isinstance(a, str) for a in args) else "value"
    if origin is list:
        inner = _type_text(args[0])
        return f"list of {_PLURAL.get(inner, inner)}"
    if origin is dict:
        return f"mapping of {_type_text(args[0])} to {_type_text(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _number(x: Any) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


def _tidy(value: Any) -> Any:
    """A JSON value with whole floats written as integers (YAML reads 10 for a float field)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items()}
    return value


def _default_text(info: FieldInfo) -> str:
    """A field's default as written in YAML (``required`` if it has none)."""
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        try:
            if value == type(value)():
                return "each field's default"
        except ValidationError:
            pass
    text = yaml.safe_dump(
        _tidy(to_jsonable_python(value)), default_flow_style=True, sort_keys=False, width=10**6
    )
    return "`" + text.removesuffix("...\n").strip() + "`"


def _allowed_text(prop: dict[str, Any]) -> str:
    """What a field allows, from its JSON schema: bounds, choices, pattern, lengths, and the
    rules a validator checks (``allowed``)."""
    branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
    base = branches[0] if len(branches) == 1 else {}
    parts = []
    ops = (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<"))
    if bounds := [f"{op} {_number(base[k])}" for k, op in ops if k in base]:
        parts.append(" and ".join(bounds))
    if "enum" in base:
        parts.append("one of " + ", ".join(f"`{v}`" for v in base["enum"]))
    if "const" in base:
        parts.append(f"`{base['const']}`")
    if "pattern" in base:
        parts.append(f"matches `{base['pattern']}`")
    if "minLength" in base or "maxLength" in base:
        parts.append(f"{base.get('minLength', 0)} to {base.get('maxLength', 'any number of')} characters")
    if "minItems" in base:
        parts.append(f"at least {base['minItems']} item{'s' if base['minItems'] != 1 else ''}")
    if "maxItems" in base:
        parts.append(f"at most {base['maxItems']} items")
    if prop.get("allowed"):
        parts.append(prop["allowed"])
    return "; ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def config_markdown() -> str:
    """The reference of every config field, as Markdown (``docs/config.md`` holds it; a test
    keeps the two the same).

    One section per model reachable from :class:`Config`, headed by the YAML paths it sits at,
    with a row per field in the model's order: field, type, default (as written in YAML),
    allowed (the field's constraints and the rules its validators check) and meaning.
    """
    schema = Config.model_json_schema()
    out = []
    for model, paths in config_sections():
        props = (schema if model is Config else schema["$defs"][model.__name__])["properties"]
        heading = ", ".join(f"`{p}`" for p in paths if p) or "top level"
        out += [f"## {heading}", ""]
        if model.__doc__:
            intro = inspect.cleandoc(model.__doc__).split("\n\n")[0]
            out += [_cell(intro.replace("``", "`")), ""]
        out += ["| field | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for name, info in model.model_fields.items():
            kind = _type_text(info.annotation)
            sub, is_list = _model_in(info.annotation)
            if sub is not None:  # the section that documents it
                kind += f" (see `{f'{paths[0]}.' if paths[0] else ''}{name}{'[]' if is_list else ''}`)"
            cells = [
                f"`{name}`",
                kind,
                _default_text(info),
                _allowed_text(props[name]),
                info.description or "",
            ]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    return "\n".join(out)
