"""The documentation, checked as text (no Nextflow, no subprocess): the README stays short, every
relative link and anchor resolves, every `virnucpro` command has its section in docs/cli.md, and the
Nextflow parameter tables of docs/usage.md are those of nextflow_schema.json, with their defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README_LIMIT = 12_288  # bytes: the size of the READMEs of nf-core/taxprofiler and nf-core/mag
TOP_LEVEL = ("README.md", "CONTRIBUTING.md", "CHANGELOG.md", "CITATIONS.md")
DOCS = sorted([*(REPO / name for name in TOP_LEVEL), *(REPO / "docs").glob("*.md")])
LINK = re.compile(r"!?\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)


def prose(path: Path) -> str:
    """A Markdown file without its fenced code blocks (links and headings there are not ones)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(path).splitlines():
        match = re.match(r"^#{1,6} (.+?)\s*#*$", line)
        if match:
            base = slug(match.group(1))
            name, n = base, 0
            while name in found:  # a repeated heading gets -1, -2, ...
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(path))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: ...
    ]


def test_readme_is_short():
    size = (REPO / "README.md").stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail into docs/ (limit {README_LIMIT})"


def test_docs_exist():
    for name in ("usage", "output", "cli", "models", "errors", "performance", "design"):
        assert (REPO / "docs" / f"{name}.md").is_file(), name
    readme_links = {target.split("#")[0] for target in relative_links(REPO / "README.md")}
    for name in ("usage", "output", "cli", "models", "errors", "performance", "design"):
        assert f"docs/{name}.md" in readme_links, f"README.md does not link docs/{name}.md"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor} in {resolved.name}")
    assert not broken, "\n".join(broken)


def cli_commands() -> list[str]:
    import typer

    import virnucpro.cli as cli

    app = cli.app if isinstance(cli.app, typer.Typer) else cli.app.app
    return sorted(typer.main.get_command(app).commands)


def test_every_command_has_a_section_in_cli_md():
    headings = [line for line in prose(REPO / "docs" / "cli.md").splitlines() if line.startswith("#")]
    commands = cli_commands()
    assert "run" in commands and "claim-gpus" in commands
    missing = [c for c in commands if not any(f"`{c}`" in h or f"`virnucpro {c}`" in h for h in headings)]
    assert not missing, f"commands without a heading in docs/cli.md: {missing}"


# --- The Nextflow parameter tables of docs/usage.md against nextflow_schema.json ---


def schema_parameters() -> dict[str, dict]:
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    return {name: spec for group in schema["$defs"].values() for name, spec in group["properties"].items()}


def parameter_rows() -> list[tuple[list[str], str, str]]:
    """(parameter names, default cell, meaning cell) of every row of the tables in the Parameters
    section of docs/usage.md."""
    text = prose(REPO / "docs" / "usage.md")
    section = text[text.index("\n## Parameters\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if line.startswith("| `--") and len(cells) == 3:
            rows.append((re.findall(r"`--(\w+)`", cells[0]), cells[1], cells[2]))
    return rows


def shown(default) -> str:
    """A schema default as the table writes it: `false`, `500`, `0.05`, `results`."""
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


def test_parameter_table_is_the_schema():
    schema = schema_parameters()
    rows = parameter_rows()
    listed = [name for names, _, _ in rows for name in names]
    assert len(listed) == len(set(listed)), "a parameter is listed twice"
    assert set(listed) - set(schema) == set(), "in docs/usage.md but not in nextflow_schema.json"
    assert set(schema) - set(listed) == set(), "in nextflow_schema.json but not in docs/usage.md"
    for names, default, meaning in rows:
        assert meaning, names
        for name in names:
            if "default" in schema[name]:
                assert f"`{shown(schema[name]['default'])}`" in default, (name, default)


def test_hidden_parameters_are_in_the_hidden_table():
    text = prose(REPO / "docs" / "usage.md")
    hidden_part = text[text.index("Hidden parameters") : text.index("\n## Options without a parameter")]
    hidden = set(re.findall(r"^\| `--(\w+)`", hidden_part, re.M))
    schema = schema_parameters()
    assert hidden == {name for name, spec in schema.items() if spec.get("hidden")}


def test_parameter_choices_are_named():
    """Where the schema allows only some values, the table names each of them."""
    schema = schema_parameters()
    for names, default, meaning in parameter_rows():
        for name in names:
            for choice in schema[name].get("enum", []):
                assert str(choice) in default + meaning, (name, choice)
