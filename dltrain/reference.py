"""The configuration reference (docs/reference.md), written from conf/ and config.RULES.

Every group, every option file, every key with its default, the comment beside it in the YAML
as its description and, where config.RULES checks it, the values it accepts in the words of
the check's own refusal. The documentation site builds the page from this module each time
(scripts/docs_hooks.py), so the reference says what the code does, not what it once did.
Like config.py, it reads files and never imports torch: `python -m dltrain.reference` prints it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dltrain.choices import CONFIG_NAME, conf_dir
from dltrain.config import RULES
from dltrain.rules import PER_DRAW, PER_MEMBER, Rule, written

# The groups in the order train.yaml's defaults list picks them, then Hydra's groups that
# conf/ adds to (an option of a group not named here is still listed, after these).
ORDER = ("data", "model", "loss", "optim", "sched", "init", "trainer", "logger", "reg", "probe",
         "pde", "hparams_search", "experiment", "hydra/launcher", "hydra/help", "hydra/job_logging")
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")
_KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[^\s#\-][^:#]*?|\"[^\"]*\"|'[^']*')"
                  r":(?:\s+|$)(?P<rest>.*)$")
_BLOCK_SCALAR = re.compile(r"^[|>][-+]?\d*$")
_STACK = {PER_MEMBER: "vectorised: each member may have its own",
          PER_DRAW: "vectorised: each member may have its own, with its own draw of the data"}
# What the keys that label and build a node mean, where conf/ says nothing beside them.
_SAME_EVERYWHERE = {
    "name": "the option's label in reports and summary.json; choose an option with GROUP=OPTION",
    "_target_": "what builds the node: a class or function by its import path",
}


@dataclass(frozen=True)
class Key:
    """One key an option sets: its dotted path where the composed config has it."""

    path: str
    default: Any
    about: str
    leaf: bool = True


@dataclass(frozen=True)
class Option:
    """One option file: `group=name`, what its first comments say, what it builds on, its keys."""

    group: str
    name: str
    file: str  # relative to conf/
    about: list[str]  # the header comment, line by line (indented lines are commands)
    defaults: list[str]  # its own defaults list, as Hydra writes the entries
    keys: list[Key] = field(default_factory=list)


def _comment(rest: str) -> tuple[str, str, int]:
    """Split what follows `key:` into the value and the trailing comment (and the comment's
    column in `rest`, -1 if none); a '#' inside quotes is part of the value."""
    quote = ""
    for i, ch in enumerate(rest):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].rstrip(), rest[i + 1:].strip(), i
    return rest.rstrip(), "", -1


def comments(text: str) -> tuple[list[str], dict[str, str]]:
    """A YAML file's header comment (line by line, Hydra's `# @package` left out) and the
    comment of each key by dotted path: the comment on its line (continued on the lines below
    at the same column), else the comment lines right above it.

    PyYAML drops comments, so this reads lines: block mappings as conf/ writes them, block
    scalars skipped, list items skipped (a list's comment is its key's)."""
    header: list[str] = []
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings
    above: list[str] = []  # comment lines waiting for the key below them
    started = False
    in_header = True  # the file's first paragraph of comments
    scalar_indent = -1  # inside a block scalar (`|-`) of a key at this indent
    last: tuple[str, int] | None = None  # (path, column of its '#') for continued comments
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if scalar_indent >= 0:
            if not stripped or indent > scalar_indent:
                continue
            scalar_indent = -1
        if not stripped:
            if not started and above:  # not above a key: another paragraph of the header
                header += ["", *above]
            in_header = in_header and not header
            above, last = [], None
            continue
        if stripped.startswith("#"):
            words = stripped.lstrip("#")
            words = words[1:] if words.startswith(" ") else words
            if last is not None and line.index("#") == last[1]:
                found[last[0]] = f"{found[last[0]]} {words.strip()}".strip()
            elif in_header:
                if not _PACKAGE.match(stripped):
                    header.append(words.rstrip())
            else:  # above a key; before the first key, a later paragraph of the header
                above.append(words.rstrip())
            continue
        started, in_header = True, False
        match = _KEY.match(line)
        if match is None:  # a list item or a flow continuation
            last = None
            continue
        key = match["key"].strip("\"'")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), key])
        value, said, column = _comment(match["rest"])
        if said or above:
            found[path] = said or " ".join(w.strip() for w in above)
        above = []
        last = (path, len(line) - len(match["rest"]) + column) if said else None
        if _BLOCK_SCALAR.match(value):
            scalar_indent = indent
        elif not value:
            stack.append((indent, key))
    while header and not header[-1]:
        header.pop()
    return header, found


def package(group: str, text: str) -> str:
    """Where an option's keys land in the composed config: its group's path (hydra/launcher:
    hydra.launcher), or what its `# @package` line says (`_global_`: the top)."""
    for line in text.splitlines()[:5]:
        match = _PACKAGE.match(line.strip())
        if match:
            return "" if match[1] == "_global_" else match[1].replace("_group_", group)
    return group.replace("/", ".")


def _entries(defaults: Iterable[Any]) -> list[str]:
    """A defaults list as Hydra's entries read: `override /data: spirals` as data=spirals."""
    out = []
    for entry in defaults:
        if isinstance(entry, Mapping):
            for group, option in entry.items():
                name = str(group).removeprefix("override ").strip().lstrip("/")
                if isinstance(option, list):
                    option = "[" + ",".join(map(str, option)) + "]"
                out.append(f"{name}={written(option)}")
        else:
            out.append(str(entry))
    return out


