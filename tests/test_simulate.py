"""The simulator and its tables: reproducible, internally consistent, missing data kept apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plasticity_rl.data import SCHEMA, tables
from plasticity_rl.simulate import simulate


@pytest.fixture(scope="module")
def attendance_sim(flagship_cfg, edit):
    """The small flagship with every therapy session attended only half the time (same shapes)."""
    changes = {f"arms[{i}].sessions[0].attendance": 0.5 for i in (2, 3, 4)}
    return simulate(edit(flagship_cfg, **changes))


@pytest.fixture(scope="module")
def attendance_tables(attendance_sim):
    return tables(attendance_sim)


# --------------------------------------------------------------------------- reproducibility


def test_same_config_and_seed_give_identical_tables(flagship_cfg, flagship_tables):
    again = tables(simulate(flagship_cfg))
    assert again.keys() == flagship_tables.keys()
    for name, df in flagship_tables.items():
        pd.testing.assert_frame_equal(again[name], df, check_exact=True, obj=name)
        np.testing.assert_array_equal(
            pd.util.hash_pandas_object(again[name]).to_numpy(), pd.util.hash_pandas_object(df).to_numpy()
        )
        assert again[name].to_csv(index=False) == df.to_csv(index=False), name


_DEVICE_RUN = """
import sys, numpyro
numpyro.set_host_device_count(int(sys.argv[1]))
import jax, numpy as np
from plasticity_rl.config import config_from_dict
from plasticity_rl.simulate import simulate
import json
cfg = config_from_dict(json.loads(sys.argv[3]))
sim = simulate(cfg)
assert jax.local_device_count() == int(sys.argv[1])
e, t = sim.experiences, sim.trajectory
np.savez(sys.argv[2], everyday=e.everyday, corrective=e.corrective, n_corr=e.n_corr, attended=e.attended,
         V=t.V, S=t.S, alpha=t.alpha, ema=sim.ema, visits=sim.visits)
