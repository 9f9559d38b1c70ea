"""What `dltrain` knows of its config tree: where it is, its groups and their options, and
the `dltrain list` verb."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from dltrain.config import suggest
from dltrain.errors import ConfigError

CONFIG_NAME = "train"


def conf_dir() -> Path:
    """The config tree: inside the installed package, else at the top of a source checkout."""
    package = Path(__file__).resolve().parent.parent  # dltrain/
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"dltrain's config tree (conf/{CONFIG_NAME}.yaml) is missing")


def _description(path: Path) -> str:
    """The first comment line of a config file that is not a Hydra directive."""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith("#") and not text.startswith("# @"):
            return text.lstrip("# ").strip()
        if text and not text.startswith("#"):
            break
    return ""


def groups(root: Path) -> dict[str, list[str]]:
    """Config groups (folders of conf/, Hydra's own excluded) and their options."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(root.iterdir())
        if d.is_dir() and d.name != "hydra" and any(d.glob("*.yaml"))
    }


def help_groups(root: Path) -> str:
    """The groups and their options as Hydra's help writes `$APP_CONFIG_GROUPS`, one
    `group: a, b` line each. Hydra asks its config repository for every group's options, and
    deep-copies the repository each time (~0.9 s of `dltrain --help`); conf/ says the same."""
    return "".join(f"{group}: {', '.join(names)}\n" for group, names in groups(root).items())


def defaults(root: Path) -> dict[str, list[str]]:
    """The options the primary config selects for each group."""
    chosen: dict[str, list[str]] = {}
    for entry in OmegaConf.load(root / f"{CONFIG_NAME}.yaml").get("defaults", []):
        if isinstance(entry, str) or not hasattr(entry, "items"):
            continue
        for group, option in entry.items():
            if option is not None and not str(group).startswith("override"):
                chosen[str(group)] = [str(o) for o in option] if OmegaConf.is_list(option) \
                    else [str(option)]
    return chosen


def list_options(args: Sequence[str]) -> int:
    """`dltrain list [GROUP]`: every option of every group (or of one), one line each."""
    root = conf_dir()
    options = groups(root)
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
            print(f"  {mark} {name:<{width}}{_description(root / group / f'{name}.yaml')}")
    return 0
