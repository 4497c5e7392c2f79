"""The claims of DESIGN 1.2 as tests on the shipped configs (DESIGN 4): direction and a margin.

Each claim runs a shipped config unchanged except for cohort size (larger, so the margins are not
at the mercy of sampling noise) and the EMA stream (switched off where no claim reads it; it has
its own random stream, so the beliefs are unaffected). Effects are measured as changes from each
patient's own pre-infusion beliefs, compared between arms. The margins sit well inside the
measured effects (see the comments) but far from trivially true.
"""

from __future__ import annotations

import numpy as np
import pytest

from plasticity_rl.config import bundled_config_path, load_config
from plasticity_rl.simulate import Simulation, simulate


def shipped(name: str, edit, patients_per_arm: int, visits: bool = False) -> Simulation:
    cfg = load_config(bundled_config_path(name))
    changes = {"experiment.patients_per_arm": patients_per_arm, "observations.ema.enabled": False}
    if not visits:
        changes["observations.visits.enabled"] = False
    return simulate(edit(cfg, **changes))


def change(sim: Simulation, arm: str, which: str = "V", base_day: float = 7.0) -> np.ndarray:
    """Arm mean of each patient's belief after each step minus its value at ``base_day``."""
    x = getattr(sim.trajectory, which)[sim.arm_index == sim.schedules.arm_names.index(arm)]
    base = int(round(base_day * sim.schedules.steps_per_day)) - 1
    return (x - x[:, [base]]).mean(axis=0)


def step_end_days(sim: Simulation) -> np.ndarray:
    """Time (days) at which each step's beliefs are read: the end of the step."""
    return (np.arange(sim.trajectory.V.shape[1]) + 1) / sim.schedules.steps_per_day


def window_mean(values, days, start, stop):
    return float(values[(days >= start) & (days < stop)].mean())


# --------------------------------------------------------------------------- claim 1
# Ketamine alone (single_infusion.yaml): rapid onset, then waning.


@pytest.fixture(scope="module")
def single(edit):
    return shipped("single_infusion", edit, 1000, visits=True)


def visit_gap(sim, column, day):
    """Ketamine minus placebo mean of a visits column at the visit on ``day``."""
    k = int(np.flatnonzero(np.isclose(sim.visit_days, day))[0])
    values = {"expected": sim.visit_expected, "score": sim.visits}[column][:, k]
    arm = sim.arm_index
    names = sim.schedules.arm_names
    ketamine, placebo = values[arm == names.index("ketamine")], values[arm == names.index("placebo")]
    return float(np.nanmean(ketamine) - np.nanmean(placebo))


def test_claim1_clinician_score_improves_within_hours_of_the_infusion(single):
    # Visit on day 7.5 = 12:00, two hours after the 10:00 infusion. Measured (1000 per arm, 4
    # seeds): expected gap -5.3 to -5.4 MADRS points, observed -4.9 to -5.3; V has not moved yet.
    assert visit_gap(single, "expected", 6.9) == pytest.approx(0.0, abs=0.5)  # baseline
    assert visit_gap(single, "expected", 7.5) <= -4.0
    assert visit_gap(single, "score", 7.5) <= -3.0
    # The rapid effect does not need the window: V barely differs yet (< 0.5 MADRS point).
    days = step_end_days(single)
    gap_V = change(single, "ketamine") - change(single, "placebo")
    step = int(round(7.5 * single.schedules.steps_per_day)) - 1
    assert abs(gap_V[step]) * single.config.observations.visits.m_max < 0.5
    assert days[step] == 7.5


def test_claim1_v_rises_within_two_days_then_wanes_within_two_weeks(single):
    days = step_end_days(single) - (7 + 10 / 24)  # days after the infusion
    gap = change(single, "ketamine") - change(single, "placebo")
    peak = window_mean(gap, days, 1, 3)
    # Measured (1000 per arm, 4 seeds): peak (+1..+3 d) 0.037-0.047; first 12 h 0.0000-0.0007;
    # +6..+8 d 0.026-0.028; +13..+15 d 0.012-0.014 (25-34% of peak); max of the gap at +1.5 to
    # +2.3 d.
    assert peak >= 0.03
    assert window_mean(gap, days, 0, 0.5) <= 0.2 * peak  # not instant: learning takes a day
    assert 0.75 <= days[int(np.argmax(gap))] <= 3.0
    mid, late = window_mean(gap, days, 6, 8), window_mean(gap, days, 13, 15)
    assert late < mid < peak
    assert late <= 0.5 * peak  # at least halved within two weeks
    # On the clinician scale the difference is gone by two weeks: measured -0.5 to -0.6 points
    # at day 21 (+14 d) against -5.3 to -5.4 at 2 h.
    assert abs(visit_gap(single, "expected", 21)) <= 0.25 * abs(visit_gap(single, "expected", 7.5))


