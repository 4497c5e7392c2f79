"""Cohort simulation: patients in arms, vmap over patients, scan over time.

Outcomes do not depend on beliefs (the world does not read the patient's mind), so a cohort is
simulated in three pure stages: sample who experiences what, run the belief recurrence
(:func:`plasticity_rl.models.run_beliefs`, the same function the likelihood uses), then observe.
All randomness flows from the config's seed through named streams of explicit PRNG keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl.config import Config
from plasticity_rl.models import BeliefModel, Trajectory, get_model, run_beliefs
from plasticity_rl.plasticity import KernelParams, acute_gate, arm_drive
from plasticity_rl.schedule import Schedules, build_schedules

# Named random streams: adding a stream never changes the draws of another.
STREAMS = {"params": 1, "everyday": 2, "corrective": 3, "attendance": 4, "ema": 5, "visits": 6}


def stream_key(seed: int, name: str) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), STREAMS[name])


class ArmInputs(NamedTuple):
    """Per-arm, per-step inputs to the belief recurrence, stacked along axis 0 (arms)."""

    g_k: jax.Array  # saturated plasticity drive g(k_j)
    gate: jax.Array  # acute drug state
    session_n: jax.Array  # corrective experiences scheduled at the step
    session_p: jax.Array
    session_attend: jax.Array


class Experiences(NamedTuple):
    """What each patient experienced: the inputs a fit conditions on."""

    everyday: jax.Array  # (N, T) int8 in {0, 1}
    corrective: jax.Array  # (N, T, n_max) int8 in {0, 1}; only the first n_corr count
    n_corr: jax.Array  # (N, T) int8 delivered corrective experiences (0 if none or missed)
    attended: jax.Array  # (N, T) bool, True where a scheduled session was attended


def kernel_params(cfg: Config) -> KernelParams:
    pl = cfg.plasticity
    return KernelParams(
        kind=0 if pl.kernel == "gamma" else 1,
        gamma_shape=pl.gamma_shape,
        tau_k_hours=pl.tau_k_hours,
        tau_rise_hours=pl.tau_rise_hours,
        tau_decay_hours=pl.tau_decay_hours,
    )


def arm_inputs(cfg: Config, sch: Schedules, kp: KernelParams | None = None) -> ArmInputs:
    """The plasticity window and session schedule of every arm on the step grid."""
    kp = kernel_params(cfg) if kp is None else kp
    pl = cfg.plasticity
    t = jnp.asarray(sch.t_hours, jnp.float32)
    dh, da = jnp.asarray(sch.dose_hours, jnp.float32), jnp.asarray(sch.dose_amounts, jnp.float32)
    if pl.gate:
        gate = jax.vmap(
            lambda h, a: acute_gate(t, sch.step_hours, h, a, pl.infusion_minutes / 60.0, pl.half_life_hours,
                                    pl.dissociation_gone_by_hours)
        )(dh, da)
    else:
        gate = jnp.zeros((dh.shape[0], t.shape[0]), jnp.float32)
    return ArmInputs(
        g_k=arm_drive(t, dh, da, kp, pl.saturation),
        gate=gate,
        session_n=jnp.asarray(sch.session_n, jnp.int32),
        session_p=jnp.asarray(sch.session_p, jnp.float32),
        session_attend=jnp.asarray(sch.session_attend, jnp.float32),
    )


def arm_of_patients(cfg: Config) -> np.ndarray:
    arms = cfg.all_arms()
    return np.concatenate([np.full(cfg.patients_in(a), i, dtype=np.int32) for i, a in enumerate(arms)])


def group_values(cfg: Config) -> dict[str, float]:
    pop, env = cfg.population, cfg.environment
    return {"mu_o": env.p_env * (1.0 - env.bias), "kappa": pop.kappa, "epsilon": pop.epsilon, "omega": pop.omega, "alpha_T": pop.alpha_T, "V0_offset": pop.V0_offset}


def sample_params(key, cfg: Config, model: BeliefModel, n: int) -> dict[str, jax.Array]:
    """Per-patient parameters from the population; group parameters broadcast to (n,)."""
    out = {}
    for i, name in enumerate(model.patient_params):
        dist = getattr(cfg.population, name)
        z = jax.random.normal(jax.random.fold_in(key, i), (n,))
        out[name] = dist.mean + dist.sd * z
    for name, value in group_values(cfg).items():
        out[name] = jnp.full((n,), value, jnp.float32)
    return out


BLOCK = 256  # patients per block: a block's arrays stay in cache (benchmarks/README.md)


def _devices_for(n_patients: int) -> int:
    """How many local devices to split a cohort over: all of them once each gets a full block.

    With several host devices (``numpyro.set_host_device_count``, as the CLI sets), each runs
    its share of the patients on its own thread, so a 2-core machine uses both cores. Patients
    are independent, so the numbers are the same, bit for bit, however many devices there are.
    """
    D = jax.local_device_count()
    return D if D > 1 and hasattr(jax, "shard_map") and n_patients >= D * BLOCK else 1


@lru_cache(maxsize=None)
def _patient_mesh(n_devices: int):
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("patients",))
    return mesh, PartitionSpec("patients"), PartitionSpec()


def _everyday_outcomes(k_everyday, patient_ids, p_everyday, T: int):
    """(len(patient_ids), T) int8 Bernoulli outcomes; patient i's come from ``fold_in(k, i)``."""

    def patient_everyday(i):
        return jax.random.bernoulli(jax.random.fold_in(k_everyday, i), p_everyday, (T,)).astype(jnp.int8)

    # Batched so each batch's random bits stay in cache (one dense (N, T) draw is several times slower).
    return jax.lax.map(patient_everyday, patient_ids, batch_size=min(BLOCK, patient_ids.shape[0]))


