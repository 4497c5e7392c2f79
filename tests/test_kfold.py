"""K-fold cross-validation by patient: the folds, the table's arithmetic, and a study that resumes only itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from plasticity_rl.kfold import kfold_folds, kfold_table, kfold_warning


def test_folds_are_stratified_by_arm_balanced_and_reproducible():
    arms = np.repeat([0, 1, 2], [7, 5, 9])
    folds = kfold_folds(arms, 4, seed=3)
    assert np.array_equal(folds, kfold_folds(arms, 4, seed=3))  # same data and seed, same folds
    assert not np.array_equal(folds, kfold_folds(arms, 4, seed=4))
    sizes = np.bincount(folds, minlength=4)
    assert sizes.max() - sizes.min() <= 1  # 21 patients: 6, 5, 5, 5
    for arm in range(3):  # each arm dealt round-robin: its patients split as evenly as they can be
        per_fold = np.bincount(folds[arms == arm], minlength=4)
        assert per_fold.max() - per_fold.min() <= 1


@pytest.mark.parametrize("k", [1, 22])
def test_a_fold_count_outside_2_to_n_is_refused(k):
    with pytest.raises(ValueError, match=f"--kfold: got {k}; allowed: 2 to the number of patients"):
        kfold_folds(np.zeros(21, int), k, 0)


def test_table_sums_patients_and_takes_the_se_of_the_paired_difference():
    rng = np.random.default_rng(0)
    a = rng.normal(-10, 2, size=30)
    b = a - 0.5 + rng.normal(0, 0.1, size=30)  # worse by 0.5 per patient, nearly in lockstep
    pointwise = pd.DataFrame(
        {
            "variant": ["a"] * 30 + ["b"] * 30,
            "patient": [f"P{i}" for i in range(30)] * 2,
            "fold": 0,
            "elpd": np.r_[a, b],
        }
    )
    table = kfold_table(pointwise, {"a": [], "b": [2]})
    assert list(table.index) == ["a", "b"] and list(table["rank"]) == [0, 1]
    assert table.loc["a", "elpd_kfold"] == pytest.approx(a.sum())
    assert table.loc["a", "se"] == pytest.approx(np.sqrt(30 * a.var(ddof=1)))
    assert table.loc["b", "elpd_diff"] == pytest.approx((a - b).sum())
    # the paired SE is far below either model's own SE: the models err on the same patients
    assert table.loc["b", "dse"] == pytest.approx(np.sqrt(30 * (a - b).var(ddof=1)))
    assert table.loc["b", "dse"] < 0.1 * table.loc["b", "se"]
    assert not table.loc["a", "warning"] and table.loc["b", "warning"]
    assert "b: folds 2" in kfold_warning(table)


def test_an_incomplete_study_is_refused():
    pointwise = pd.DataFrame(
        {"variant": ["a", "a", "b"], "patient": ["1", "2", "1"], "fold": 0, "elpd": -1.0}
    )
    with pytest.raises(ValueError, match="incomplete"):
        kfold_table(pointwise, {})


def test_a_rerun_into_another_studys_folder_is_refused(tmp_path):
    from plasticity_rl.kfold import RefitPlan, _check_resumable

    plan = RefitPlan("schema", "experiment: {}", {"method": "svi"}, ("1", "2"))
    _check_resumable(tmp_path, [plan], 0, tmp_path, {})
    _check_resumable(tmp_path, [plan], 0, tmp_path, {})  # the same study resumes (any K: own job names)
    with pytest.raises(FileExistsError, match="another K-fold study"):
        _check_resumable(tmp_path, [plan], 1, tmp_path, {})
