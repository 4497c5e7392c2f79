"""Write this example's tables: a simulated trial as its team would export it.

The trial of ``trial.yaml`` is simulated with the package, and then only what a trial records is
kept, in the trial's own words: text patient IDs (``S-101``), its own column names
(``subject_id``, ``group``, ``study_day``, ``mood``, ``madrs``), missing ratings, sessions
attended or missed, and one patient who drops out after day 12. Run from anywhere:
``python examples/own_trial/make_example.py`` (the same seed gives the same files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from plasticity_rl import load_config, simulate, tables

HERE = Path(__file__).parent
DROPOUT, DROPOUT_DAY = 9, 12  # patient 9 (arm cbt_delayed) leaves after day 12
COLUMNS = {"patient": "subject_id", "arm": "group", "day": "study_day", "rating": "mood", "score": "madrs"}


def main() -> None:
    sim = simulate(load_config(HERE / "trial.yaml"))
    tabs = tables(sim)
    keep = {
        "patients": ["patient", "arm"],
        "sessions": ["patient", "step", "day", "attended"],
        "ema": ["patient", "day", "rating"],
        "visits": ["patient", "day", "score"],
    }
    out = HERE / "data"
    out.mkdir(exist_ok=True)
    for name, cols in keep.items():
        df = tabs[name][cols].copy()
        gone = (df["patient"] == DROPOUT) & (df["day"] > DROPOUT_DAY) if "day" in df else None
        if name in ("ema", "visits"):
            df = df[~gone]  # nothing recorded after the dropout
        if name == "sessions":
            df.loc[gone, "attended"] = False  # sessions after it were not attended
        if name in ("ema", "visits"):
            df = df[np.isfinite(df[cols[-1]])]  # a missing rating is simply not in the export
        df["patient"] = [f"S-{101 + int(p)}" for p in df["patient"]]
        df.rename(columns=COLUMNS).to_csv(out / f"{name}.csv", index=False, float_format="%.4f")
    print(f"written: {sorted(p.name for p in out.glob('*.csv'))} in {out}")


if __name__ == "__main__":
    main()
