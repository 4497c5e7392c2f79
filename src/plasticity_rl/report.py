"""A run's HTML report: one self-contained page per run folder.

:func:`write_report` reads what a run folder holds — ``config.yaml``, ``provenance.json``,
``data/arms.csv``, ``figures/*.png`` with ``figures/captions.md``, and any fit outputs
(CSV and JSON files in ``fit*/`` folders) — and writes ``report.html`` beside them. The page
embeds every figure as a base64 PNG and carries its own CSS: no scripts, no network requests,
so it opens anywhere, offline, and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

MAX_ROWS = 200  # rows shown per table; the rest are counted, not shown

HONESTY = (
    "No trial has randomised therapy inside versus outside the ketamine window. Every timing effect "
    "in this report — the benefit of therapy inside the plasticity window, the therapy-timing curve — "
    "is this model's prediction, not a trial result. The ketamine boost A of the learning rate has "
    "never been measured in humans: it is a parameter to sweep and to fit."
)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.8em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #0072B2; padding-bottom: 0.15em; margin-top: 2em; }
h3 { margin-top: 1.4em; }
.sub { color: #555; margin-top: 0; }
.note { border: 2px solid #D55E00; background: #fff5ee; padding: 0.7em 1em; border-radius: 6px;
        font-weight: 600; color: #8a3a00; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef4f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.failed td { background: #fde2e1; color: #8b0000; font-weight: 600; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #333; font-size: 0.95em; margin-top: 0.4em; }
nav ul { columns: 2; }
.muted { color: #666; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 0.2em; }
ul.glance { font-size: 1.05em; padding-left: 1.2em; }
ul.glance li { margin: 0.35em 0; }
.pass { color: #00613f; font-weight: 700; }
.fail { color: #8b0000; font-weight: 700; }
details { margin: 0.3em 0; }
details > summary { cursor: pointer; padding: 0.15em 0; }
details[open] > summary { margin-bottom: 0.3em; }
"""

FAIL_WORDS = {"fail", "failed", "failure", "error", "bad", "false", "no", "miss"}
PASS_COLUMNS = ("ok", "passed", "pass", "converged", "diagnostics_passed")
FAIL_COLUMNS = ("failed", "fail", "flagged")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in {"true", "1", "yes", "y"}
    try:
        return bool(v) and not pd.isna(v)
    except (TypeError, ValueError):
        return bool(v)


def failed_rows(df: pd.DataFrame) -> pd.Series:
    """Rows a fit output flags as failed: a true ``failed``/``flagged`` column, a false ``ok``/``passed``
    column, or a ``status``/``result`` of fail/failed/error."""
    flags = pd.Series(False, index=df.index)
    lower = {c.lower(): c for c in df.columns}
    for name in FAIL_COLUMNS:
        if name in lower:
            flags |= df[lower[name]].map(_truthy)
    for name in PASS_COLUMNS:
        if name in lower:
            flags |= ~df[lower[name]].map(_truthy)
    for name in ("status", "result", "verdict"):
        if name in lower:
            flags |= df[lower[name]].astype(str).str.strip().str.lower().isin(FAIL_WORDS)
    return flags


def _fmt(v: Any) -> tuple[str, bool]:
    if isinstance(v, bool):
        return str(v), False
    if isinstance(v, float):
        if pd.isna(v):
            return "", True
        return (f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"), True
    if isinstance(v, int):
        return str(v), True
    return str(v), False


def table_html(
    df: pd.DataFrame, *, flag_failed: bool = False, max_rows: int = MAX_ROWS, flagged: str = "flagged failed"
) -> str:
    """An HTML table (escaped); rows flagged failed get class ``failed`` when ``flag_failed``
    (counted below the table as ``flagged``)."""
    failed = failed_rows(df) if flag_failed else pd.Series(False, index=df.index)
    shown = df.head(max_rows)
    out = [
        "<table>",
        "<thead><tr>" + "".join(f"<th>{_e(c)}</th>" for c in df.columns) + "</tr></thead>",
        "<tbody>",
    ]
    for idx, row in shown.iterrows():
        cls = ' class="failed"' if bool(failed.loc[idx]) else ""
        cells = []
        for v in row.tolist():
            text, num = _fmt(v.item() if hasattr(v, "item") else v)
            cells.append(f'<td class="num">{_e(text)}</td>' if num else f"<td>{_e(text)}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    extra = []
    if len(df) > max_rows:
        extra.append(f"showing the first {max_rows} of {len(df)} rows")
    n_failed = int(failed.sum())
    if n_failed:
        extra.append(f"<strong>{n_failed} row(s) {flagged}</strong> (highlighted)")
    if extra:
        out.append(f'<p class="muted">{"; ".join(extra)}</p>')
    return "\n".join(out)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(d, list) and all(not isinstance(x, (dict, list)) for x in d):
        return {prefix.rstrip("."): " ".join(str(x) for x in d)}
    if isinstance(d, list):
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): d}


