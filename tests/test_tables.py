"""Reading a folder of tables as spreadsheets write them, and refusing files that are not tables."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from plasticity_rl.data import read_tables
from plasticity_rl.table_checks import DataError


@pytest.fixture
def folder(tmp_path, flagship_tables):
    """A run folder's data/: each table as Parquet and CSV, as `simulate` writes them."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("patients", "sessions", "ema", "visits"):
        flagship_tables[name].to_parquet(data / f"{name}.parquet", index=False)
        flagship_tables[name].to_csv(data / f"{name}.csv", index=False)
    return data


def _newer(path):
    """Make ``path`` the newer of its table's two files."""
    twins = [path.with_suffix(s) for s in (".csv", ".parquet")]
    later = max(t.stat().st_mtime_ns for t in twins if t.exists()) + 10**9
    os.utime(path, ns=(later, later))


def test_an_edited_csv_is_read_instead_of_the_stale_parquet_beside_it(folder):
    ema = pd.read_csv(folder / "ema.csv")
    ema.loc[0, "rating"] = 0.123
    ema.to_csv(folder / "ema.csv", index=False)
    _newer(folder / "ema.csv")
    assert read_tables(folder)["ema"]["rating"].iloc[0] == pytest.approx(0.123)
    _newer(folder / "ema.parquet")
    assert read_tables(folder)["ema"]["rating"].iloc[0] != pytest.approx(0.123)


def test_spreadsheet_csvs_read_the_same(folder, flagship_tables):
    """UTF-8 byte-order mark, CRLF line ends, ';' separators, spaces after separators."""
    want = flagship_tables["visits"]
    text = want.to_csv(index=False, sep=";", lineterminator="\r\n").replace(";", "; ")
    (folder / "visits.parquet").unlink()
    (folder / "visits.csv").write_bytes("\ufeff".encode() + text.encode())
    got = read_tables(folder)["visits"]
    assert list(got.columns) == list(want.columns)
    np.testing.assert_allclose(got["score"].to_numpy(float), want["score"].to_numpy(float))


@pytest.mark.parametrize(
    ("file", "content", "words"),
    [
        ("ema.csv", b"", ["ema.csv", "empty"]),
        ("ema.parquet", b"patient,day,rating\n0,0,0.5\n", ["ema.parquet", "Parquet", ".csv"]),
        ("visits.csv", b"patient,day,score\n0,0,\xff\xfe30\n", ["visits.csv", "UTF-8"]),
    ],
)
def test_files_that_are_not_tables_are_refused_by_name(folder, file, content, words):
    (folder / file).write_bytes(content)
    _newer(folder / file)
    with pytest.raises(DataError) as err:
        read_tables(folder)
    for word in words:
        assert word in str(err.value), str(err.value)


def _clock_times(tables: dict) -> dict:
    """The same trial in clock time: each patient's day 0 a date-time (with a UTC offset), EMA
    ratings made in the evening of their day, visits at their day's exact time."""
    out = {k: v.copy() for k, v in tables.items()}
    patients = out["patients"]
    start = pd.Timestamp("2026-03-02T08:00:00+01:00") + pd.to_timedelta(patients["patient"] * 7, unit="D")
    patients["start"] = start.dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    start_of = dict(zip(patients["patient"], start))
    ema = out["ema"]
    evening = ema["patient"].map(start_of) + pd.to_timedelta(ema["day"] + 20 / 24, unit="D")
    out["ema"] = ema.drop(columns="day").assign(time=evening.dt.strftime("%Y-%m-%dT%H:%M"))
    visits = out["visits"]
    at = visits["patient"].map(start_of) + pd.to_timedelta(visits["day"], unit="D")
    out["visits"] = visits.drop(columns="day").assign(time=at.map(lambda t: t.isoformat()))
    return out


def test_ratings_in_clock_time_fit_as_the_same_ratings_in_days(flagship_cfg, flagship_tables):
    from plasticity_rl.inference.prepare import from_tables

    days = {k: flagship_tables[k] for k in ("patients", "sessions", "ema", "visits")}
    want, got = from_tables(days, flagship_cfg), from_tables(_clock_times(days), flagship_cfg)
    np.testing.assert_array_equal(np.isnan(got.ema), np.isnan(want.ema))
    np.testing.assert_allclose(got.ema, want.ema)
    np.testing.assert_allclose(got.visit_day, want.visit_day, atol=1e-6)  # to the microsecond
    np.testing.assert_array_equal(got.visit_step, want.visit_step)


def test_clock_times_without_a_start_or_unreadable_are_refused_by_name(flagship_cfg, flagship_tables):
    from plasticity_rl.inference.prepare import from_tables

    timed = _clock_times({k: flagship_tables[k] for k in ("patients", "sessions", "ema", "visits")})
    no_start = {**timed, "patients": timed["patients"].drop(columns="start")}
    with pytest.raises(DataError, match="patients table needs columns 'patient' and 'start'"):
        from_tables(no_start, flagship_cfg)
    garbled = {
        **timed,
        "visits": timed["visits"].assign(time=lambda d: d["time"].where(d.index != 3, "3rd March")),
    }
    with pytest.raises(
        DataError, match=r"visits table: column 'time' must hold ISO 8601 .*row 3 \('3rd March'\)"
    ):
        from_tables(garbled, flagship_cfg)