def _keys(node: Any, prefix: str, about: Mapping[str, str], inner: str = "") -> Iterator[Key]:
    """The keys of a mapping, depth first: a mapping with a comment of its own is a row too."""
    for name, value in node.items():
        if inner == "" and name == "defaults":
            continue
        local = f"{inner}.{name}" if inner else str(name)
        path = f"{prefix}.{local}" if prefix else local
        if isinstance(value, dict) and value:
            if local in about:
                yield Key(path, None, about[local], leaf=False)
            yield from _keys(value, prefix, about, local)
        else:
            yield Key(path, value, about.get(local, _SAME_EVERYWHERE.get(str(name), "")))


def read_option(root: Path, file: Path) -> Option:
    """One option file of conf/ (or train.yaml, as the group "")."""
    rel = file.relative_to(root)
    group = rel.parent.as_posix() if rel.parent != Path(".") else ""
    text = file.read_text(encoding="utf-8")
    content = yaml.safe_load(text) or {}
    header, about = comments(text)
    return Option(group, file.stem, rel.as_posix(), header,
                  _entries(content.get("defaults") or []),
                  list(_keys(content, package(group, text), about)))


def options(root: Path | None = None) -> dict[str, list[Option]]:
    """Every option of every group of the config tree, by group, groups in ORDER."""
    root = root or conf_dir()
    found: dict[str, list[Option]] = {}
    for file in sorted(root.rglob("*.yaml")):
        if file.parent == root:
            continue
        option = read_option(root, file)
        found.setdefault(option.group, []).append(option)
    rank = {group: i for i, group in enumerate(ORDER)}
    return {g: found[g] for g in sorted(found, key=lambda g: (rank.get(g, len(ORDER)), g))}


class _Nothing:
    """A value that no check accepts, so that a check answers with what it does accept."""

    def __str__(self) -> str:
        return ""


def allowed(rule: Rule) -> str:
    """What a rule accepts, in its own words: "a number in (0, 1)", "one of: stop, skip"."""
    said = rule.check(_Nothing())
    if said is None:
        return "anything"
    return said.removeprefix("must be ").split("; did you mean")[0]