def _kv_table(d: dict) -> str:
    flat = _flatten(d)
    df = pd.DataFrame({"key": list(flat), "value": [str(v) for v in flat.values()]})
    return table_html(df, max_rows=10_000)


def _read_captions(path: Path) -> dict[str, str]:
    """``## name`` sections of captions.md -> caption text."""
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for block in re.split(r"^## ", path.read_text(), flags=re.M)[1:]:
        name, _, text = block.partition("\n")
        out[name.strip()] = " ".join(text.split())
    return out


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _arms_section(run_dir: Path, cfg: dict) -> str:
    arms_csv = run_dir / "data" / "arms.csv"
    if arms_csv.is_file():
        return table_html(pd.read_csv(arms_csv, keep_default_na=False))
    rows = []
    for a in cfg.get("arms") or []:
        rows.append(
            {
                "arm": a.get("name"),
                "label": a.get("label") or a.get("name"),
                "doses": len(a.get("doses") or []),
                "sessions": len(a.get("sessions") or []),
            }
        )
    if cfg.get("timing_sweep"):
        ts = cfg["timing_sweep"]
        rows.append(
            {
                "arm": "timing sweep",
                "label": f"therapy delays {ts.get('delays_days')} days",
                "doses": 1,
                "sessions": (ts.get("therapy") or {}).get("repeat", 1),
            }
        )
    return table_html(pd.DataFrame(rows)) if rows else "<p>No arms found in config.yaml.</p>"


def _summary(cfg: dict) -> str:
    ex = cfg.get("experiment") or {}
    pl = cfg.get("plasticity") or {}
    pop = cfg.get("population") or {}
    A = pop.get("A") or {}
    rows = [
        ("experiment", ex.get("name")),
        ("description", " ".join(str(ex.get("description") or "").split())),
        ("model variant", (cfg.get("model") or {}).get("variant")),
        ("seed", ex.get("seed")),
        ("days x steps per day", f"{ex.get('days')} x {ex.get('steps_per_day')}"),
        ("patients per arm", ex.get("patients_per_arm")),
        ("plasticity kernel", pl.get("kernel")),
        ("ketamine boost A (population)", f"Normal({A.get('mean')}, {A.get('sd')}) — not measured in humans"),
        ("dissociation gate", pl.get("gate")),
    ]
    rows = [(k, str(v)) for k, v in rows if v not in (None, "")]
    df = pd.DataFrame(rows, columns=["setting", "value"])
    return table_html(df)


def _fit_sections(run_dir: Path) -> list[tuple[str, str]]:
    """(title, html) for every CSV and JSON in fit*/ folders (recursively), in path order."""
    out = []
    folders = sorted(p for p in run_dir.glob("fit*") if p.is_dir()) + [run_dir / "compare"]
    for folder in (f for f in folders if f.is_dir()):
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix.lower() not in (".csv", ".json"):
                continue
            rel = path.relative_to(run_dir)
            try:
                if path.suffix.lower() == ".csv":
                    body = table_html(pd.read_csv(path), flag_failed=True)
                else:
                    data = json.loads(path.read_text())
                    failed = isinstance(data, dict) and any(
                        (k.lower() in FAIL_COLUMNS and _truthy(v))
                        or (k.lower() in PASS_COLUMNS and not _truthy(v))
                        for k, v in data.items()
                        if not isinstance(v, (dict, list))
                    )
                    body = ('<p class="note">this file flags the fit as failed</p>' if failed else "") + (
                        _kv_table(data)
                        if isinstance(data, dict)
                        else table_html(pd.DataFrame(data), flag_failed=True)
                        if isinstance(data, list)
                        else f"<p>{_e(data)}</p>"
                    )
            except (ValueError, OSError, pd.errors.ParserError) as exc:
                body = f'<p class="muted">could not read {_e(rel)}: {_e(exc)}</p>'
            out.append((str(rel), body))
    return out


