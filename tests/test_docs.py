"""The documents a user reads say what the code does: generated parts in sync, links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plasticity_rl.data import schema_markdown
from plasticity_rl.params import PARAMS, params_markdown

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

REGENERATE = (
    "regenerate it from plasticity_rl.params.params_markdown() / plasticity_rl.data.schema_markdown()"
)


def test_the_quick_start_is_exactly_the_two_commands():
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", README, re.S).group(1)
    assert block.strip().splitlines() == [
        "pip install -e . && plasticity-rl run",
        'pip install -e ".[test]" && python -m pytest',
    ]


def test_docs_carry_the_parameter_table_and_the_table_schema_as_generated():
    assert params_markdown() in (ROOT / "docs" / "model.md").read_text(), f"docs/model.md: {REGENERATE}"
    assert schema_markdown() in (ROOT / "docs" / "tables.md").read_text(), f"docs/tables.md: {REGENERATE}"
    model = (ROOT / "docs" / "model.md").read_text()
    assert all(f"`{name}`" in model for name in PARAMS)


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
def test_user_docs_hold_no_development_history(doc):
    text = doc.read_text()
    for pattern in (r"(?i)\bsession \d", r"(?i)\battempts? \d", r"\bDESIGN\.md", r"(?i)steering"):
        assert not re.search(pattern, text), f"{doc.name}: {pattern!r}"


@pytest.mark.parametrize("doc", USER_DOCS, ids=lambda p: p.name)
def test_markdown_tables_render_and_links_resolve(doc):
    lines = doc.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            assert i == 0 or lines[i - 1].strip() == "", (
                f"{doc.name}:{i + 1}: a table needs a blank line before it"
            )
            header = lines[i].count("|") - lines[i].count("\\|")
            assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1]), f"{doc.name}:{i + 2}: no separator row"
            j = i + 1
            while j < len(lines) and lines[j].startswith("|"):
                cells = lines[j].count("|") - lines[j].count("\\|")
                assert cells == header, f"{doc.name}:{j + 1}: {cells - 1} cells, header has {header - 1}"
                j += 1
    for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text()):
        assert (doc.parent / target).exists(), f"{doc.name}: link to {target} does not resolve"


def test_the_command_line_page_is_generated_from_the_cli(tmp_path):
    """docs/cli.md is typer's own rendering of every command, option and default."""
    import subprocess
    import sys

    out = tmp_path / "cli.md"
    command = [sys.executable, "-m", "typer", "plasticity_rl.cli", "utils", "docs"]
    subprocess.run(
        [*command, "--name", "plasticity-rl", "--title", "Command line", "--output", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_text() == (ROOT / "docs" / "cli.md").read_text(), (
        "docs/cli.md: regenerate it with python -m typer plasticity_rl.cli utils docs --name "
        "plasticity-rl --title 'Command line' --output docs/cli.md"
    )


def test_the_docs_site_builds_with_no_broken_link_or_reference(tmp_path):
    """mkdocs build --strict: a missing page, a broken link or anchor, or an API reference that
    no longer resolves fails the build (and this test)."""
    import os
    import subprocess
    import sys

    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for page in ("index.html", "model/index.html", "config/index.html", "cli/index.html", "api/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "check_targets" in api and "simulate" in api  # the API reference is rendered, not empty
    notebook = tmp_path / "site" / "notebooks" / "01_prediction_errors" / "index.html"
    assert notebook.is_file()


def test_the_citation_file_names_the_installed_version():
    from importlib.metadata import version

    import yaml

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(cff["version"]) == version("plasticity-rl")
    assert f"version = {{{version('plasticity-rl')}}}" in README  # the README's BibTeX entry too


def test_the_adding_a_variant_page_runs_as_written():
    """docs/variants.md's example registers a model, simulates with it and checks it: run it."""
    from plasticity_rl.registry import MODELS

    (code,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "variants.md").read_text(), re.S)
    try:
        exec(compile(code, "docs/variants.md", "exec"), {"__name__": "docs_variants"})
    finally:
        MODELS.pop("leaky_rw", None)
