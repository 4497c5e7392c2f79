"""Every config field a user can write is documented, and docs/config.md is the reference as generated."""

from __future__ import annotations

import inspect
import re
import types
from pathlib import Path
from typing import Union, get_args, get_origin

import pytest
from pydantic import BaseModel

import plasticity_rl.models.variants
from plasticity_rl.config import Config, ModelSpec, config_markdown, config_sections
from plasticity_rl.params import PARAMS
from plasticity_rl.registry import MODELS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
REGENERATE = (
    "regenerate the part between the markers with "
    '`python -c "from plasticity_rl.config import config_markdown; print(config_markdown())"`'
)


def _models_in(annotation) -> tuple[list[type[BaseModel]], bool]:
    """The pydantic models a field's annotation holds (through Optional, unions and lists)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        found = [_models_in(a) for a in args]
        return [m for ms, _ in found for m in ms], any(is_list for _, is_list in found)
    if origin in (list, tuple, set, frozenset):
        return _models_in(args[0])[0], True
    if origin is dict:
        return _models_in(args[1])[0], False
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation], False
    return [], False


def every_field() -> list[tuple[str, type[BaseModel], str]]:
    """(YAML path, model, field name) of every field reachable from Config, walked independently
    of the code under test."""
    out, seen = [], set()

    def walk(model: type[BaseModel], path: str) -> None:
        for name, info in model.model_fields.items():
            here = f"{path}.{name}" if path else name
            out.append((here, model, name))
            models, is_list = _models_in(info.annotation)
            for sub in models:
                if (sub, here) not in seen:
                    seen.add((sub, here))
                    walk(sub, here + ("[]" if is_list else ""))

    walk(Config, "")
    return out


FIELDS = every_field()


def row_of(field: str, section: str) -> str:
    """The reference's row for ``field`` in the section whose heading names ``section``."""
    md = config_markdown()
    part = re.search(rf"^## [^\n]*`{re.escape(section)}`[^\n]*\n(.*?)(?=^## |\Z)", md, re.S | re.M)
    assert part, f"no section for {section!r}"
    (row,) = [line for line in part.group(1).splitlines() if line.startswith(f"| `{field}` |")]
    return row


def test_the_walk_reaches_every_part_of_a_config():
    paths = {p for p, _, _ in FIELDS}
    assert len(FIELDS) > 70
    for path in (
        "experiment.patients_per_arm",
        "arms[].doses[].amount",
        "arms[].sessions[].attendance",
        "timing_sweep.therapy.hour",
        "observations.visits.missing_rate",
        "population.A.sd",
    ):
        assert path in paths


def test_every_field_has_a_description():
    missing = [
        path for path, model, name in FIELDS if not (model.model_fields[name].description or "").strip()
    ]
    assert not missing, f"config fields without a description: {missing}"


def test_every_section_of_the_reference_is_a_model_the_walk_reaches():
    reached = {model for _, model, _ in FIELDS}
    assert {model for model, _ in config_sections()} == reached


def test_parameter_fields_take_meaning_and_unit_from_the_parameter_table():
    by_path = {path.replace("[]", ""): (model, name) for path, model, name in FIELDS}
    for p in PARAMS.values():
        model, name = by_path[p.config]
        text = model.model_fields[name].description
        assert p.meaning in text and f"[{p.unit or 'no unit'}]" in text, p.name
        assert not p.source or p.source in text, p.name


def test_docs_config_md_holds_the_reference_as_generated():
    text = DOC.read_text()
    assert text.count(START) == 1 and text.count(END) == 1, (
        f"docs/config.md needs the markers {START} ... {END}"
    )
    generated = text.split(START, 1)[1].split(END, 1)[0]
    assert config_markdown() in text, f"docs/config.md is out of date: {REGENERATE}"
    assert generated.strip() == config_markdown().strip(), f"docs/config.md is out of date: {REGENERATE}"


def test_the_reference_is_deterministic():
    assert config_markdown() == config_markdown()


def test_the_intro_says_how_to_see_the_resolved_config_and_that_unknown_keys_are_errors():
    intro = DOC.read_text().split(START, 1)[0]
    assert "plasticity-rl validate CONFIG --show" in intro
    assert "Unknown keys are errors" in intro


def test_every_section_has_a_yaml_path_heading_and_a_row_per_field():
    md = config_markdown()
    for heading in (
        "top level",
        "`experiment`",
        "`arms[]`",
        "`arms[].doses[]`",
        "`arms[].sessions[]`",
        "`observations.visits`",
        "`observations.ema`",
        "`timing_sweep`",
    ):
        assert re.search(rf"^## .*{re.escape(heading)}", md, re.M), heading
    rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert len(rows) == sum(len(m.model_fields) for m, _ in config_sections())


@pytest.mark.parametrize(
    ("section", "field", "states"),
    [
        ("experiment", "patients_per_arm", [">= 1", "<= 1000000", "`40`", "[patients]"]),
        ("experiment", "name", ["required", "matches `^[A-Za-z0-9_.-]+$`", "1 to 80 characters"]),
        ("observations.ema", "missing_rate", [">= 0 and < 1", "`0`", "[probability]"]),
        ("observations.visits", "missing_rate", [">= 0 and < 1"]),
        ("observations.visits", "noise_sd_baseline", [">= 0 and <= 30", "`7`", "[MADRS points]", "Lii"]),
        ("plasticity", "kernel", ["one of `gamma`, `diffexp`", "`gamma`"]),
        ("plasticity", "tau_k_hours", ["> 0 and <= 720", "[hours]"]),
        ("plasticity", "dissociation_gone_by_hours", ["`infusion_minutes` / 60"]),
        ("arms[].doses[]", "hour", [">= 0 and < 24", "`10`", "[hours]"]),
        ("arms[].doses[]", "amount", [">= 0 and <= 4", "[relative dose]"]),
        ("arms[].doses[]", "day", ["required", ">= 0", "`experiment.days`"]),
        ("arms[].sessions[]", "p_c", [">= 0 and <= 1", "`0.9`"]),
        ("arms[]", "patients", ["integer or null", "`null`", ">= 1 and <= 1000000"]),
        ("population", "logit_alpha0", ["`{mean: -4.595, sd: 0.3}`"]),
        ("population", "kappa", ["> 0 and < 1", "`0.0075`", "[per step]"]),
        ("timing_sweep", "delays_days", ["at least 1 item", "list of numbers"]),
        ("timing_sweep", "followup_day", ["1 to `experiment.days`"]),
        ("observations.visits", "days", ["`[0, 7, 7.5, 8, 9, 10, 14, 21, 28, 35, 42, 49, 56]`"]),
    ],
)
def test_the_reference_states_the_real_constraints(section, field, states):
    row = row_of(field, section)
    for text in states:
        assert text in row, f"{section}.{field}: {text!r} not in {row!r}"


def test_the_variant_field_names_every_bundled_variant():
    bundled = [
        name for name, m in MODELS.items() if inspect.getmodule(m.everyday) is plasticity_rl.models.variants
    ]
    assert len(bundled) >= 5
    text = ModelSpec.model_fields["variant"].description
    assert all(f"`{name}`" in text for name in bundled), (bundled, text)