_everyday_on_one_device = jax.jit(_everyday_outcomes, static_argnames=("T",))


@lru_cache(maxsize=None)
def _everyday_split(n_devices: int, T: int):
    """_everyday_outcomes with the patients split over ``n_devices`` local devices."""
    mesh, split, whole = _patient_mesh(n_devices)
    body = jax.shard_map(lambda k, ids, p: _everyday_outcomes(k, ids, p, T), mesh=mesh,
                         in_specs=(whole, split, whole), out_specs=split, check_vma=False)
    return jax.jit(body)


@partial(jax.jit, static_argnames=("n_max",))
def _session_experiences(k_corrective, k_attend, arm_index, inputs: ArmInputs, n_max: int):
    """Attendance and corrective outcomes, drawn only at steps where some arm has a session."""
    N, T = arm_index.shape[0], inputs.g_k.shape[1]
    has_session = jnp.any(inputs.session_n > 0, axis=0)  # (T,), over arms
    session_steps = jnp.nonzero(has_session, size=T, fill_value=0)[0]

    def one_session_step(i, carry):
        corrective, n_corr, attended = carry
        t = session_steps[i]
        scheduled = inputs.session_n[arm_index, t]
        p_attend, p_c = inputs.session_attend[arm_index, t], inputs.session_p[arm_index, t]
        went = (scheduled > 0) & jax.random.bernoulli(jax.random.fold_in(k_attend, t), p_attend)
        cs = jax.random.bernoulli(jax.random.fold_in(k_corrective, t), p_c[:, None], (N, n_max))
        cs = cs.astype(jnp.int8)
        return (
            jax.lax.dynamic_update_slice(corrective, cs[:, None, :], (0, t, 0)),
            jax.lax.dynamic_update_slice(n_corr, jnp.where(went, scheduled, 0).astype(jnp.int8)[:, None], (0, t)),
            jax.lax.dynamic_update_slice(attended, went[:, None], (0, t)),
        )

    empty = (jnp.zeros((N, T, n_max), jnp.int8), jnp.zeros((N, T), jnp.int8), jnp.zeros((N, T), bool))
    return jax.lax.fori_loop(0, jnp.sum(has_session), one_session_step, empty)


