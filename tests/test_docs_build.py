"""The guide builds as a site with `mkdocs build --strict` (a broken link or anchor, a page left
out of the nav, a missing snippet fail it), and the README's links lead to files that exist."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"


def test_the_site_builds_strict_with_the_reference_and_the_readmes_set_up(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")  # mkdocs-material, the theme
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    for page in sorted((ROOT / "docs").glob("*.md")):
        name = "" if page.stem == "index" else f"{page.stem}/"
        assert (site / name / "index.html").is_file(), page.name

    # the generated reference: every rule's key is on it, in a table cell of its own
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    from dltrain.config import RULES

    cells = set(re.findall(r"<td><code>([^<]+)</code></td>", reference))
    assert {rule.key for rule in RULES} <= cells

    # the home page takes the README's set-up commands (pymdownx.snippets), word for word
    block = README.read_text(encoding="utf-8").split("## Set-up", 1)[1].split("```")[1]
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2
    home = html.unescape(re.sub(r"<[^>]+>", "", (site / "index.html").read_text("utf-8")))
    assert all(command in home for command in commands)


def test_the_readmes_links_lead_to_files_of_the_repository():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert len(local) >= 10
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