def _inline(text: str) -> str:
    """Prose for a table cell: Markdown's own characters escaped outside `code`, pipes
    everywhere (a pipe ends a cell even inside code)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside the code spans
        parts[i] = re.sub(r"([\\*_\[\]<>])", r"\\\1", parts[i])
    return "`".join(parts).replace("|", "\\|")


def _value(value: Any) -> str:
    """A default as an override writes it, in a code span."""
    if isinstance(value, str) and "\n" in value:
        lines = value.splitlines()
        return f"`{lines[0]}` … ({len(lines)} lines)".replace("|", "\\|")
    if isinstance(value, list):
        shown = "[" + ", ".join(written(v) for v in value) + "]"
    elif isinstance(value, dict):
        shown = "{}"
    elif isinstance(value, str) and value == "":
        shown = "''"
    else:
        shown = written(value)
    return f"`{shown}`".replace("|", "\\|")


def _header(lines: list[str]) -> list[str]:
    """An option's header comment as Markdown: prose as paragraphs, indented lines (commands)
    as code."""
    out: list[str] = []
    code: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if prose:
            out.extend([re.sub(r"([\\*_<>])", r"\\\1", " ".join(prose)), ""])
            prose.clear()
        if code:
            out.extend(["```", *code, "```", ""])
            code.clear()

    for line in lines:
        if line.startswith("  "):
            if prose:
                flush()
            code.append(line.strip())
        elif not line.strip():
            flush()
        else:
            if code:
                flush()
            prose.append(line.strip())
    flush()
    return out


def _table(keys: list[Key], rules: Mapping[str, Rule]) -> list[str]:
    rows = ["| key | default | allowed | what it sets |", "|---|---|---|---|"]
    for key in keys:
        rule = rules.get(key.path)
        accepts = _inline(allowed(rule)) if rule else ""
        if rule and rule.stack in _STACK:
            accepts += f"; {_STACK[rule.stack]}"
        default = _value(key.default) if key.leaf else "*(keys below)*"
        rows.append(f"| `{key.path}` | {default} | {accepts} | {_inline(key.about)} |")
    return rows


def _option(option: Option, rules: Mapping[str, Rule], chosen: Iterable[str]) -> list[str]:
    group = option.group
    title = f"{group}={option.name}" if group else option.file
    mark = " (default)" if option.name in chosen else ""
    out = [f"### `{title}`{mark} {{ #{_anchor(group, option.name)} }}", "",
           *_header(option.about)]
    where = f"`conf/{option.file}`"
    if option.defaults:
        builds = ", ".join(f"`{e}`" for e in option.defaults if e != "_self_")
        out += [f"{where}; builds on {builds}." if builds else f"{where}.", ""]
    else:
        out += [f"{where}.", ""]
    out += [*_table(option.keys, rules), ""] if option.keys else ["It sets no keys.", ""]
    return out


def primary(root: Path) -> tuple[Option, dict[str, list[str]]]:
    """train.yaml, and the option its defaults list picks for each group (several for a list,
    none for null)."""
    top = read_option(root, root / f"{CONFIG_NAME}.yaml")
    content = yaml.safe_load((root / f"{CONFIG_NAME}.yaml").read_text(encoding="utf-8"))
    chosen: dict[str, list[str]] = {}
    for entry in content.get("defaults") or []:
        if isinstance(entry, Mapping):
            for group, option in entry.items():
                if not str(group).startswith("override"):
                    picked = option if isinstance(option, list) else [option]
                    chosen[str(group)] = [str(o) for o in picked if o is not None]
    return top, chosen


def render(root: Path | None = None, rules: Iterable[Rule] = RULES) -> str:
    """The reference page, Markdown."""
    root = root or conf_dir()
    by_key = {rule.key: rule for rule in rules}
    top, chosen = primary(root)
    groups = options(root)
    out = [
        "# Configuration reference",
        "",
        "Every config group, every option, every key with its default, what it sets and the",
        "values it accepts. This page is generated from `conf/` (the comments beside the keys",
        "are their descriptions) and from `dltrain.config.RULES` (the *allowed* column is",
        "what the check of the key answers when a value is out of range) each time the site is",
        "built, so it says what the code does. `python -m dltrain.reference` prints it.",
        "",
        "Pick an option with `GROUP=OPTION` and change a key with `KEY=VALUE`; "
        "`dltrain list` shows the same groups, `dltrain --cfg job OVERRIDES` the composed "
        "config. A key of an option is a key of the config only while that option is chosen: "
        "`data.path` exists with `data=table`, not with `data=glyphs`.",
        "",
        "## The groups",
        "",
        "| group | options | default |",
        "|---|---|---|",
    ]
    for group, found in groups.items():
        names = ", ".join(f"[{o.name}](#{_anchor(group, o.name)})" for o in found)
        picked = chosen.get(group)
        default = ("`[" + ",".join(picked) + "]`" if group in ("logger", "reg", "probe")
                   else f"`{picked[0]}`" if picked else "none") if picked is not None else ""
        out.append(f"| {group} | {names} | {default} |")
    out += ["", f"## `{top.file}`: the primary config", "", *_header(top.about),
            "Its defaults list, in order: " + ", ".join(f"`{e}`" for e in top.defaults) + ".",
            "", *_table(top.keys, by_key), ""]
    for group, found in groups.items():
        out += [f"## {group}", ""]
        for option in found:
            out += _option(option, by_key, chosen.get(group, []))
    return "\n".join(out).rstrip() + "\n"


def _anchor(group: str, name: str) -> str:
    """The id of an option's heading (attr_list): data-table, hydra-launcher-submitit_slurm_ddp."""
    return f"{group}-{name}".replace("/", "-")


if __name__ == "__main__":
    print(render(), end="")