"""


def test_splitting_patients_over_host_devices_changes_no_number(flagship_cfg, edit, tmp_path):
    """The CLI gives JAX one host device per core and the simulator then splits the patients
    over them (draws and beliefs). 515 patients: enough for the split, and not a multiple of 2."""
    import json
    import subprocess
    import sys

    cfg = edit(
        flagship_cfg,
        **{"experiment.patients_per_arm": 103, "experiment.days": 28, "observations.visits.days": [0, 7, 28]},
    )
    arrays = {}
    for devices in (1, 2):
        out = tmp_path / f"{devices}.npz"
        subprocess.run(
            [
                sys.executable,
                "-c",
                _DEVICE_RUN,
                str(devices),
                str(out),
                json.dumps(cfg.model_dump(mode="json")),
            ],
            check=True,
            timeout=300,
        )
        arrays[devices] = dict(np.load(out))
    assert arrays[1]["V"].shape == (515, 28 * 8)
    for name, one in arrays[1].items():
        np.testing.assert_array_equal(arrays[2][name], one, err_msg=name)


def test_a_different_seed_gives_different_draws(flagship_cfg, flagship_tables, edit):
    other = tables(simulate(edit(flagship_cfg, **{"experiment.seed": flagship_cfg.experiment.seed + 1})))
    # the design is the same ...
    pd.testing.assert_frame_equal(other["arms"], flagship_tables["arms"])
    same_cols = ["patient", "arm", "session", "step", "n_c", "p_c"]
    pd.testing.assert_frame_equal(other["sessions"][same_cols], flagship_tables["sessions"][same_cols])
    # ... the draws are not
    for name, col in [
        ("patients", "logit_S0"),
        ("events", "outcome"),
        ("trajectories", "V"),
        ("ema", "rating"),
        ("visits", "score"),
    ]:
        a, b = other[name][col].to_numpy(), flagship_tables[name][col].to_numpy()
        assert a.shape == b.shape
        assert not np.array_equal(a, b, equal_nan=True), name
    ev_a, ev_b = other["events"]["outcome"].to_numpy(), flagship_tables["events"]["outcome"].to_numpy()
    if ev_a.shape == ev_b.shape:
        assert np.mean(ev_a != ev_b) > 0.2  # independent Bernoulli draws, not a shifted copy


# --------------------------------------------------------------------------- consistency


def beliefs_from_tables(tabs, cfg):
    """V and S after each step, recomputed in NumPy (float64) from the logged tables alone.

    DESIGN 1.2 (with V relaxing toward S after learning, see models.variants.relax_toward_schema):
    a session's corrective experiences in order, then the everyday event:
        V <- V + a (c - V),                          S <- S + omega a (c - S)
        V <- (1 - kappa) (V + a (o - V)) + kappa S,  S <- S + epsilon a (o - S)
    """
    pop = cfg.population
    pat = tabs["patients"].sort_values("patient")
    traj = tabs["trajectories"].sort_values(["patient", "step"])
    N, T = len(pat), int(traj["step"].max()) + 1
    alpha = traj["alpha"].to_numpy().reshape(N, T)
    ev = tabs["events"]
    everyday = ev[ev["kind"] == "everyday"].sort_values(["patient", "step"])
    o = everyday["outcome"].to_numpy(np.float64).reshape(N, T)
    corr = ev[ev["kind"] == "corrective"]
    n_max = int(corr["index"].max()) + 1 if len(corr) else 1
    c = np.zeros((N, T, n_max))
    n = np.zeros((N, T), dtype=int)
    pid, step, idx = (corr[k].to_numpy() for k in ("patient", "step", "index"))
    c[pid, step, idx] = corr["outcome"].to_numpy()
    np.add.at(n, (pid, step), 1)

    V, S = pat["V0"].to_numpy(np.float64).copy(), pat["S0"].to_numpy(np.float64).copy()
    Vs, Ss = np.empty((N, T)), np.empty((N, T))
    for j in range(T):
        a = alpha[:, j]
        for k in range(n_max):
            on = k < n[:, j]
            V = np.where(on, V + a * (c[:, j, k] - V), V)
            S = np.where(on, S + pop.omega * a * (c[:, j, k] - S), S)
        V, S = (1 - pop.kappa) * (V + a * (o[:, j] - V)) + pop.kappa * S, S + pop.epsilon * a * (o[:, j] - S)
        Vs[:, j], Ss[:, j] = V, S
    return Vs, Ss, traj["V"].to_numpy().reshape(N, T), traj["S"].to_numpy().reshape(N, T)


@pytest.mark.parametrize("which", ["flagship", "attendance"])
def test_trajectories_follow_from_logged_events_alpha_and_initial_beliefs(
    which, flagship_cfg, flagship_tables, attendance_sim, attendance_tables
):
    if which == "flagship":
        tabs, cfg = flagship_tables, flagship_cfg
    else:
        tabs, cfg = attendance_tables, attendance_sim.config
    V, S, V_logged, S_logged = beliefs_from_tables(tabs, cfg)
    np.testing.assert_allclose(V_logged, V, atol=1e-5, rtol=0)
    np.testing.assert_allclose(S_logged, S, atol=1e-5, rtol=0)
    assert np.ptp(V) > 0.2  # therapy arms really moved: the comparison is not of flat lines


def test_events_are_ordered_corrective_first_then_everyday(flagship_sim, flagship_tables):
    ev = flagship_tables["events"]
    N, T = flagship_sim.trajectory.V.shape
    assert (ev["kind"] == "everyday").sum() == N * T
    assert (ev["kind"] == "corrective").sum() == int(flagship_sim.experiences.n_corr.sum())
    # within a (patient, step): index 0..n-1 are corrective, index n is the everyday event
    grouped = ev.groupby(["patient", "step"])
    assert (grouped["index"].max() + 1 == grouped.size()).all()
    last = ev.drop_duplicates(["patient", "step"], keep="last")
    assert (last["kind"] == "everyday").all()


def test_visit_expected_score_reads_v_at_the_start_of_the_visit_step(flagship_sim, flagship_tables):
    cfg = flagship_sim.config
    vis, traj, pat = flagship_tables["visits"], flagship_tables["trajectories"], flagship_tables["patients"]
    T = flagship_sim.trajectory.V.shape[1]
    V = traj["V"].to_numpy().reshape(-1, T)
    V_start = np.concatenate([pat["V0"].to_numpy()[:, None], V], axis=1)  # V before step j's events
    want = cfg.observations.visits.m_max * (1 - V_start[vis["patient"], vis["step"]])
    want -= vis["drug_lift"].to_numpy() + vis["infusion_response"].to_numpy()
    np.testing.assert_allclose(vis["expected"].to_numpy(), want, atol=1e-4)


# --------------------------------------------------------------------------- missing data


def test_missed_sessions_deliver_nothing_and_are_logged_as_not_attended(attendance_sim, attendance_tables):
    ses, ev = attendance_tables["sessions"], attendance_tables["events"]
    assert (~ses["attended"]).sum() > 5 and ses["attended"].sum() > 5
    corr = ev[ev["kind"] == "corrective"].groupby(["patient", "step"]).size()
    delivered = ses.set_index(["patient", "step"]).join(corr.rename("logged")).fillna({"logged": 0})
    assert (delivered.loc[~delivered["attended"], "logged"] == 0).all()
    attended = delivered[delivered["attended"]]
    assert (attended["logged"] == attended["n_c"]).all()
    # every corrective event belongs to an attended session
    assert set(corr.index) <= set(delivered.index[delivered["attended"]])
    # the schedule itself is unchanged: all scheduled sessions have a row
    sch = attendance_sim.schedules
    assert len(ses) == int((sch.session_n[attendance_sim.arm_index] > 0).sum())


def test_full_attendance_logs_every_session_attended(flagship_tables):
    ses = flagship_tables["sessions"]
    assert len(ses) == 3 * 4 * 4  # three therapy arms x 4 patients x 4 sessions
    assert ses["attended"].all()


def test_missing_ratings_keep_their_rows(flagship_sim, flagship_tables):
    N, days = flagship_sim.n_patients, flagship_sim.config.experiment.days
    ema, vis = flagship_tables["ema"], flagship_tables["visits"]
    assert len(ema) == N * days
    assert len(vis) == N * len(flagship_sim.config.observations.visits.days)
    for df, col in ((ema, "rating"), (vis, "score")):
        assert df["missing"].any(), col  # flagship: 10% of EMA and 5% of visits not recorded
        assert df["missing"].equals(df[col].isna())
    seen = ema.loc[~ema["missing"], "rating"]
    assert seen.between(0, 1, inclusive="neither").all()
    assert vis.loc[~vis["missing"], "score"].between(0, 60).all()
    assert np.isfinite(vis["expected"]).all()  # the truth is there even when the score is not
    assert ema["missing"].mean() == pytest.approx(0.1, abs=0.04)


def test_ema_rates_v_at_the_end_of_the_day(flagship_sim, flagship_tables):
    spd = flagship_sim.config.experiment.steps_per_day
    V_end = flagship_sim.trajectory.V[:, spd - 1 :: spd].reshape(-1)
    rating = flagship_tables["ema"]["rating"].to_numpy()
    ok = ~np.isnan(rating)
    assert np.mean(rating[ok]) == pytest.approx(np.mean(V_end[ok]), abs=0.02)
    assert np.corrcoef(rating[ok], V_end[ok])[0, 1] > 0.5


# --------------------------------------------------------------------------- schema


DTYPES = {
    "string": pd.StringDtype(),
    "int64": np.dtype("int64"),
    "float64": np.dtype("float64"),
    "int8": np.dtype("int8"),
    "bool": np.dtype("bool"),
}


def expected_columns(table, model):
    cols = []
    for col in SCHEMA[table]:
        if col == "<param>":
            cols += list(model.patient_params)
        elif col == "alpha_neg" and not model.asymmetric:
            continue
        else:
            cols.append(col)
    return cols


def check_schema(tabs, model):
    assert set(tabs) == set(SCHEMA)
    for name, df in tabs.items():
        assert list(df.columns) == expected_columns(name, model), name
        for col, (dtype, _, _) in SCHEMA[name].items():
            if col in df.columns:
                assert df[col].dtype == DTYPES[dtype], (name, col, df[col].dtype)
        for col in model.patient_params if name == "patients" else ():
            assert df[col].dtype == np.float64


def test_tables_follow_the_schema(flagship_sim, flagship_tables):
    check_schema(flagship_tables, flagship_sim.model)
    traj = flagship_tables["trajectories"]
    assert traj["alpha"].between(0, 1, inclusive="left").all()
    assert traj["V"].between(0, 1, inclusive="neither").all()
    assert traj["S"].between(0, 1, inclusive="neither").all()


@pytest.mark.parametrize("variant", ["rw", "schema_asym"])
def test_tables_follow_the_schema_for_other_variants(variant, flagship_cfg, edit):
    sim = simulate(edit(flagship_cfg, **{"model.variant": variant}))
    tabs = tables(sim)
    check_schema(tabs, sim.model)
    traj = tabs["trajectories"]
    if variant == "rw":
        assert traj["S"].isna().all()  # no schema in single-belief models
    else:
        assert traj["alpha_neg"].between(0, 1, inclusive="left").all()
        assert {"logit_alpha0_pos", "A_neg"} <= set(tabs["patients"].columns)
