"""The `dltrain list [GROUP] [-cd DIR]` verb: every option of every group, one line each."""

from __future__ import annotations

from collections.abc import Sequence

from dltrain.cli.options import _description, conf_dir, defaults, groups
from dltrain.cli.sources import sources
from dltrain.config import suggest
from dltrain.errors import ConfigError


def list_options(args: Sequence[str]) -> int:
    """`dltrain list [GROUP] [-cd DIR]`: every option of every group (or of one), one line
    each; a `-cd DIR`'s options too."""
    args = list(args)
    config_dir = None
    for flag in ("-cd", "--config-dir"):
        if flag in args:
            i = args.index(flag)
            if i + 1 >= len(args):
                raise ConfigError(f"dltrain list {flag} needs a folder: dltrain list {flag} DIR.")
            config_dir = args[i + 1]
            del args[i:i + 2]
    for arg in list(args):
        if arg.startswith("--config-dir="):
            config_dir = arg.partition("=")[2]
            args.remove(arg)
    src = sources(config_dir)
    root = conf_dir()
    options = groups(*src.dirs)
    if args:
        if args[0] not in options:
            near = suggest(args[0], options)
            hint = f"; did you mean {near}?" if near else f" (groups: {', '.join(options)})."
            raise ConfigError(f"There is no config group {args[0]!r}{hint}")
        options = {args[0]: options[args[0]]}
    chosen = defaults(root)
    width = max(len(o) for opts in options.values() for o in opts) + 2
    for group, names in options.items():
        picked = chosen.get(group, [])
        default = ", ".join(picked) if picked else "none"
        print(f"{group}  (default: {default})")
        for name in names:
            mark = "*" if name in picked else " "
            path = src.option_file(group, name)
            about = _description(path) if path is not None else ""
            if path is not None and src.config_dir is not None and path.is_relative_to(
                    src.config_dir):
                about = f"({src.config_dir.name}/) {about}".rstrip()
            print(f"  {mark} {name:<{width}}{about}")
    return 0
