"""What `dltrain` knows of its config tree: where it is, its groups and their options (the
`dltrain list` verb is listing.py)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from dltrain.choices import CONFIG_NAME, conf_dir

__all__ = ["CONFIG_NAME", "conf_dir"]  # where they were first: the CLI's users import them


def _description(path: Path) -> str:
    """The first comment line of a config file that is not a Hydra directive."""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith("#") and not text.startswith("# @"):
            return text.lstrip("# ").strip()
        if text and not text.startswith("#"):
            break
    return ""


def groups(*dirs: Path) -> dict[str, list[str]]:
    """Config groups (folders of conf/, Hydra's own excluded) and their options; with more
    folders (a `-cd DIR`), their groups and options too."""
    found: dict[str, set[str]] = {}
    for root in dirs:
        for d in sorted(root.iterdir()):
            if d.is_dir() and d.name != "hydra" and any(d.glob("*.yaml")):
                found.setdefault(d.name, set()).update(p.stem for p in d.glob("*.yaml"))
    return {group: sorted(found[group]) for group in sorted(found)}


def help_groups(*dirs: Path) -> str:
    """The groups and their options as Hydra's help writes `$APP_CONFIG_GROUPS`, one
    `group: a, b` line each. Hydra asks its config repository for every group's options, and
    deep-copies the repository each time (~0.9 s of `dltrain --help`); conf/ says the same."""
    return "".join(f"{group}: {', '.join(names)}\n" for group, names in groups(*dirs).items())


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
