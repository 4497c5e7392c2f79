"""Cohort simulation: patients in arms, vmap over patients, scan over time.

Outcomes do not depend on beliefs (the world does not read the patient's mind), so a cohort is
simulated in three pure stages: sample who experiences what, run the belief recurrence
(:func:`plasticity_rl.models.run_beliefs`, the same function the likelihood uses), then observe.
All randomness flows from the config's seed through named streams of explicit PRNG keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from plasticity_rl import observe
from plasticity_rl.config import Config
from plasticity_rl.models import BeliefModel, Trajectory, get_model, run_beliefs
from plasticity_rl.params import belief_values, mean_outcome
from plasticity_rl.plasticity import ArmInputs, arm_inputs, scheduled_session_steps
from plasticity_rl.schedule import Schedules, build_schedules

# Named random streams: adding a stream never changes the draws of another.
STREAMS = {"params": 1, "everyday": 2, "corrective": 3, "attendance": 4, "ema": 5, "visits": 6, "trials": 7}


def stream_key(seed: int, name: str) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed), STREAMS[name])


class Experiences(NamedTuple):
    """What each patient experienced: the inputs a fit conditions on."""

    everyday: jax.Array  # (N, T) int8 in {0, 1}
    corrective: jax.Array  # (N, T, n_max) int8 in {0, 1}; only the first n_corr count
    n_corr: jax.Array  # (N, T) int8 delivered corrective experiences (0 if none or missed)
    attended: jax.Array  # (N, T) bool, True where a scheduled session was attended


def arm_of_patients(cfg: Config) -> np.ndarray:
    arms = cfg.all_arms()
    return np.concatenate([np.full(cfg.patients_in(a), i, dtype=np.int32) for i, a in enumerate(arms)])


def sample_params(key, cfg: Config, model: BeliefModel, n: int) -> dict[str, jax.Array]:
    """Per-patient parameters from the population; group parameters broadcast to (n,)."""
    out = {}
    for i, name in enumerate(model.patient_params):
        dist = getattr(cfg.population, name)
        z = jax.random.normal(jax.random.fold_in(key, i), (n,))
        out[name] = dist.mean + dist.sd * z
    for name, value in belief_values(cfg).items():
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


@cache
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


@cache
def _everyday_split(n_devices: int, T: int):
    """_everyday_outcomes with the patients split over ``n_devices`` local devices."""
    mesh, split, whole = _patient_mesh(n_devices)
    body = jax.shard_map(
        lambda k, ids, p: _everyday_outcomes(k, ids, p, T),
        mesh=mesh,
        in_specs=(whole, split, whole),
        out_specs=split,
        check_vma=False,
    )
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
            jax.lax.dynamic_update_slice(
                n_corr, jnp.where(went, scheduled, 0).astype(jnp.int8)[:, None], (0, t)
            ),
            jax.lax.dynamic_update_slice(attended, went[:, None], (0, t)),
        )

    empty = (jnp.zeros((N, T, n_max), jnp.int8), jnp.zeros((N, T), jnp.int8), jnp.zeros((N, T), bool))
    return jax.lax.fori_loop(0, jnp.sum(has_session), one_session_step, empty)


def sample_experiences(
    k_everyday, k_corrective, k_attend, arm_index, inputs: ArmInputs, p_everyday, n_max: int
) -> Experiences:
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
        everyday = _everyday_on_one_device(
            k_everyday, jnp.arange(N, dtype=jnp.uint32), jnp.float32(p_everyday), T=T
        )
    return Experiences(
        everyday, *_session_experiences(k_corrective, k_attend, arm_index, inputs, n_max=n_max)
    )


@partial(jax.jit, static_argnames=("model",))
def cohort_beliefs(
    model: BeliefModel, params, arm_index, inputs: ArmInputs, exp: Experiences, session_steps
) -> Trajectory:
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
        traj = run_beliefs(
            model,
            p,
            inputs.g_k[arm],
            inputs.gate[arm],
            take(exp.everyday),
            take(exp.corrective),
            take(exp.n_corr),
            session_steps=session_steps,
        )
        return jax.tree.map(lambda o, t: jax.lax.dynamic_update_slice_in_dim(o, t, start, 0), out, traj)

    first = jax.eval_shape(
        lambda: run_beliefs(
            model,
            jax.tree.map(lambda v: v[:B], params),
            inputs.g_k[arm_index[:B]],
            inputs.gate[arm_index[:B]],
            exp.everyday[:B],
            exp.corrective[:B],
            exp.n_corr[:B],
            session_steps=session_steps,
        )
    )
    out = jax.tree.map(lambda s: jnp.zeros((N,) + s.shape[1:], s.dtype), first)
    return jax.lax.fori_loop(0, -(-N // B), one_block, out)


@cache
def _sharded_beliefs(model: BeliefModel, n_devices: int):
    """cohort_beliefs with patients split over ``n_devices`` local devices (one thread each)."""
    mesh, split, whole = _patient_mesh(n_devices)
    body = jax.shard_map(
        lambda p, a, i, e, k: cohort_beliefs(model, p, a, i, e, k),
        mesh=mesh,
        in_specs=(split, split, whole, split, whole),
        out_specs=split,
        check_vma=False,
    )
    return jax.jit(body)


def cohort_beliefs_on_devices(
    model: BeliefModel, params, arm_index, inputs: ArmInputs, exp: Experiences
) -> Trajectory:
    """:func:`cohort_beliefs`, split over all local devices when there are several (same numbers)."""
    N = int(arm_index.shape[0])
    D = _devices_for(N)
    steps = jnp.asarray(scheduled_session_steps(inputs))
    if D < 2:
        return cohort_beliefs(model, params, arm_index, inputs, exp, steps)
    pad = (-N) % D  # repeat the last patient so every device gets the same count; dropped below
    grow = lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x  # noqa: E731
    out = _sharded_beliefs(model, D)(
        jax.tree.map(grow, params), grow(arm_index), inputs, jax.tree.map(grow, exp), steps
    )
    return jax.tree.map(lambda x: None if x is None else x[:N], out)


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
    exp = sample_experiences(
        stream_key(seed, "everyday"),
        stream_key(seed, "corrective"),
        stream_key(seed, "attendance"),
        jnp.asarray(arm_index),
        inputs,
        mean_outcome(cfg),
        n_max=sch.n_c_max,
    )
    traj = cohort_beliefs_on_devices(model, params, jnp.asarray(arm_index), inputs, exp)
    traj = Trajectory(*(None if x is None else np.asarray(x) for x in traj))
    params_np = {k: np.asarray(v) for k, v in params.items()}
    V0 = np.asarray(jax.vmap(model.initial)(params).V)

    spd, days = cfg.experiment.steps_per_day, cfg.experiment.days
    obs = cfg.observations
    ema = np.full((N, days), np.nan, np.float32)
    if obs.ema.enabled:
        V_end = traj.V[:, observe.ema_steps(days, spd)]
        ema = observe.sample_ema(stream_key(seed, "ema"), V_end, obs.ema.phi, obs.ema.missing_rate)

    vd = np.asarray(obs.visits.days if obs.visits.enabled else [], dtype=np.float64)
    vsteps = np.array([observe.visit_step_of(d, spd, days) for d in vd], dtype=np.int64)
    K = vd.shape[0]
    visits = expected = vD = vE = np.zeros((N, K))
    if K:
        v = obs.visits
        vD, vE, treated = observe.visit_effects(v, sch, arm_index, np.broadcast_to(vsteps, (N, K)))
        expected = observe.visit_mean(observe.beliefs_at_step_start(traj.V, V0, vsteps), v.m_max, vD, vE)
        sd = observe.visit_sd(treated, v.noise_sd_baseline, v.noise_sd_treated)
        visits = observe.sample_visits(stream_key(seed, "visits"), expected, sd, v.missing_rate)

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
