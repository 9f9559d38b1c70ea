"""Building objects from config nodes with Hydra's `_target_` convention.

A config node such as `{name: adam, _target_: torch.optim.Adam, lr: 0.001}` maps one to one
onto a class; what only exists at run time (parameters, the DataSpec, the step count) is passed
at the call site. `name` labels the option for reports and is not an argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from dltrain.config import own_code, plain
from dltrain.errors import ConfigError


def node_kwargs(node: Mapping[str, Any]) -> dict[str, Any]:
    """The node as a plain dict, interpolations resolved, without its `name` label."""
    params = plain(node)
    params.pop("name", None)
    return params


def call_target(node: Mapping[str, Any], group: str, optional: dict[str, Any] | None = None,
                **runtime: Any) -> Any:
    """Call `node`'s `_target_` with its keys plus the `runtime` keyword arguments.

    Hydra resolves the target into a partial; the runtime objects are handed to it directly
    (Hydra would otherwise turn a dataclass such as the DataSpec into a dict). The keys are
    bound to the target's signature first, so a key the target does not take is a
    ConfigError naming the group, not a TypeError from deep inside.

    `optional` keywords are passed only where the target takes them and the config leaves
    them unset (null or absent): run-time choices such as fused optimiser kernels on a GPU.
    """
    # Hydra is imported here, not at the top: dltrain.models and dltrain.data import this
    # module, and they must import without Hydra (which only composing a config needs).
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    # `name` labels a conf/ option; a node written by hand may have only its `_target_`.
    label = f"{group}={node.get('name', node.get('_target_', '?'))}"
    if own_code(node):  # the user's class: found as python finds it, or one sentence
        label = f"{group}._target_={node['_target_']}"
        locate(str(node["_target_"]), label)
    try:
        factory = instantiate(node_kwargs(node), _partial_=True, _convert_="all")
    except InstantiationException as err:
        raise ConfigError(f"{label}: {str(err).splitlines()[0]}") from None
    try:
        accepted = inspect.signature(factory.func).parameters
    except ValueError:  # a builtin without a signature: let the call itself check
        accepted = {}
    for key, value in (optional or {}).items():
        if key in accepted and factory.keywords.get(key) is None:
            runtime[key] = value
    try:
        inspect.signature(factory.func).bind(*factory.args, **{**factory.keywords, **runtime})
    except TypeError as err:
        if own_code(node):
            keys = ", ".join(k for k in factory.keywords) or "none"
            raise ConfigError(
                f"{label} does not take the keys of the {group} node ({err}): its signature "
                f"is {factory.func.__name__}{inspect.signature(factory.func)}, the node's keys "
                f"are {keys}; give it **keys, or a -cd DIR with {group}/NAME.yaml of its own "
                "keys.") from None
        raise ConfigError(f"{label} does not accept its config: {err}.") from None
    except ValueError:  # a builtin without a signature: let the call itself check
        pass
    try:
        return factory(**runtime)
    except ConfigError:  # our own classes say what is wrong in their own words
        raise
    except ValueError as err:
        # torch's constructors raise ValueError for arguments they refuse (a negative rate, a
        # schedule that cycles a momentum the optimiser lacks): the config's values, not a bug.
        raise ConfigError(f"{label} refuses its config: {str(err).rstrip('.')}.") from None


def locate(target: str, label: str) -> Any:
    """The object `module.name` of a user's `_target_`, imported as python imports it (the
    current folder first); what is wrong with it is one sentence."""
    import importlib
    import os

    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise ConfigError(f"{label} must name a class as module.Class, e.g. mymodule.MyNet.")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"{label}: there is no module {err.name} (python looks in the "
                          f"current folder, {os.getcwd()}, and the installed packages).") \
            from None
    except Exception as err:  # the user's module fails as it is imported
        raise ConfigError(f"{label}: importing {module_name} failed: "
                          f"{type(err).__name__}: {err}".splitlines()[0]) from None
    if not hasattr(module, attr):
        from dltrain.rules import suggest

        near = suggest(attr, [n for n in dir(module) if not n.startswith("_")])
        hint = f"; did you mean {module_name}.{near}?" if near else "."
        raise ConfigError(f"{label}: {module_name} has no {attr}{hint}")
    return getattr(module, attr)