def sample_experiences(k_everyday, k_corrective, k_attend, arm_index, inputs: ArmInputs, p_everyday, n_max: int) -> Experiences:
    """Everyday outcomes ~ Bernoulli(p_env (1 - b)); corrective ~ Bernoulli(p_c); attendance.

    Draws: patient i's everyday outcomes come from ``fold_in(k_everyday, i)``, so they do not
    depend on the cohort's size, nor on how many devices draw them (with several local devices
    each draws its share of the patients, the most expensive part of a simulation). Attendance
    and corrective outcomes are drawn only at steps where some arm schedules a session, from
    ``fold_in(k, step)``. Everywhere else ``corrective``, ``n_corr`` and ``attended`` are 0.
    """
    N, T = int(arm_index.shape[0]), int(inputs.g_k.shape[1])
    D = _devices_for(N)
    if D > 1:
        ids = jnp.arange(N + (-N) % D, dtype=jnp.uint32)  # padded patients' rows are dropped
        everyday = _everyday_split(D, T)(k_everyday, ids, jnp.float32(p_everyday))[:N]
    else:
        everyday = _everyday_on_one_device(k_everyday, jnp.arange(N, dtype=jnp.uint32), jnp.float32(p_everyday), T=T)
    return Experiences(everyday, *_session_experiences(k_corrective, k_attend, arm_index, inputs, n_max=n_max))


def scheduled_session_steps(inputs: ArmInputs) -> np.ndarray:
    """(K,) int32: the steps where some arm schedules a session (host-side: K fixes shapes)."""
    return np.flatnonzero(np.any(np.asarray(inputs.session_n) > 0, axis=0)).astype(np.int32)