def _figures_html(run_dir: Path, fig_dir: Path) -> str:
    """Every PNG in ``fig_dir`` with its caption, in the order captions.md lists them."""
    captions = _read_captions(fig_dir / "captions.md")
    found = {p.stem: p for p in sorted(fig_dir.glob("*.png"))} if fig_dir.is_dir() else {}
    pngs = [found[n] for n in captions if n in found] + [p for n, p in found.items() if n not in captions]
    figs = []
    for p in pngs:
        cap = captions.get(p.stem, "")
        anchor = p.stem if fig_dir == run_dir / "figures" else f"{fig_dir.parent.name}-{p.stem}"
        figs.append(
            f'<figure id="fig-{_e(anchor)}"><h3>{_e(p.stem)}</h3>'
            f'<img src="{_png_data_uri(p)}" alt="{_e(p.stem)}: {_e(cap[:200])}">'
            f"<figcaption>{_e(cap) or '<em>no caption</em>'}</figcaption></figure>"
        )
    return "\n".join(figs)


def _validation_section(path: Path) -> str:
    """``validation.csv`` (``plasticity-rl check-targets``): every checked target, misses highlighted."""
    from plasticity_rl.validation import PATIENTS, shown_targets, summary_line

    df = pd.read_csv(path, dtype={"n": str, "published": str}, keep_default_na=False, na_values=[""])
    shown = shown_targets(df)
    skipped = df[df["verdict"] == "not checked"]
    return (
        f"<p>{_e(summary_line(df))}. The model's value comes from {PATIENTS:,} simulated patients per arm under this "
        f"run's config; its interval is that of the statistic in simulated trials of the published size. "
        f"Misses are highlighted; <code>validation.csv</code> says why the package's defaults miss each.</p>"
        + table_html(shown, flag_failed=True, flagged="missed")
        + (
            "<p class='muted'>Not checked: "
            + "; ".join(f"<code>{_e(i)}</code> ({_e(w)})" for i, w in zip(skipped["id"], skipped["why"]))
            + "</p>"
            if len(skipped)
            else ""
        )
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _flags_failure(body: str) -> bool:
    """Whether a rendered fit file flags something as failed (a highlighted row or the note)."""
    return 'class="failed"' in body or "flags the fit as failed" in body


def _at_a_glance(run_dir: Path) -> str:
    """The run's verdicts in a few lines, read from its own files: did each fit pass, which model
    predicts new patients better and by how much, the synergy the fit infers, the published
    trials. Nothing here is computed that the files below do not hold."""
    items = []
    for diag_path in sorted(run_dir.glob("fit*/diagnostics.json")):
        d = _read_json(diag_path) or {}
        name = diag_path.parent.name
        extra = ""
        if (d.get("extra_draws") or 0) > 0:
            kept, dropped = d.get("draws_per_chain"), d.get("discarded_draws") or 0
            extra = f"; sampled longer (kept {kept} draws per chain" + (
                f", the first {dropped} counted as warm-up)" if dropped else ")"
            )
        if d.get("passed"):
            verdict = '<span class="pass">passed its diagnostics</span>'
        else:
            n = len(d.get("failures") or [])
            count = f" ({n} check{'s' * (n != 1)} failed)" if n else ""
            verdict = f'<span class="fail">FAILED its diagnostics</span>{count}'
        how = [d.get("method", "nuts")] + ([f"{d['likelihood']} likelihood"] if d.get("likelihood") else [])
        items.append(f"<li><code>{_e(name)}</code> ({_e(', '.join(how))}): {verdict}{_e(extra)}</li>")
    loo_path = run_dir / "compare" / "loo.csv"
    if loo_path.is_file():
        loo = pd.read_csv(loo_path, index_col="model").sort_values("rank")
        if len(loo) >= 2:
            best, second = loo.index[0], loo.index[1]
            from plasticity_rl.workflow import loo_warning

            # compare writes loo_conditional.csv beside loo.csv only when loo.csv is the integrated one
            integrated = (run_dir / "compare" / "loo_conditional.csv").is_file()
            pareto = _read_json(run_dir / "compare" / "loo_pareto_k.json") or {}
            fits = [run_dir / f"fit-{m}" for m in loo.index if (run_dir / f"fit-{m}").is_dir()]
            note = loo_warning(pareto, integrated, fits or None) if pareto else None
            caveat = f'; <span class="fail">{_e(note)}</span>' if note else ""

            failed = [
                m
                for m in loo.index
                if "diagnostics_passed" in loo and not _truthy(loo.loc[m, "diagnostics_passed"])
            ]
            marked = (
                f'; <span class="fail">{_e(", ".join(failed))} failed its diagnostics</span>'
                if failed
                else ""
            )
            items.append(
                f"<li>New patients are predicted better by <code>{_e(best)}</code> than by "
                f"<code>{_e(second)}</code>: {loo.loc[second, 'elpd_diff']:.1f} ± {loo.loc[second, 'dse']:.1f} "
                f"nats ({'integrated ' if integrated else ''}PSIS-LOO){caveat}{marked}</li>"
            )
    for syn_path in sorted(run_dir.glob("fit*/synergy.csv")):
        syn = pd.read_csv(syn_path)
        if "contrast" not in syn or syn.empty:
            continue
        row = syn[syn["belief"] == "S"].iloc[0] if "S" in set(syn["belief"]) else syn.iloc[0]
        items.append(
            f"<li><code>{_e(syn_path.parent.name)}</code>: ketamine × therapy-in-the-window synergy in "
            f"{_e(row['belief'])} on day {row['day']:g}: {row['mean']:.3f} "
            f"(94 % HDI {row['hdi_94%_low']:.3f} to {row['hdi_94%_high']:.3f}; "
            f"P(&gt; 0) = {row['p_gt_0']:.2f}), {_e(row['contrast'])}</li>"
        )
    validation = run_dir / "validation.csv"
    if validation.is_file():
        from plasticity_rl.validation import summary_line

        df = pd.read_csv(validation, dtype=str, keep_default_na=False, na_values=[""])
        items.append(
            f'<li>Published trials: {_e(summary_line(df))} (<a href="#published">the table</a>)</li>'
        )
    if not items:
        return "<p class='muted'>No fit, comparison or validation in this run.</p>"
    return "<ul class='glance'>" + "".join(items) + "</ul>"


def write_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html``: config summary, figures with captions, tables, provenance.

    Self-contained: figures are embedded as base64 PNG data URIs, the CSS is inline, and the page
    has no scripts and loads nothing from the network. Returns the path written.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder")
    cfg_path = run_dir / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.is_file() else {}
    cfg = cfg if isinstance(cfg, dict) else {}
    name = (cfg.get("experiment") or {}).get("name") or run_dir.name
    prov_path = run_dir / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else None

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>plasticity_rl report: {_e(name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>plasticity_rl report: {_e(name)}</h1>",
        '<p class="sub">Simulated trial of the ketamine plasticity window: ketamine raises the learning rate '
        "for a few days; therapy delivered then supplies the corrective experiences the core belief learns from.</p>",
        f'<p class="note" id="honesty">Honesty note. {_e(HONESTY)}</p>',
    ]
    sections: list[tuple[str, str, str]] = []  # (id, title, html)
    sections.append(("summary", "At a glance", _at_a_glance(run_dir)))
    sections.append(
        ("config", "Configuration", _summary(cfg) + "<h3>Arms</h3>" + _arms_section(run_dir, cfg))
    )

    # Teaching figures first, then each fit's and the model comparison's.
    fig_dirs = (
        [run_dir / "figures"] + sorted(run_dir.glob("fit*/figures")) + [run_dir / "compare" / "figures"]
    )
    for fig_dir in fig_dirs:
        figs = _figures_html(run_dir, fig_dir)
        if figs:
            rel = fig_dir.parent.relative_to(run_dir)
            key = "figures" if str(rel) == "." else f"figures-{rel}"
            title = "Figures" if str(rel) == "." else f"Figures: {rel}"
            sections.append((key, title, figs))

    validation = run_dir / "validation.csv"
    if validation.is_file():
        sections.append(("published", "Against published trials", _validation_section(validation)))

    tables = []
    fits = _fit_sections(run_dir)
    if fits:
        tables.append(
            "<p>Fit outputs, one file each (click to open); a file that flags a failure opens by "
            "itself, its rows highlighted.</p>"
        )
        tables += [
            f"<details{' open' if _flags_failure(body) else ''}><summary><code>{_e(t)}</code></summary>"
            f"{body}</details>"
            for t, body in fits
        ]
    if tables:
        sections.append(("fit", "Fit results", "\n".join(tables)))

    if prov is not None:
        sections.append(("provenance", "Provenance", _kv_table(prov)))
    files = sorted(
        str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and p.name != "report.html"
    )
    sections.append(
        (
            "files",
            "Files in this run",
            "<p class='muted'>" + ", ".join(f"<code>{_e(f)}</code>" for f in files) + "</p>",
        )
    )

    parts.append(
        "<nav><ul>" + "".join(f'<li><a href="#{i}">{_e(t)}</a></li>' for i, t, _ in sections) + "</ul></nav>"
    )
    for i, t, body in sections:
        parts.append(f'<section id="{i}"><h2>{_e(t)}</h2>\n{body}\n</section>')
    parts.append(f'<p class="muted">{_e(HONESTY)}</p></body></html>')
    out = run_dir / "report.html"
    tmp = run_dir / ".report.html.partial"
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(out)
    return out
