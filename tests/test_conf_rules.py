"""conf/ and config.RULES name the same keys: a key added to an option without a rule fails here.

Every leaf key of every option of the groups below (and of train.yaml itself) is a value a user
sets; each one has its check in config.RULES, or is exempt below with the reason why.
"""

from pathlib import Path
from typing import Any

import pytest
import yaml

from dltrain.cli import conf_dir
from dltrain.config import RULES

CONF = Path(conf_dir())
# The groups whose options hold values of a run (not hydra, experiment: they pick options or
# set Hydra's own keys). reg holds presets that set keys of the other groups.
GROUPS = ("data", "model", "loss", "optim", "sched", "init", "trainer", "probe", "reg", "logger",
          "pde")
# Mappings whose names vary by option (a pde's coefficients and coordinates): one rule checks
# the whole node, and stands for its leaves.
WHOLE = ("pde.coefficients", "pde.domain", "pde.guess", "pde.eval")
EXEMPT = {
    "_target_",  # the class an option builds: an unknown one is refused when it is built
    "name",  # the option's label in reports, set by choosing the option (data=moons)
    "defaults",  # Hydra's composition list (trainer=smoke extends trainer=default)
    "hydra",  # train.yaml: Hydra's own settings (run directories, callbacks)
}


def leaves(node: Any, prefix: str) -> list[str]:
    """The dotted paths of the leaves of a YAML mapping (a list or null is a leaf)."""
    if not isinstance(node, dict) or not node:
        return [prefix]
    return [path for key, value in node.items()
            for path in leaves(value, f"{prefix}.{key}" if prefix else str(key))]


def exempt(key: str) -> bool:
    return any(part in EXEMPT for part in key.split(".")) or key.startswith(
        tuple(w + "." for w in WHOLE))


def option_keys(path: Path, group: str) -> list[str]:
    """The dotted keys an option file sets, where the composed config has them."""
    text = path.read_text()
    globally = "# @package _global_" in text.splitlines()[:3]
    content = yaml.safe_load(text) or {}
    return leaves(content, "" if globally else group) if content else []  # logger=none: none


def options() -> list[tuple[str, Path]]:
    found = [(group, path) for group in GROUPS for path in sorted((CONF / group).glob("*.yaml"))]
    return [*found, ("", CONF / "train.yaml")]


def test_every_group_has_options():
    assert all(list((CONF / group).glob("*.yaml")) for group in GROUPS)


@pytest.mark.parametrize(("group", "path"), options(),
                         ids=lambda v: v.stem if isinstance(v, Path) else v)
def test_every_key_of_every_option_has_a_rule(group, path):
    ruled = {rule.key for rule in RULES}
    missing = [key for key in option_keys(path, group) if key not in ruled and not exempt(key)]
    assert not missing, f"{path.relative_to(CONF)}: no rule in config.RULES for {missing}"


def test_every_rule_names_a_key_of_some_option():
    """A rule for a key no option has is a leftover (or a typo that checks nothing)."""
    keys = {key for group, path in options() for key in option_keys(path, group)} | set(WHOLE)
    stray = [rule.key for rule in RULES if rule.key not in keys]
    assert not stray, f"rules for keys that no option in conf/ has: {stray}"


def test_leaves_follow_packages():
    assert option_keys(CONF / "reg" / "l2.yaml", "reg") == ["penalty.l2"]
    assert "optim.lr" in option_keys(CONF / "optim" / "adam.yaml", "optim")
    assert "data.augment.crop" in option_keys(CONF / "reg" / "augment.yaml", "reg")
    assert "trainer.grad_clip.max_norm" in option_keys(CONF / "trainer" / "default.yaml",
                                                       "trainer")
