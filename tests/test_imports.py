"""dltrain's modules import one another without a cycle.

Every import counts: at the top of a module, inside a function (a lazy import) and under
`if TYPE_CHECKING:`. A lazy import hides a cycle from Python, not from the reader: two modules
that need each other are one module in two files. The graph is read from the source with `ast`
(nothing is imported), restricted to dltrain's own modules. An import of `dltrain.a.b` is an
edge to that module only: that Python runs the package's __init__ first is not counted, so a
package's __init__ may import its own submodules, as long as none of them imports back.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import dltrain

ROOT = Path(dltrain.__file__).parent


def module_name(path: Path) -> str:
    parts = ["dltrain", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The dltrain modules that module `name` (file `path`) imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from pkg import sub` imports the submodule pkg.sub
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, set(known)) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[list[str], list[str]]]:
    """The strongly connected components of more than one module (Tarjan), each as one cycle
    through some of its members and the others of the component, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[list[str], list[str]]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycle = _a_cycle(sorted(component), graph)
                found.append((cycle, sorted(set(component) - set(cycle))))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _a_cycle(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A path from the component's first module back to itself, inside the component."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:  # breadth first: the shortest way round
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return [*paths[v], start]
            if w not in paths:
                paths[w] = [*paths[v], w]
                queue.append(w)
    return component


def test_the_reader_finds_a_cycle_through_lazy_and_type_checking_imports(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [(["a", "b", "c", "a"], [])]
    assert cycles({"a": {"b", "c"}, "b": {"a"}, "c": {"a"}}) == [(["a", "b", "a"], ["c"])]
    (tmp_path / "x.py").write_text(  # module dltrain.training.x
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dltrain.run import Job\n"
        "def f():\n    from dltrain import report\n    from . import hooks\n"
        "    from ..log import Logger\n")
    known = {"dltrain.run", "dltrain.report", "dltrain.training.hooks", "dltrain.training.x",
             "dltrain.log"}
    assert imported("dltrain.training.x", tmp_path / "x.py", known) == {
        "dltrain.run", "dltrain.report", "dltrain.training.hooks", "dltrain.log"}


def test_dltrain_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, (
        "import cycles among dltrain's modules (lazy and TYPE_CHECKING imports count; one "
        "cycle shown per group of modules that import one another):\n"
        + "\n".join("  " + " -> ".join(cycle) + (f" (with {', '.join(others)})" if others else "")
                     for cycle, others in found))


def test_the_command_line_starts_without_rich_or_the_report():
    """`dltrain --help`, `list` and every one-sentence refusal import dltrain.cli: what only a
    report or a run needs (rich, the report package, torch) is loaded where it is used."""
    code = ("import sys\nimport dltrain.cli\n"
            "print(*(m for m in ('torch', 'rich', 'dltrain.report') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_the_report_side_loads_neither_torch_nor_hydra():
    """`dltrain report` of an experiment's sweep reads the probes' tags: dltrain.probes must
    stay light to import (its builder loads on first use)."""
    code = ("import sys\n"
            "import dltrain.sweep_report, dltrain.experiments, dltrain.probes.tags\n"
            "import dltrain.hparams\n"
            "print(*(m for m in ('torch', 'hydra') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
