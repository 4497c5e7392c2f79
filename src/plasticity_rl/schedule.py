"""Arms (doses, therapy sessions) to per-step arrays on the experiment's time grid.

Step j covers [j, j + 1) / steps_per_day days. Dose and session times land on the nearest step.
Arrays for several arms are padded to common sizes and stacked, so a cohort is one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plasticity_rl.config import Arm, Config, ConfigError


@dataclass(frozen=True)
class Schedules:
    """Per-arm schedules stacked along axis 0 (arms). Times in hours from day 0, 00:00."""

    arm_names: tuple[str, ...]
    steps_per_day: int
    t_hours: np.ndarray  # (T,) start of each step
    dose_hours: np.ndarray  # (arms, D) landed dose times, padded with 0
    dose_amounts: np.ndarray  # (arms, D) relative amounts, 0 for padding (and for placebo)
    infusion_hours: np.ndarray  # (arms, D) times of any infusion incl. placebo, padded with -inf
    session_n: np.ndarray  # (arms, T) corrective experiences scheduled at the step (0: none)
    session_p: np.ndarray  # (arms, T) p_c of the session at the step
    session_attend: np.ndarray  # (arms, T) attendance probability of the session at the step
    session_index: np.ndarray  # (arms, T) number of the session within the arm, -1 if none

    @property
    def n_steps(self) -> int:
        return self.t_hours.shape[0]

    @property
    def n_c_max(self) -> int:
        return max(int(self.session_n.max()), 1)

    @property
    def step_hours(self) -> float:
        return 24.0 / self.steps_per_day

    def step_of_day(self, t_days: float) -> int:
        return nearest_step(t_days, self.steps_per_day, self.n_steps)


def nearest_step(t_days: float, steps_per_day: int, n_steps: int) -> int:
    return int(min(max(round(t_days * steps_per_day), 0), n_steps - 1))


def build_schedules(cfg: Config, arms: list[Arm] | None = None) -> Schedules:
    arms = cfg.all_arms() if arms is None else arms
    spd = cfg.experiment.steps_per_day
    T = cfg.experiment.days * spd
    step_h = 24.0 / spd
    t_hours = np.arange(T) * step_h

    dose_lists = []
    for arm in arms:
        times = [(t, d.amount) for d in arm.doses for t in d.times_days()]
        dose_lists.append([(nearest_step(t, spd, T) * step_h, a) for t, a in times])
    D = max(1, max(len(x) for x in dose_lists))
    dose_hours = np.zeros((len(arms), D))
    dose_amounts = np.zeros((len(arms), D))
    infusion_hours = np.full((len(arms), D), -np.inf)
    for i, doses in enumerate(dose_lists):
        for j, (h, a) in enumerate(doses):
            dose_hours[i, j], dose_amounts[i, j], infusion_hours[i, j] = h, a, h

    shape = (len(arms), T)
    session_n = np.zeros(shape, dtype=np.int32)
    session_p = np.zeros(shape)
    session_attend = np.zeros(shape)
    session_index = np.full(shape, -1, dtype=np.int32)
    for i, arm in enumerate(arms):
        k = 0
        for s in arm.sessions:
            for t in s.times_days():
                j = nearest_step(t, spd, T)
                if session_n[i, j]:
                    raise ConfigError(
                        [
                            f"arm {arm.name!r}: two sessions land on the same step (day {t:g}); "
                            f"space them at least {step_h:g} h apart"
                        ]
                    )
                session_n[i, j], session_p[i, j] = s.n_c, s.p_c
                session_attend[i, j], session_index[i, j] = s.attendance, k
                k += 1
    return Schedules(
        arm_names=tuple(a.name for a in arms),
        steps_per_day=spd,
        t_hours=t_hours,
        dose_hours=dose_hours,
        dose_amounts=dose_amounts,
        infusion_hours=infusion_hours,
        session_n=session_n,
        session_p=session_p,
        session_attend=session_attend,
        session_index=session_index,
    )
