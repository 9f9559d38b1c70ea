"""MkDocs hook (mkdocs.yml `hooks:`): the configuration reference is a page of the site that
no one writes by hand.

At every build, `reference.md` is generated from conf/ and dltrain.config.RULES
(dltrain/reference.py) and added to the site's files, so the page cannot disagree with the
code it describes: there is no copy to forget to regenerate.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config: MkDocsConfig) -> Files:
    if str(ROOT) not in sys.path:  # a checkout where dltrain is not installed: read it from here
        sys.path.insert(0, str(ROOT))
    from dltrain.reference import render

    files.append(File.generated(config, "reference.md", content=render(ROOT / "conf")))
    return files