@partial(jax.jit, static_argnames=("model",))
def cohort_beliefs(model: BeliefModel, params, arm_index, inputs: ArmInputs, exp: Experiences,
                   session_steps) -> Trajectory:
    """:func:`run_beliefs` for every patient, each reading its arm's plasticity window.

    Patients go through ``run_beliefs`` in blocks of ``BLOCK`` (the last block overlaps the one
    before it rather than being padded, so nothing is copied), one scan over time per block with
    a batched carry: the same function the likelihood calls, organised so each block's arrays
    stay in cache. ``session_steps``: :func:`scheduled_session_steps`.
    """
    N = arm_index.shape[0]
    B = min(BLOCK, N)

    def one_block(i, out):
        start = jnp.minimum(i * B, N - B)  # the last block may overlap the one before: same values
        take = lambda x: jax.lax.dynamic_slice_in_dim(x, start, B)  # noqa: E731
        p, arm = jax.tree.map(take, params), take(arm_index)
        traj = run_beliefs(model, p, inputs.g_k[arm], inputs.gate[arm], take(exp.everyday),
                           take(exp.corrective), take(exp.n_corr), session_steps=session_steps)
        return jax.tree.map(lambda o, t: jax.lax.dynamic_update_slice_in_dim(o, t, start, 0), out, traj)

    first = jax.eval_shape(lambda: run_beliefs(model, jax.tree.map(lambda v: v[:B], params),
                                               inputs.g_k[arm_index[:B]], inputs.gate[arm_index[:B]],
                                               exp.everyday[:B], exp.corrective[:B], exp.n_corr[:B],
                                               session_steps=session_steps))
    out = jax.tree.map(lambda s: jnp.zeros((N,) + s.shape[1:], s.dtype), first)
    return jax.lax.fori_loop(0, -(-N // B), one_block, out)


@lru_cache(maxsize=None)
def _sharded_beliefs(model: BeliefModel, n_devices: int):
    """cohort_beliefs with patients split over ``n_devices`` local devices (one thread each)."""
    mesh, split, whole = _patient_mesh(n_devices)
    body = jax.shard_map(lambda p, a, i, e, k: cohort_beliefs(model, p, a, i, e, k), mesh=mesh,
                         in_specs=(split, split, whole, split, whole), out_specs=split, check_vma=False)
    return jax.jit(body)


def cohort_beliefs_on_devices(model: BeliefModel, params, arm_index, inputs: ArmInputs, exp: Experiences) -> Trajectory:
    """:func:`cohort_beliefs`, split over all local devices when there are several (same numbers)."""
    N = int(arm_index.shape[0])
    D = _devices_for(N)
    steps = jnp.asarray(scheduled_session_steps(inputs))
    if D < 2:
        return cohort_beliefs(model, params, arm_index, inputs, exp, steps)
    pad = (-N) % D  # repeat the last patient so every device gets the same count; dropped below
    grow = lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x  # noqa: E731
    out = _sharded_beliefs(model, D)(jax.tree.map(grow, params), grow(arm_index), inputs, jax.tree.map(grow, exp), steps)
    return jax.tree.map(lambda x: None if x is None else x[:N], out)


# ----------------------------------------------------------------------------- observations


def drug_state_effects(cfg: Config, sch: Schedules, t_hours: np.ndarray):
    """D(t) acute lift and E(t) non-specific infusion response (MADRS points), per arm × time.

    Both take the strongest current infusion (max, not sum), so a course of infusions does not
    stack non-specific responses without bound.
    """
    v = cfg.observations.visits
    tau = t_hours[None, :, None] - sch.infusion_hours[:, None, :]  # arms, times, doses
    onset = np.where(tau >= 0, 1.0 - np.exp(-np.maximum(tau, 0) / v.acute_onset_hours), 0.0)
    acute = onset * np.exp2(-np.maximum(tau, 0) / v.acute_half_life_hours)
    D = v.acute_lift * np.max(sch.dose_amounts[:, None, :] * acute, axis=2, initial=0.0)
    nonspec = onset * np.exp2(-np.maximum(tau, 0) / (24.0 * v.infusion_response_half_life_days))
    E = v.infusion_response * np.max(nonspec, axis=2, initial=0.0)
    return D, E


def first_treatment_hours(sch: Schedules) -> np.ndarray:
    """Per arm, the time of the first infusion or session (inf if none)."""
    inf = np.where(np.isfinite(sch.infusion_hours), sch.infusion_hours, np.inf).min(axis=1)
    sess = np.where(sch.session_n > 0, sch.t_hours[None, :], np.inf).min(axis=1)
    return np.minimum(inf, sess)


@dataclass(frozen=True)
class Simulation:
    """A simulated cohort: inputs, hidden states and observations, as arrays.

    ``plasticity_rl.data.tables(sim)`` turns it into tidy pandas tables.
    """

    config: Config
    model: BeliefModel
    schedules: Schedules
    inputs: ArmInputs
    arm_index: np.ndarray  # (N,)
    params: dict[str, np.ndarray]  # per patient
    experiences: Experiences
    trajectory: Trajectory  # (N, T) each
    ema: np.ndarray  # (N, days) rating of V at the end of each day, NaN where missing
    visit_days: np.ndarray  # (K,) requested visit times (days)
    visit_steps: np.ndarray  # (K,) step whose start the visit observes
    visits: np.ndarray  # (N, K) clinician score, NaN where missing
    visit_expected: np.ndarray  # (N, K) M without noise: m_max (1 - V) - D - E
    visit_D: np.ndarray  # (N, K)
    visit_E: np.ndarray  # (N, K)

    @property
    def n_patients(self) -> int:
        return int(self.arm_index.shape[0])


def beliefs_at_step_start(traj_V: np.ndarray, V0: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """V at the start of each step in ``steps`` (before that step's events)."""
    padded = np.concatenate([V0[:, None], traj_V], axis=1)
    return padded[:, steps]


def simulate(cfg: Config, override: dict | None = None) -> Simulation:
    """Simulate the cohort a config describes. Same config and seed, same arrays.

    ``override`` (parameter name -> one value per patient, or a scalar) replaces drawn or
    configured parameters, e.g. for simulation-based calibration, where they come from the
    fit's prior.
    """
    model = get_model(cfg.model.variant)
    sch = build_schedules(cfg)
    inputs = arm_inputs(cfg, sch)
    arm_index = arm_of_patients(cfg)
    N, seed = arm_index.shape[0], cfg.experiment.seed
    params = sample_params(stream_key(seed, "params"), cfg, model, N)
    for name, value in (override or {}).items():
        if name not in params:
            raise ValueError(f"unknown parameter {name!r} for {model.name}; allowed: {sorted(params)}")
        params[name] = jnp.broadcast_to(jnp.asarray(value, jnp.float32), (N,))
    env = cfg.environment
    exp = sample_experiences(
        stream_key(seed, "everyday"),
        stream_key(seed, "corrective"),
        stream_key(seed, "attendance"),
        jnp.asarray(arm_index),
        inputs,
        env.p_env * (1.0 - env.bias),
        n_max=sch.n_c_max,
    )
    traj = cohort_beliefs_on_devices(model, params, jnp.asarray(arm_index), inputs, exp)
    traj = Trajectory(*(None if x is None else np.asarray(x) for x in traj))
    params_np = {k: np.asarray(v) for k, v in params.items()}
    V0 = np.asarray(jax.vmap(model.initial)(params).V)

    spd, days = cfg.experiment.steps_per_day, cfg.experiment.days
    obs = cfg.observations
    # EMA: a Beta rating of V at the end of each day.
    V_end = traj.V[:, spd - 1 :: spd][:, :days]
    ema = np.full((N, days), np.nan, np.float32)
    if obs.ema.enabled:
        k_val, k_miss = jax.random.split(stream_key(seed, "ema"))
        phi = obs.ema.phi
        y = np.asarray(jax.random.beta(k_val, V_end * phi, (1.0 - V_end) * phi), np.float64)
        y = np.clip(y, 1e-6, 1 - 1e-6)
        missing = np.asarray(jax.random.bernoulli(k_miss, obs.ema.missing_rate, y.shape))
        ema = np.where(missing, np.nan, y).astype(np.float32)

    # Visits: clinician score at the start of the visit's step.
    vd = np.asarray(obs.visits.days if obs.visits.enabled else [], dtype=np.float64)
    vsteps = np.array([min(round(d * spd), days * spd) for d in vd], dtype=np.int64)
    K = vd.shape[0]
    visits = expected = vD = vE = np.zeros((N, K))
    if K:
        v = obs.visits
        D, E = drug_state_effects(cfg, sch, vsteps * sch.step_hours)
        vD, vE = D[arm_index], E[arm_index]
        V_visit = beliefs_at_step_start(traj.V, V0, vsteps)
        expected = v.m_max * (1.0 - V_visit) - vD - vE
        treated = (vsteps * sch.step_hours)[None, :] >= first_treatment_hours(sch)[arm_index][:, None]
        sd = np.where(treated, v.noise_sd_treated, v.noise_sd_baseline)
        k_val, k_miss = jax.random.split(stream_key(seed, "visits"))
        noise = np.asarray(jax.random.normal(k_val, (N, K)))
        visits = np.clip(expected + sd * noise, 0.0, 60.0)
        missing = np.asarray(jax.random.bernoulli(k_miss, v.missing_rate, (N, K)))
        visits = np.where(missing, np.nan, visits)

    return Simulation(
        config=cfg,
        model=model,
        schedules=sch,
        inputs=inputs,
        arm_index=arm_index,
        params=params_np,
        experiences=Experiences(*(np.asarray(x) for x in exp)),
        trajectory=traj,
        ema=ema,
        visit_days=vd,
        visit_steps=vsteps,
        visits=visits,
        visit_expected=expected,
        visit_D=vD,
        visit_E=vE,
    )