# --------------------------------------------------------------------------- claim 2
# Six infusions (six_infusions.yaml) and boosters (boosters.yaml) sustain the gain longer.


@pytest.fixture(scope="module")
def six(edit):
    return shipped("six_infusions", edit, 500)


@pytest.fixture(scope="module")
def boosters(edit):
    return shipped("boosters", edit, 500)


def daily(values, sim):
    spd = sim.schedules.steps_per_day
    return values[: values.shape[0] // spd * spd].reshape(-1, spd).mean(axis=1)


def test_claim2_six_infusions_sustain_the_gain_longer_than_one(six):
    days = step_end_days(six)
    gap1 = change(six, "single") - change(six, "placebo")
    gap6 = change(six, "six") - change(six, "placebo")
    # Measured (500 per arm, 2 seeds): days 28-42 mean gap over placebo, single 0.006-0.007,
    # six 0.032-0.035.
    late1, late6 = window_mean(gap1, days, 28, 42), window_mean(gap6, days, 28, 42)
    assert late6 >= 0.015
    assert late6 - late1 >= 0.015
    assert late1 <= 0.5 * late6
    # Last day the daily gap is still >= 0.02 (about half of one dose's peak): measured day
    # 15-16 for one infusion, day 55 (the end) for six.
    last = lambda g: int(np.flatnonzero(daily(g, six) >= 0.02).max())  # noqa: E731
    assert last(gap6) >= last(gap1) + 14


def test_claim2_boosters_at_lengthening_intervals_sustain_the_gain(boosters):
    days = step_end_days(boosters)
    s, i, b = (change(boosters, arm) for arm in ("single", "induction", "boosters"))
    # Measured (500 per arm, 2 seeds), change from day 7: days 28-35 induction - single
    # 0.047-0.051; days 84-112 boosters - single 0.037, boosters - induction 0.017-0.019.
    assert window_mean(i - s, days, 28, 35) >= 0.025
    assert window_mean(b - s, days, 84, 112) >= 0.02
    assert window_mean(b - i, days, 84, 112) >= 0.01


# --------------------------------------------------------------------------- claim 3
# Therapy inside the window moves S (flagship.yaml); the forge without the hammer changes little.


@pytest.fixture(scope="module")
def flagship(edit):
    return shipped("flagship", edit, 400)


def block_change(sim, arm, start_day, which="S", days=4):
    """Arm mean change of a belief over a therapy block (start_day to start_day + days)."""
    x = getattr(sim.trajectory, which)[sim.arm_index == sim.schedules.arm_names.index(arm)]
    spd = sim.schedules.steps_per_day
    return float((x[:, int((start_day + days) * spd)] - x[:, int(start_day * spd)]).mean())


def at_followup(sim, arm, which):
    return float(change(sim, arm, which)[-1] - change(sim, "placebo", which)[-1])


def test_claim3_therapy_in_the_window_moves_the_schema_much_more(flagship):
    # The same four sessions: days 8-11 (in the window) vs days 22-25 (after it).
    # Measured (400 per arm, 2 seeds): S moves 0.426 in the window, 0.141-0.143 after it.
    inside = block_change(flagship, "ketamine_cbt_window", 8)
    after = block_change(flagship, "ketamine_cbt_delayed", 22)
    assert inside >= 2.0 * after
    assert inside - after >= 0.2
    # and the gain lasts: at follow-up (day 56) window - delayed, measured V 0.10, S 0.22
    window_V, window_S = (at_followup(flagship, "ketamine_cbt_window", b) for b in "VS")
    delayed_V, delayed_S = (at_followup(flagship, "ketamine_cbt_delayed", b) for b in "VS")
    assert window_V - delayed_V >= 0.06
    assert window_S - delayed_S >= 0.15


def test_claim3_therapy_alone_helps_slowly(flagship):
    # Measured: follow-up V gain over placebo 0.050-0.052 (CBT alone) vs 0.156-0.158 (in the
    # window); S moves 0.14-0.15 over CBT alone's four sessions vs 0.43 in the window.
    cbt, window = at_followup(flagship, "cbt_alone", "V"), at_followup(flagship, "ketamine_cbt_window", "V")
    assert cbt >= 0.025
    assert cbt <= 0.5 * window
    assert block_change(flagship, "cbt_alone", 8) <= 0.5 * block_change(flagship, "ketamine_cbt_window", 8)


def test_claim3_plasticity_without_corrective_input_changes_little_for_good(flagship):
    days = step_end_days(flagship)
    gap = change(flagship, "ketamine") - change(flagship, "placebo")
    # The window did open (measured V gap 0.040-0.042 over days 9-12) ...
    assert window_mean(gap, days, 9, 12) >= 0.02
    # ... but left the schema nearly where placebo left it. Measured at day 56: S gap
    # 0.009-0.010, V gap 0.005-0.009, against an in-window therapy S gain of 0.35.
    S_gap = at_followup(flagship, "ketamine", "S")
    window_S = at_followup(flagship, "ketamine_cbt_window", "S")
    assert abs(S_gap) <= 0.1 * window_S
    assert abs(S_gap) <= 0.025
    assert abs(at_followup(flagship, "ketamine", "V")) <= 0.02


# --------------------------------------------------------------------------- claim 4
# The timing curve (timing_sweep.yaml): follow-up V against therapy delay.


@pytest.fixture(scope="module")
def sweep(edit):
    return shipped("timing_sweep", edit, 300)


def test_claim4_timing_curve_peaks_near_peak_plasticity_and_falls_off(sweep):
    from plasticity_rl.config import sweep_arm_name

    cfg = sweep.config
    dose_day = cfg.timing_sweep.dose.day
    step = cfg.followup_day * sweep.schedules.steps_per_day - 1
    V = sweep.trajectory.V
    first_therapy_day = dose_day + int(min(cfg.timing_sweep.delays_days))
    base = V[:, first_therapy_day * sweep.schedules.steps_per_day - 1]  # before any arm's therapy

    def followup(arm):
        rows = sweep.arm_index == sweep.schedules.arm_names.index(arm)
        return float((V[rows, step] - base[rows]).mean())

    curve = {d: followup(sweep_arm_name(d)) for d in cfg.timing_sweep.delays_days}
    none = followup("no_therapy")
    best = max(curve, key=curve.get)
    peak = curve[best]
    # Measured (300 per arm, 3 seeds), V change from day 7 to day 56: -7 d 0.063-0.066,
    # -3 d 0.071-0.075, -2 d 0.158-0.160, -1 d 0.171-0.174, 0 d 0.168-0.176, +1 d 0.172-0.176,
    # +2 d 0.094-0.100, +3 d 0.071-0.077, +4..+14 d 0.064-0.075, no therapy 0.015-0.017.
    # (-1, 0 and +1 tie: a four-session block from the day before still spans the peak at +1 d.)
    assert best in (-1, 0, 1)
    assert peak - curve[3] >= 0.06
    assert all(peak - v >= 0.06 for d, v in curve.items() if d >= 3)
    assert peak - curve[-3] >= 0.06 and peak - curve[-7] >= 0.06
    assert curve[1] > curve[2] > curve[3]  # falls off as the window closes
    assert curve[1] - curve[2] >= 0.03
    # therapy at any time helps somewhat (therapy alone helps slowly)
    assert min(curve.values()) - none >= 0.02


# --------------------------------------------------------------------------- claim 5
# Asymmetric learning (asymmetric.yaml, schema_asym): ketamine rebalances good- and bad-news
# learning, and therapy in the window still moves the schema most.


@pytest.fixture(scope="module")
def asymmetric(edit):
    return shipped("asymmetric", edit, 500)


def test_claim5_ketamine_turns_bad_news_learning_into_good_news_learning(asymmetric):
    """Depressed baseline: bad news learned faster (alpha+/alpha- = 0.55 measured); in the
    window good news wins (peak ratio 4.0 measured, about 24 h after the infusion)."""
    sim = asymmetric
    rows = sim.arm_index == sim.schedules.arm_names.index("ketamine")
    ratio = sim.trajectory.alpha[rows].mean(axis=0) / sim.trajectory.alpha_neg[rows].mean(axis=0)
    days = step_end_days(sim)
    assert window_mean(ratio, days, 0, 7) < 0.7
    peak = int(np.argmax(ratio))
    assert ratio[peak] > 3.0 and 7.5 < days[peak] < 9.5
    assert window_mean(ratio, days, 21, 28) < 0.7  # the balance returns once the window closes


def test_claim5_therapy_in_the_window_moves_the_schema_most_under_asymmetric_learning(asymmetric):
    """S at day 28: CBT in the window 0.41 above its pre-infusion value, delayed CBT 0.12 (measured)."""
    window, delayed = (
        change(asymmetric, arm, "S")[28 * 8 - 1] for arm in ("ketamine_cbt_window", "ketamine_cbt_delayed")
    )
    assert window > 2.0 * delayed > 0
