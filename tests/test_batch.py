"""Scale-out: independent jobs on a dask LocalCluster, streamed to disk, skipped on rerun."""

from plasticity_rl.batch import Job, result_path, run_jobs


def test_local_cluster_runs_jobs_and_a_rerun_skips_them(tmp_path):
    # `dict` stands in for a fit: importable on the workers, returns a JSON-able dict.
    jobs = [Job(name=f"pow-{k}", func=dict, kwargs={"value": k**2}) for k in (2, 3)]
    first = run_jobs(jobs, tmp_path, n_workers=2, progress=False)
    assert first == {"pow-2": {"value": 4}, "pow-3": {"value": 9}}
    stamps = {j.name: result_path(tmp_path, j.name).stat().st_mtime_ns for j in jobs}

    def boom(**_):
        raise AssertionError("a finished job ran again")

    again = run_jobs([Job(j.name, boom) for j in jobs], tmp_path, progress=False)
    assert again == first
    assert {j.name: result_path(tmp_path, j.name).stat().st_mtime_ns for j in jobs} == stamps
