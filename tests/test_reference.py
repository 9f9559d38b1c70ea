"""The configuration reference (dltrain/reference.py) holds every group, option, key, default
and allowed range of conf/ and config.RULES.

conf/ is walked here on its own (PyYAML, the `# @package` line read by hand), not through the
generator's walk, so a key the generator skips fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dltrain.config import RULES
from dltrain.reference import allowed, comments, package, render
from dltrain.rules import Rule, choice, integer, number
from tests.conftest import ROOT

CONF = ROOT / "conf"


def files() -> list[Path]:
    return sorted(p for p in CONF.rglob("*.yaml"))


def leaves(node: Any, prefix: str, top: bool = True) -> list[tuple[str, Any]]:
    """(dotted path, value) of every leaf of a mapping; the file's `defaults` (Hydra's list of
    what it builds on) left out."""
    out = []
    for key, value in node.items():
        if top and key == "defaults":
            continue
        path = f"{prefix}.{key}" if prefix else str(key)
        deeper = isinstance(value, dict) and value
        out += leaves(value, path, top=False) if deeper else [(path, value)]
    return out


def where(path: Path) -> tuple[str, str]:
    """The heading of a file's section (`data=table`, `train.yaml`) and its keys' prefix."""
    rel = path.relative_to(CONF)
    if rel.parent == Path("."):
        return rel.name, ""
    group = rel.parent.as_posix()
    head = path.read_text().splitlines()[:3]
    prefix = group.replace("/", ".")
    for line in head:
        if line.startswith("# @package "):
            prefix = line.split()[2]
            prefix = "" if prefix == "_global_" else prefix
    return f"{group}={path.stem}", prefix


@pytest.fixture(scope="module")
def page() -> str:
    return render(CONF)


def sections(page: str) -> dict[str, str]:
    """A section per heading: `### `data=table` (default) { #data-table }` -> "data=table"."""
    found = {}
    for part in re.split(r"^#{2,3} ", page, flags=re.M)[1:]:
        title = re.match(r"`([^`]+)`", part)
        if title:
            found[title[1]] = part
    return found


def rows(section: str) -> dict[str, str]:
    """The table rows of a section by key, Markdown's escapes undone."""
    out = {}
    for line in section.splitlines():
        match = re.match(r"\| `([^`]+)` \|(.*)\|$", line)
        if match:
            out[match[1]] = re.sub(r"\\(.)", r"\1", match[2])
    return out


def written(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_every_file_of_conf_has_its_section(page):
    found = sections(page)
    missing = [where(p)[0] for p in files() if where(p)[0] not in found]
    assert not missing, f"no section in the reference for {missing}"
    assert len(files()) > 70  # the walk found the tree


@pytest.mark.parametrize("path", files(), ids=lambda p: p.relative_to(CONF).as_posix())
def test_every_key_of_conf_is_in_the_reference_with_its_default(page, path):
    heading, prefix = where(path)
    table = rows(sections(page)[heading])
    content = yaml.safe_load(path.read_text()) or {}
    for key, value in leaves(content, prefix):
        assert key in table, f"{heading}: {key} is not in the reference"
        if isinstance(value, str) and "\n" in value:
            value = value.splitlines()[0]
        elif isinstance(value, list):
            value = "[" + ", ".join(map(written, value)) + "]"
        assert f"`{written(value)}`" in table[key], f"{heading}: {key}'s default {value!r}"


def test_every_rule_says_what_it_allows_in_every_row_of_its_key(page):
    by_key = {rule.key: rule for rule in RULES}
    checked = 0
    for section in sections(page).values():
        for key, row in rows(section).items():
            if key in by_key:
                # the check's own refusal of a value no check takes, from "must be" on
                said = by_key[key].check(object())
                assert said is not None
                words = said.removeprefix("must be ").split("; did you mean")[0]
                assert words in row, f"{key}: {words!r} not in {row!r}"
                checked += 1
    seen = {k for s in sections(page).values() for k in rows(s)}
    assert {rule.key for rule in RULES} <= seen
    assert checked >= len(RULES)


def test_every_group_is_listed_with_its_options_and_default(page):
    table = page.split("## The groups", 1)[1].split("\n## ", 1)[0]
    for group_dir in sorted({p.parent for p in files() if p.parent != CONF}):
        group = group_dir.relative_to(CONF).as_posix()
        row = next(line for line in table.splitlines() if line.startswith(f"| {group} |"))
        for option in group_dir.glob("*.yaml"):
            assert f"[{option.stem}](#{group.replace('/', '-')}-{option.stem})" in row
    assert re.search(r"^\| data \|.*\| `glyphs` \|$", table, flags=re.M)
    assert re.search(r"^\| logger \|.*\| `\[tensorboard\]` \|$", table, flags=re.M)


def test_comments_are_read_beside_above_and_continued():
    text = """# @package _global_
# The option, first line.
#   dltrain a=1
top:
  # above b
  b: 1          # beside b
  c: null       # beside c,
                # continued
  d: |-
    e: not a key
  f: [1, 2]
g: "x # y"      # after a quoted hash
"""
    header, found = comments(text)
    assert header == ["The option, first line.", "  dltrain a=1"]
    # beside wins over above; a block scalar's lines are not keys
    assert found == {"top.b": "beside b", "top.c": "beside c, continued",
                     "g": "after a quoted hash"}
    assert "top.d" not in found and "top.e" not in found
    assert package("reg", text) == ""
    assert package("hydra/launcher", "# a launcher\nx: 1\n") == "hydra.launcher"
    assert package("g", "# @package hydra.launcher\nx: 1\n") == "hydra.launcher"


def test_a_block_comment_above_a_key_is_its_description():
    _, found = comments("# head\n\n# what a does,\n# in two lines\na: 1\nb: 2\n")
    assert found == {"a": "what a does, in two lines"}


@pytest.mark.parametrize(("rule", "words"), [
    (Rule("k", number(0, 1, lo_open=True)), "a number in (0, 1)"),
    (Rule("k", number(0)), "a number >= 0"),
    (Rule("k", integer(1, optional=True)), "a whole number >= 1 or null"),
    (Rule("k", choice(("stop", "skip"))), "one of: stop, skip"),
])
def test_allowed_is_the_rules_own_words(rule, words):
    assert allowed(rule) == words


def test_the_generator_imports_no_torch():
    code = ("import sys; from dltrain.reference import render; render(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "False"


def test_the_guides_table_of_groups_names_every_option():
    """docs/configs.md's table of groups is written by hand: it must name every option."""
    table = (ROOT / "docs" / "configs.md").read_text()
    for group_dir in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"):
        row = next(line for line in table.splitlines()
                   if line.startswith(f"| {group_dir.name} |"))
        missing = [p.stem for p in group_dir.glob("*.yaml")
                   if not re.search(rf"\b{re.escape(p.stem)}\b", row)]
        assert not missing, f"docs/configs.md: {group_dir.name} lacks {missing}"
