"""The live explorer: sliders in a local web page, curves from the package's own simulator.

``plasticity-rl explore`` serves one page on 127.0.0.1. Each slider move posts the settings
(:class:`Settings`) back here; :func:`settings_config` turns them into an ordinary config (the
same validation, the same error messages as a YAML file) and :func:`curves` computes what the
page draws with the functions the simulator and the fit use: the window from
:func:`plasticity_rl.plasticity.arm_inputs`, the beliefs' exact means over the unrecorded
everyday outcomes from :func:`plasticity_rl.models.moments.belief_moments`, the clinician score
from :func:`plasticity_rl.observe.visit_mean`. There is no second implementation of the model
in JavaScript: the page only draws the numbers it is sent.

What is drawn is a *typical patient*: the population means of the per-patient parameters, with
the everyday outcomes averaged out exactly (the moments are exact, not a Monte Carlo mean). A
cohort's mean differs from it a little, because the model is non-linear in A and α0; ``run``
simulates cohorts.

The page is self-contained (inline script and style, no fonts or libraries from anywhere) and
the server binds to 127.0.0.1 only, so it works offline and nothing leaves the machine.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import replace
from functools import cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plasticity_rl.config import (
    Config,
    ConfigError,
    as_config,
    config_from_dict,
    config_to_yaml,
    sweep_arm_name,
)
from plasticity_rl.models import get_model
from plasticity_rl.models.moments import belief_moments
from plasticity_rl.observe import beliefs_at_step_start, drug_state_effects, visit_mean
from plasticity_rl.params import belief_values, mean_outcome
from plasticity_rl.plasticity import arm_inputs
from plasticity_rl.plots.style import OKABE_ITO, drive_spans
from plasticity_rl.registry import MODELS
from plasticity_rl.schedule import Schedules, build_schedules

FIRST_DOSE_DAY = 7  # the flagship's: a week of baseline before the first infusion
DOSE_HOUR = 10.0
SESSION_HOUR = 14.0
MAX_DOSES = 8  # the sliders' most infusions: every arm is padded to it (one compiled shape)
MAX_N_C = 20  # the sliders' most corrective experiences per session (one compiled program)
TIMING_DELAYS = (-7, -3, -2, -1, 0, 1, 2, 3, 4, 5, 7, 10, 14)  # the bundled timing sweep's
ARM_COLORS = {
    "ketamine_cbt": OKABE_ITO[2],  # blue
    "ketamine": OKABE_ITO[1],  # orange
    "cbt_alone": OKABE_ITO[3],  # bluish green
    "placebo": OKABE_ITO[0],  # black
}


def _slider(step: float, unit: str, label: str, **extra: Any) -> dict[str, Any]:
    return {"json_schema_extra": {"step": step, "unit": unit, "label": label, **extra}}


class Settings(BaseModel):
    """What the explorer's sliders set. Ranges are the sliders' ranges; anything else is refused.

    Values the sliders do not set (φ, ε, ω, the observation model, ...) come from the base
    config. For the asymmetric variants, ``A`` and ``alpha0`` set the good-news rate (A+, α0+)
    and the bad-news rate keeps the base config's values.
    """

    model_config = ConfigDict(extra="forbid")

    variant: str = Field(default="schema", description="belief model (a registered variant)")
    infusions: int = Field(default=1, ge=1, le=MAX_DOSES, **_slider(1, "infusions", "infusions"))
    every_days: float = Field(default=3.5, ge=1.0, le=7.0, **_slider(0.5, "days", "days between infusions"))
    dose: float = Field(
        default=1.0, ge=0.0, le=2.0, **_slider(0.1, "× 0.5 mg/kg", "dose (0 = placebo infusion)")
    )
    A: float = Field(default=3.0, ge=-1.0, le=8.0, **_slider(0.1, "logit units", "ketamine boost A"))
    alpha0: float = Field(
        default=0.01, ge=0.001, le=0.2, **_slider(0.0005, "per experience", "baseline learning rate α0")
    )
    kappa: float = Field(
        default=0.0075, ge=0.0005, le=0.05, **_slider(0.0005, "per step", "relaxation to the schema κ")
    )
    tau_k_hours: float = Field(
        default=12.0, ge=3.0, le=48.0, **_slider(1.0, "hours", "window time constant τ_k (peak at 2 τ_k)")
    )
    bias: float = Field(default=0.3, ge=0.0, le=0.9, **_slider(0.05, "probability", "interpretation bias b"))
    therapy_delay_days: int = Field(
        default=1, ge=-7, le=21, **_slider(1, "days", "CBT starts, days after the first infusion")
    )
    sessions: int = Field(default=4, ge=0, le=12, **_slider(1, "sessions", "CBT sessions (daily)"))
    n_c: int = Field(
        default=6, ge=1, le=MAX_N_C, **_slider(1, "experiences", "corrective experiences per session")
    )
    p_c: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        **_slider(0.05, "probability", "chance a corrective experience goes well"),
    )


def _growth_names(variant: str) -> tuple[str, str]:
    """The population fields the A and α0 sliders set for this variant."""
    if MODELS[variant].asymmetric:
        return "A_pos", "logit_alpha0_pos"
    return "A", "logit_alpha0"


def settings_from_config(cfg: Config) -> Settings:
    """The sliders' starting values: the base config's population, window and environment."""
    boost, rate = _growth_names(cfg.model.variant)
    pop = cfg.population
    limits = Settings.model_fields

    def clipped(name: str, value: float) -> float:
        meta = {type(m).__name__: m for m in limits[name].metadata}
        lo, hi = meta["Ge"].ge, meta["Le"].le
        return float(min(max(value, lo), hi))

    return Settings(
        variant=cfg.model.variant,
        A=clipped("A", getattr(pop, boost).mean),
        alpha0=round(clipped("alpha0", 1.0 / (1.0 + math.exp(-getattr(pop, rate).mean))), 4),
        kappa=clipped("kappa", pop.kappa),
        tau_k_hours=clipped("tau_k_hours", cfg.plasticity.tau_k_hours),
        bias=clipped("bias", cfg.environment.bias),
    )


def _arms(s: Settings) -> list[dict[str, Any]]:
    doses = [{"day": FIRST_DOSE_DAY, "hour": DOSE_HOUR, "amount": s.dose, "repeat": s.infusions,
              "every_days": s.every_days}]  # fmt: skip
    placebo = [{**doses[0], "amount": 0.0}]
    session = {"day": FIRST_DOSE_DAY + s.therapy_delay_days, "hour": SESSION_HOUR, "n_c": s.n_c,
               "p_c": s.p_c, "repeat": s.sessions, "every_days": 1.0}  # fmt: skip
    drug = "placebo infusion" if s.dose == 0 else "ketamine"
    arms = [{"name": "ketamine", "label": f"{drug} alone", "doses": doses}]
    if s.sessions:
        arms.insert(
            0, {"name": "ketamine_cbt", "label": f"{drug} + CBT", "doses": doses, "sessions": [session]}
        )
        arms.append({"name": "cbt_alone", "label": "CBT alone (placebo infusion)", "doses": placebo,
                     "sessions": [session]})  # fmt: skip
    arms.append({"name": "placebo", "label": "placebo infusion", "doses": placebo})
    return arms


def settings_config(base: Config, s: Settings, *, timing: bool = False) -> Config:
    """The config the settings describe: the base config with the sliders' values and the
    explorer's arms (ketamine + CBT, ketamine alone, CBT alone, placebo). With ``timing``, a
    timing sweep of the same therapy block is added (the page's timing curve).

    Raises :class:`~plasticity_rl.config.ConfigError` (or pydantic's ``ValidationError`` for the
    settings) with the config's own message, e.g. an infusion past the experiment's last day.
    """
    if s.variant not in MODELS:
        raise ConfigError([f"variant: got {s.variant!r}; registered variants: {', '.join(MODELS)}"])
    last = base.experiment.days
    end_dose = FIRST_DOSE_DAY + (s.infusions - 1) * s.every_days + DOSE_HOUR / 24.0
    if end_dose >= last:
        raise ConfigError(
            [
                f"infusions, every_days: {s.infusions} infusions {s.every_days:g} days apart from day "
                f"{FIRST_DOSE_DAY} put the last on day {end_dose:.1f}, past the experiment's end (day "
                f"{last}); allowed: fewer infusions or a shorter interval"
            ]
        )
    end_session = FIRST_DOSE_DAY + s.therapy_delay_days + max(s.sessions - 1, 0) + SESSION_HOUR / 24.0
    if s.sessions and end_session >= last:
        raise ConfigError(
            [
                f"therapy_delay_days, sessions: CBT from day {FIRST_DOSE_DAY + s.therapy_delay_days} for "
                f"{s.sessions} days ends on day {end_session:.1f}, past the experiment's end (day {last}); "
                "allowed: an earlier start or fewer sessions"
            ]
        )
    data = base.model_dump(mode="json")
    boost, rate = _growth_names(s.variant)
    data["model"]["variant"] = s.variant
    data["experiment"]["name"] = f"{base.experiment.name}_explored"
    data["experiment"]["description"] = "Settings exported from plasticity-rl explore."
    data["population"][boost]["mean"] = s.A
    data["population"][rate]["mean"] = math.log(s.alpha0 / (1.0 - s.alpha0))
    data["population"]["kappa"] = s.kappa
    data["plasticity"]["kernel"] = "gamma"
    data["plasticity"]["tau_k_hours"] = s.tau_k_hours
    data["environment"]["bias"] = s.bias
    data["arms"] = _arms(s)
    data["timing_sweep"] = None
    if timing and s.sessions:
        arm = data["arms"][0]
        data["timing_sweep"] = {
            "dose": arm["doses"][0],
            "therapy": {**arm["sessions"][0], "day": 0},
            "delays_days": list(TIMING_DELAYS),
            "include_no_therapy": False,  # the arm "ketamine" is the same schedule
        }
    return config_from_dict(data, source="explore settings")


def export_yaml(base: Config, s: Settings) -> str:
    """The settings as a config YAML that ``plasticity-rl run`` accepts (no timing sweep)."""
    header = (
        "# Exported from plasticity-rl explore. Run it with:\n"
        "#   plasticity-rl run THIS_FILE.yaml\n"
        f"# Base config: {base.experiment.name}; the sliders set: "
        + ", ".join(f"{k}={v}" for k, v in s.model_dump().items())
        + "\n"
    )
    return header + config_to_yaml(settings_config(base, s))


# ----------------------------------------------------------------------------- the numbers


def typical_patient(cfg: Config) -> dict[str, float]:
    """The population means of the per-patient parameters, with the config's group values."""
    model = get_model(cfg.model.variant)
    p = {n: float(getattr(cfg.population, n).mean) for n in model.patient_params}
    return {**p, **belief_values(cfg)}


@cache
def _moments_program(variant: str, n_max: int):
    """One compiled belief-moment program per variant and session size; values are traced."""
    model = get_model(variant)

    @jax.jit
    def run(p, g_k, gate, mu_o, n_corr, p_c):
        m = belief_moments(model, p, g_k, gate, mu_o, n_corr, p_c, n_max)
        r = model.rates(p, g_k, gate)
        V0 = model.initial(p).V
        return m.mV, m.mS, r["alpha"], r.get("alpha_neg", r["alpha"]), V0

    return run


def _padded(sch: Schedules, n_doses: int) -> Schedules:
    """The schedules with room for at least ``n_doses`` doses per arm (padding: amount 0), so
    the explorer's programs keep one shape however many infusions the sliders ask for."""
    extra = n_doses - sch.dose_hours.shape[1]
    if extra <= 0:
        return sch
    pad = lambda a, value: np.pad(a, ((0, 0), (0, extra)), constant_values=value)  # noqa: E731
    return replace(
        sch,
        dose_hours=pad(sch.dose_hours, 0.0),
        dose_amounts=pad(sch.dose_amounts, 0.0),
        infusion_hours=pad(sch.infusion_hours, -np.inf),
    )


def _rounded(a, digits: int = 4) -> list[float]:
    return [round(float(x), digits) for x in np.asarray(a, np.float64)]


def curves(cfg: Config) -> dict[str, Any]:
    """What the page draws, for every arm of ``cfg`` (the explorer's arms, or any config's).

    Returns plain JSON-ready data: ``t_days``; per arm its α(t) (and α−(t) for the asymmetric
    variants), V, S (schema variants) and expected clinician score; the plasticity window's
    spans; and, if ``cfg`` has a timing sweep, V at follow-up per therapy delay.
    """
    start = time.perf_counter()
    model = get_model(cfg.model.variant)
    sch = _padded(build_schedules(cfg), MAX_DOSES)
    inputs = arm_inputs(cfg, sch)
    p = {k: jnp.float32(v) for k, v in typical_patient(cfg).items()}
    run = _moments_program(model.name, max(sch.n_c_max, MAX_N_C))
    mV, mS, alpha, alpha_neg, V0 = run(
        p, inputs.g_k, inputs.gate, jnp.float32(mean_outcome(cfg)), inputs.session_n, inputs.session_p
    )
    mV, mS = np.asarray(mV, np.float64), np.asarray(mS, np.float64)
    t_days = sch.t_hours / 24.0
    steps = np.arange(sch.n_steps)
    V_start = beliefs_at_step_start(mV, np.full(mV.shape[0], float(V0)), steps)
    D, E = drug_state_effects(cfg.observations.visits, sch, sch.t_hours)
    score = visit_mean(V_start, cfg.observations.visits.m_max, D, E)

    names = list(sch.arm_names)
    labels = {a.name: a.label or a.name for a in cfg.all_arms()}
    sweep_arms = {sweep_arm_name(d) for d in cfg.timing_sweep.delays_days} if cfg.timing_sweep else set()
    shown = [n for n in names if n not in sweep_arms]  # the timing curve draws the sweep's arms
    arms = []
    for n in shown:
        i = names.index(n)
        arms.append(
            {
                "name": n,
                "label": labels[n],
                "color": ARM_COLORS.get(n, OKABE_ITO[(len(arms) + 4) % len(OKABE_ITO)]),
                "alpha": _rounded(alpha[i], 6),
                "alpha_neg": _rounded(alpha_neg[i], 6) if model.asymmetric else None,
                "V": _rounded(mV[i]),
                "S": _rounded(mS[i]) if model.has_schema else None,
                "score": _rounded(score[i], 2),
            }
        )
    g = np.asarray(inputs.g_k, np.float64).max(axis=0)
    out: dict[str, Any] = {
        "config": cfg.experiment.name,
        "variant": model.name,
        "t_days": _rounded(t_days, 4),
        "window": [list(span) for span in drive_spans(t_days, g, 1.0 / cfg.experiment.steps_per_day)],
        "arms": arms,
        "timing": None,
    }
    follow = cfg.followup_step
    if cfg.timing_sweep is not None and "ketamine" in names:
        delays = list(cfg.timing_sweep.delays_days)
        V_f = [float(mV[names.index(sweep_arm_name(d)), follow]) for d in delays]
        out["timing"] = {
            "delays_days": [float(d) for d in delays],
            "V_followup": _rounded(V_f),
            "V_no_therapy": round(float(mV[names.index("ketamine"), follow]), 4),
            "followup_day": cfg.followup_day,
            "best_delay_days": float(delays[int(np.argmax(V_f))]),
        }
    out["summary"] = {
        a["name"]: {"V_followup": a["V"][follow], "score_followup": a["score"][follow]} for a in arms
    }
    out["followup_day"] = cfg.followup_day
    out["elapsed_ms"] = round(1000.0 * (time.perf_counter() - start), 1)
    return out


def explore_curves(base: Config, s: Settings) -> dict[str, Any]:
    """The page's data for these settings: :func:`curves` of :func:`settings_config` with timing."""
    return curves(settings_config(base, s, timing=True))


def slider_spec(base: Config) -> dict[str, Any]:
    """The controls the page builds, from :class:`Settings` (ranges in one place) and the base."""
    start = settings_from_config(base).model_dump()
    schema = Settings.model_json_schema()["properties"]
    sliders = []
    for name, prop in schema.items():
        if name == "variant":
            continue
        sliders.append(
            {
                "name": name,
                "label": prop["label"],
                "unit": prop["unit"],
                "min": prop["minimum"],
                "max": prop["maximum"],
                "step": prop["step"],
                "value": start[name],
                "integer": prop["type"] == "integer",
            }
        )
    return {
        "config": base.experiment.name,
        "variants": list(MODELS),
        "variant": start["variant"],
        "sliders": sliders,
        "days": base.experiment.days,
    }


# ----------------------------------------------------------------------------- the server


def page_html() -> str:
    return files("plasticity_rl").joinpath("explore_page.html").read_text(encoding="utf-8")


def error_text(exc: Exception) -> str:
    """One readable message naming the field, the value and what is allowed."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            field = ".".join(str(x) for x in err["loc"]) or "settings"
            parts.append(f"{field}: got {err.get('input')!r}; {err['msg']}")
        return "; ".join(parts)
    if isinstance(exc, ConfigError):
        return "; ".join(exc.problems)
    return str(exc)


def make_server(base: Config, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """An HTTP server for the explorer on ``host:port`` (port 0: any free port)."""
    lock = threading.Lock()  # one computation at a time: the compiled programs are shared
    page = page_html().encode()
    spec = json.dumps(slider_spec(base)).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: the CLI prints the address once
            pass

        def _send(self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # The page may load nothing from anywhere but this server.
            self.send_header("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                             "script-src 'self' 'unsafe-inline'; img-src 'self' data:")  # fmt: skip
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif self.path == "/api/spec":
                self._send(HTTPStatus.OK, spec, "application/json")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length", 0))
                settings = Settings.model_validate(json.loads(self.rfile.read(length) or b"{}"))
                with lock:
                    if self.path == "/api/curves":
                        return self._json(HTTPStatus.OK, explore_curves(base, settings))
                    if self.path == "/api/config.yaml":
                        body = export_yaml(base, settings).encode()
                        disposition = {"Content-Disposition": 'attachment; filename="explored.yaml"'}
                        return self._send(HTTPStatus.OK, body, "text/yaml; charset=utf-8", disposition)
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
            except (ValidationError, ConfigError, ValueError) as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": error_text(exc)})

    return ThreadingHTTPServer((host, port), Handler)


def warm_up(base: Config) -> float:
    """Compile the explorer's programs once (seconds taken), so the first slider move is fast."""
    start = time.perf_counter()
    explore_curves(base, settings_from_config(base))
    return time.perf_counter() - start


def open_explorer(config: Config | str = "flagship", port: int = 8765) -> tuple[ThreadingHTTPServer, str]:
    """Start the explorer in a background thread; returns the server and its address."""
    base = as_config(config)
    server = make_server(base, port=port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"
