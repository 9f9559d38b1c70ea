"""Where a run's config comes from: dltrain's conf/, a user's `-cd DIR`, and the primary
config (`-cn NAME`).

`-cd DIR` adds DIR's groups to Hydra's search path, after conf/ (the lightning-hydra-template
convention): `DIR/model/mynet.yaml` is `model=mynet`, `DIR/experiment/x.yaml` is
`experiment=x`. `-cn NAME` makes `DIR/NAME.yaml` the primary config; a plain YAML of keys (no
defaults list) is composed on top of train.yaml, through a primary config of our own whose
defaults list is `[train, NAME, _self_]` (in Hydra's ConfigStore, under `primary_name`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from dltrain.cli.options import CONFIG_NAME, conf_dir
from dltrain.errors import ConfigError
from dltrain.results import PLAIN_SUFFIX


@dataclass(frozen=True)
class Sources:
    """The config tree of a run: dltrain's conf/ (`root`), the user's `-cd` folder, if any,
    and the primary config's name as the user gave it."""

    root: Path
    config_dir: Path | None = None
    name: str = CONFIG_NAME

    @property
    def dirs(self) -> tuple[Path, ...]:
        """The folders searched for configs, in Hydra's order (conf/ first)."""
        return (self.root,) if self.config_dir is None else (self.root, self.config_dir)

    @property
    def plain(self) -> bool:
        """Whether the primary config is the user's YAML of keys, without a defaults list."""
        if self.name == CONFIG_NAME or self.config_dir is None:
            return False
        path = self.config_dir / f"{self.name}.yaml"
        return path.is_file() and "defaults" not in (OmegaConf.load(path) or {})

    @property
    def primary(self) -> str:
        """The name Hydra composes: the user's NAME, or the primary of a plain YAML."""
        return self.name + PLAIN_SUFFIX if self.plain else self.name

    def register(self) -> None:
        """Put the primary config of a plain YAML into Hydra's ConfigStore (idempotent)."""
        if not self.plain:
            return
        from hydra.core.config_store import ConfigStore

        ConfigStore.instance().store(
            name=self.primary, node={"defaults": [CONFIG_NAME, self.name, "_self_"]})

    def search_path(self):
        """Hydra's search path: conf/, then the -cd folder (as hydra.main makes it)."""
        from hydra._internal.utils import create_config_search_path
        from hydra.core.config_search_path import SearchPathQuery

        path = create_config_search_path(str(self.root))
        if self.config_dir is not None:
            path.prepend(provider="command-line", path=f"file://{self.config_dir}",
                         anchor=SearchPathQuery(provider="schema"))
        return path

    def option_file(self, group: str, option: str) -> Path | None:
        """The file of `group=option` that Hydra reads (conf/ wins over the -cd folder)."""
        for folder in self.dirs:
            path = folder / group / f"{option}.yaml"
            if path.is_file():
                return path
        return None


def sources(config_dir: str | None = None, config_name: str | None = None) -> Sources:
    """The Sources of `-cd config_dir -cn config_name`; a folder or file that is not there is
    one sentence."""
    root = conf_dir()
    folder = None
    if config_dir is not None:
        folder = Path(os.path.abspath(config_dir))
        if not folder.is_dir():
            raise ConfigError(f"-cd {config_dir}: there is no such folder (it should hold "
                              "your groups, e.g. DIR/model/mynet.yaml).")
    if folder is not None:
        _check_shadowing(root, folder)
    name = CONFIG_NAME if config_name is None else config_name.removesuffix(".yaml")
    if config_name is not None:
        if folder is None and name != CONFIG_NAME:
            raise ConfigError(f"-cn {config_name} needs the folder that holds it: "
                              f"dltrain -cd DIR -cn {name}.")
        if folder is not None and name == CONFIG_NAME and (folder / f"{name}.yaml").is_file():
            raise ConfigError(f"-cn {name}: {folder / (name + '.yaml')} has the name of "
                              "dltrain's own primary config, which comes first; rename yours.")
        if folder is not None and name != CONFIG_NAME \
                and not (folder / f"{name}.yaml").is_file():
            raise ConfigError(f"-cn {config_name}: there is no {folder / (name + '.yaml')}.")
    return Sources(root, folder, name)


def _check_shadowing(root: Path, folder: Path) -> None:
    """A -cd option named like one of dltrain's would never be read (conf/ comes first in
    Hydra's search path): one sentence, rather than a file silently ignored."""
    for path in sorted(folder.glob("*/*.yaml")):
        group = path.parent.name
        if (root / group / path.name).is_file():
            raise ConfigError(f"{path} has the name of dltrain's own {group}={path.stem}, "
                              f"which is found first; rename yours (e.g. {group}/my_"
                              f"{path.name}).")


def from_argv(argv: Sequence[str]) -> Sources:
    """The Sources named by Hydra's -cd/--config-dir and -cn/--config-name in `argv`."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(list(argv))
    return sources(args.config_dir, args.config_name)


def without_config_name(argv: Sequence[str]) -> list[str]:
    """`argv` without its -cn/--config-name (the primary is then given to hydra.main)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-cn", "--config-name"):
            skip = True
        elif not arg.startswith("--config-name="):
            out.append(arg)
    return out


@contextlib.contextmanager
def hydra_context(src: Sources, job_name: str = CONFIG_NAME) -> Iterator[None]:
    """Hydra initialised on `src`'s search path, as initialize_config_dir does for one folder
    (the global Hydra before it is restored on exit)."""
    from hydra import version
    from hydra._internal.hydra import Hydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    version.setbase("1.3")
    src.register()
    Hydra.create_main_hydra2(task_name=job_name, config_search_path=src.search_path())
    try:
        yield
    finally:
        restore_gh_from_backup(backup)
