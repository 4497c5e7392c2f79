"""Configs: the bundled ones validate; bad ones are rejected naming the field and the bad value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from plasticity_rl.config import (
    Config,
    ConfigError,
    bundled_config_path,
    config_from_dict,
    config_to_yaml,
    load_config,
    sweep_arm_name,
)

CONFIG_DIR = Path(bundled_config_path("flagship")).parent
BUNDLED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
FLAGSHIP = yaml.safe_load(bundled_config_path("flagship").read_text())


def test_the_expected_configs_are_bundled():
    assert {"flagship", "single_infusion", "six_infusions", "boosters", "timing_sweep"} <= set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_config_validates_and_round_trips(name):
    cfg = load_config(bundled_config_path(name))
    assert isinstance(cfg, Config)
    arms = cfg.all_arms()
    assert arms and len({a.name for a in arms}) == len(arms)
    # the resolved YAML (every default filled in) loads back to the same config
    again = config_from_dict(yaml.safe_load(config_to_yaml(cfg)))
    assert again == cfg


def test_timing_sweep_expands_to_one_arm_per_delay():
    cfg = load_config(bundled_config_path("timing_sweep"))
    sweep = cfg.timing_sweep
    arms = {a.name: a for a in cfg.all_arms()}
    assert set(arms) == {"no_therapy"} | {sweep_arm_name(d) for d in sweep.delays_days}
    assert arms["no_therapy"].sessions == []
    dose_t = sweep.dose.day + sweep.dose.hour / 24
    for d in sweep.delays_days:
        arm = arms[sweep_arm_name(d)]
        (session,) = arm.sessions
        hours_later = (sweep.therapy.hour - sweep.dose.hour) / 24
        assert session.times_days()[0] == pytest.approx(dose_t + d + hours_later)
        assert session.repeat == sweep.therapy.repeat and arm.doses == [sweep.dose]


# --------------------------------------------------------------------------- rejections


def edit(path: str, value=None, delete=False):
    """A function that sets (or deletes) ``path`` in a copy of the flagship config."""

    def apply(data):
        node = data
        parts = path.replace("]", "").replace("[", ".").split(".")
        keys = [int(k) if k.isdigit() else k for k in parts]
        for k in keys[:-1]:
            node = node[k]
        if delete:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
        return data

    return apply


REJECTIONS = {
    "unknown key": (edit("experiment.sede", 3), ["experiment.sede", "3", "unknown key"]),
    "unknown nested key": (edit("arms[1].doses[0].dosage", 2), ["arms[1].doses[0].dosage", "unknown key"]),
    "unknown top-level key": (edit("arm", []), ["arm:", "unknown key"]),
    "wrong type (int)": (edit("experiment.days", "many"), ["experiment.days", "'many'", "integer"]),
    "wrong type (number)": (edit("environment.p_env", "high"), ["environment.p_env", "'high'", "number"]),
    "wrong type (list)": (edit("arms[2].sessions", "daily"), ["arms[2].sessions", "'daily'", "list"]),
    "probability above 1": (edit("environment.p_env", 1.3), ["environment.p_env", "1.3", "<= 1"]),
    "session probability above 1": (
        edit("arms[2].sessions[0].p_c", 1.3),
        ["arms[2].sessions[0].p_c", "1.3", "<= 1"],
    ),
    "open probability at 0": (edit("population.kappa", 0), ["population.kappa", "got 0", "> 0"]),
    "dose before day 0": (edit("arms[1].doses[0].day", -1), ["arms[1].doses[0].day", "-1", ">= 0"]),
    "negative dose hour": (edit("arms[1].doses[0].hour", -2.0), ["arms[1].doses[0].hour", "-2", ">= 0"]),
    "session after the last day": (
        edit("arms[2].sessions[0].day", 60),
        ["arms[2]", "sessions[0]", "60.5833", "experiment.days = 56"],
    ),
    "session block running past the end": (
        edit("arms[2].sessions[0].repeat", 60),
        ["arms[2]", "sessions[0]", "56.5833", "experiment.days = 56"],
    ),
    "dose after the last day": (edit("arms[1].doses[0].day", 56), ["arms[1]", "doses[0]", "56.4167"]),
    "empty arm": (
        lambda d: (d["arms"][0].update(doses=[], sessions=[]), d)[1],
        ["arms[0]", "'placebo'", "no doses and no sessions"],
    ),
    "duplicate arm names": (edit("arms[1].name", "placebo"), ["arm names must be unique", "'placebo'"]),
    "unknown model variant": (
        edit("model.variant", "schemaa"),
        ["model.variant", "'schemaa'", "'schema_asym'"],
    ),
    "missing required field": (
        edit("experiment.seed", delete=True),
        ["experiment.seed", "required", "missing"],
    ),
    "missing arm name": (edit("arms[3].name", delete=True), ["arms[3].name", "required", "missing"]),
    "no arms": (lambda d: (d.pop("arms"), d)[1], ["give at least one arm"]),
    "visit after the last day": (
        edit("observations.visits.days", [0, 7, 70]),
        ["observations.visits.days[2]", "70"],
    ),
    "diffexp rise after decay": (
        lambda d: (d["plasticity"].update(kernel="diffexp", tau_rise_hours=60), d)[1],
        ["plasticity", "tau_rise_hours", "60"],
    ),
}


@pytest.mark.parametrize("case", list(REJECTIONS), ids=list(REJECTIONS))
def test_bad_config_is_rejected_naming_field_and_value(case):
    change, expected = REJECTIONS[case]
    data = change(copy.deepcopy(FLAGSHIP))
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


def test_config_error_is_a_value_error_with_one_entry_per_bad_field():
    data = copy.deepcopy(FLAGSHIP)
    data["environment"]["p_env"] = 1.3
    data["environment"]["bias"] = -0.1
    with pytest.raises(ValueError) as info:
        config_from_dict(data)
    err = info.value
    assert isinstance(err, ConfigError)
    assert len(err.problems) == 2
    assert any("environment.p_env" in p for p in err.problems)
    assert any("environment.bias" in p for p in err.problems)


def test_schedule_problems_are_reported_one_line_each():
    # ConfigError promises "one line per problem"; the cross-field checks (schedule, unique
    # names, visits) currently come back joined into one '(top level): a; b' line.
    data = copy.deepcopy(FLAGSHIP)
    data["arms"][1]["name"] = "placebo"  # duplicate arm name
    data["arms"][2]["sessions"][0]["day"] = 60  # session after the last day
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert not any(p.startswith("(top level)") for p in problems), problems


def test_short_experiment_without_visits_section_validates():
    # A 14-day experiment that never mentions visits should not be rejected for the default
    # visit days (which reach day 55): the user did not write them and cannot see them.
    data = {
        "experiment": {"name": "short", "seed": 1, "days": 14},
        "arms": [{"name": "k", "doses": [{"day": 2}]}],
    }
    cfg = config_from_dict(data)
    assert all(d <= 14 for d in cfg.observations.visits.days)


# --------------------------------------------------------------------------- files


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    data = copy.deepcopy(FLAGSHIP)
    data["environment"]["p_env"] = 1.3
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "environment.p_env" in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [("- just\n- a list\n", "YAML mapping"), ("experiment: [unclosed\n", "not valid YAML")],
)
def test_load_config_rejects_non_configs(tmp_path, text, expected):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_missing_files_and_bundled_names_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="no bundled config named 'nope'"):
        bundled_config_path("nope")


def test_the_synergy_2x2_and_contrast_days_come_from_the_design(edit):
    """Roles from the arms' ingredients (an active dose; therapy and when), not from arm names."""
    from plasticity_rl.analysis import default_contrast_days, synergy_roles

    flagship = load_config(bundled_config_path("flagship"))
    roles, why = synergy_roles(flagship)
    assert why == "" and roles == {
        "placebo": "placebo",
        "ketamine": "ketamine",
        "therapy": "cbt_alone",
        "combination": "ketamine_cbt_window",  # CBT from day 8, not the delayed block from day 22
    }
    # the same design under other names gives the same 2 x 2
    raw = flagship.model_dump(mode="json")
    names = {"placebo": "saline", "ketamine": "k", "cbt_alone": "cbt", "ketamine_cbt_window": "k+cbt"}
    for arm in raw["arms"]:
        arm["name"] = names.get(arm["name"], arm["name"])
    renamed, _ = synergy_roles(config_from_dict(raw))
    assert renamed == {role: names[arm] for role, arm in roles.items()}
    # the end of the in-window block (day 11 + 14 h), of the last block (day 25 + 14 h), the last day
    assert default_contrast_days(flagship) == [12, 26, 56]
    # a design without the 2 x 2 says why
    roles, why = synergy_roles(load_config(bundled_config_path("six_infusions")))
    assert roles is None and "no arm gives therapy with an active dose" in why


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"\xff\xfe\x00\x01binary", ["not UTF-8 text", "byte 0"]),
        (b"experiment:\n  name: caf\xe9\n", ["not UTF-8 text", "save the config as UTF-8"]),
        (b"a: \x00\x00\n", ["NUL bytes"]),
        (("a: " + "[" * 5000 + "]" * 5000 + "\n").encode(), ["nested too deeply"]),
    ],
)
def test_configs_that_are_not_yaml_text_get_exit_2_and_a_message(tmp_path, content, words):
    from typer.testing import CliRunner

    from plasticity_rl.cli import app

    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2, res.output
    for word in words:
        assert word in res.output, res.output


def test_a_config_saved_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + bundled_config_path("single_infusion").read_bytes())
    assert load_config(path).experiment.name == "single_infusion"


def test_an_unknown_key_names_the_nearest_field_and_the_allowed_ones():
    data = yaml.safe_load(bundled_config_path("flagship").read_text())
    data["experiment"]["sede"] = 3
    data["arms"][1]["doses"][0]["dosage"] = 2
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    text = str(info.value)
    assert "experiment.sede: got 3; unknown key; did you mean 'seed'?" in text
    assert "arms[1].doses[0].dosage: got 2; unknown key; allowed here: day, hour, amount" in text
