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
