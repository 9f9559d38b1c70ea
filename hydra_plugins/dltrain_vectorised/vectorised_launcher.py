"""hydra/launcher=vectorised: the jobs of a sweep that differ only in stackable values (seed,
learning rate, weight decay, momentum/betas, init std, dropout rate, L1/L2 weights, noise and
draw of generated data) train as one stacked model in this process; every other job runs on
its own, as Hydra's basic launcher runs it, and the launcher says which and why.

Hydra finds this module through the `hydra_plugins` namespace package. It imports neither
torch nor dltrain's training code until a sweep is launched: Hydra imports every plugin at
start-up, `dltrain --help` included.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules without entering
# them in sys.modules, where dataclasses would look string annotations up.
import copy
import logging
import logging.config
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_loader import ConfigLoader
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.object_type import ObjectType
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    _flush_loggers,
    configure_log,
    env_override,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, OmegaConf, flag_override, open_dict, read_write
from omegaconf._utils import get_omega_conf_dumper

log = logging.getLogger(__name__)


@dataclass
class VectorisedLauncherConf:
    _target_: str = "hydra_plugins.dltrain_vectorised.vectorised_launcher.VectorisedLauncher"
    # the most jobs one stack trains; a larger group trains as several stacks
    max_members: int = 128
    # the members' checkpoints are written when the stack ends, on a stop request, and after
    # a validation once this many seconds have passed since they were last written
    save_every_s: float = 60.0


ConfigStore.instance().store(group="hydra/launcher", name="vectorised",
                             node=VectorisedLauncherConf, provider="dltrain")


class VectorisedLauncher(Launcher):
    def __init__(self, max_members: int = 128, save_every_s: float = 60.0) -> None:
        self.max_members = int(max_members)
        self.save_every_s = float(save_every_s)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        # The sweeper composes every job's config to validate the batch, then hands it to
        # launch(), which needs them all again: each kind of job is composed once for both
        # (ComposingOnce). hydra_context is the sweeper's too, so its validation uses it.
        if not isinstance(hydra_context.config_loader, ComposingOnce):
            hydra_context.config_loader = ComposingOnce(hydra_context.config_loader)

    # -- the jobs ------------------------------------------------------------------------

    def _job_configs(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
                     ) -> list[DictConfig]:
        """Every job's whole config (its `hydra` node too), as the basic launcher makes it."""
        assert self.hydra_context is not None and self.config is not None
        configs = []
        for i, overrides in enumerate(job_overrides):
            config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = initial_job_idx + i
            configs.append(config)
        return configs

    @staticmethod
    def _task(sweep_config: DictConfig) -> tuple[DictConfig, str]:
        """The task's config, resolved as the task resolves it inside run_job (Hydra holding
        the job's config, its runtime.output_dir set), and its run directory, as run_job
        names it (and sets it in `sweep_config`, as run_job does)."""
        # the config without its hydra node, as run_job hands it to a task (copying the rest
        # only: the hydra node is most of the config)
        task = OmegaConf.masked_copy(sweep_config, [k for k in sweep_config if k != "hydra"])
        OmegaConf.set_struct(task, OmegaConf.is_struct(sweep_config))
        # ${hydra:...}, or a resolver that may read Hydra's config, sees this job's
        with _holding(sweep_config):
            run_dir = os.path.abspath(os.path.join(str(sweep_config.hydra.sweep.dir),
                                                   str(sweep_config.hydra.sweep.subdir)))
            runtime = sweep_config.hydra.runtime
            with read_write(runtime), open_dict(runtime):
                runtime.output_dir = run_dir
            OmegaConf.resolve(task)
        return task, run_dir

    def _run(self, sweep_config: DictConfig, task_function: TaskFunction) -> JobReturn:
        assert self.hydra_context is not None and self.config is not None
        ret = run_job(hydra_context=self.hydra_context, task_function=task_function,
                      config=sweep_config, job_dir_key="hydra.sweep.dir",
                      job_subdir_key="hydra.sweep.subdir")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def _alone(self, sweep_config: DictConfig) -> JobReturn:
        log.info(f"\t#{sweep_config.hydra.job.num} : "
                 f"{' '.join(filter_overrides(sweep_config.hydra.overrides.task))}")
        assert self.task_function is not None
        return self._run(sweep_config, self.task_function)

    # -- the sweep -----------------------------------------------------------------------

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
               ) -> Sequence[JobReturn]:
        setup_globals()
        assert self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = self._job_configs(job_overrides, initial_job_idx)
        tasks = [self._task(c) for c in configs]
        plan = self._plan(configs, [t for t, _ in tasks])
        returns: dict[int, JobReturn] = {}
        units: list[list[int]] = sorted([*plan.stacks, *([i] for i in plan.alone)],
                                        key=lambda unit: unit[0])
        for unit in units:
            if unit[0] in plan.alone:
                returns[unit[0]] = self._alone(configs[unit[0]])
            else:
                number = plan.stacks.index(unit) + 1
                returns.update(self._stack(unit, configs, tasks, number))
        return [returns[i] for i in range(len(configs))]

    def _console_logging(self) -> None:
        """The jobs' own logging (dltrain's lines on the terminal) without their log files:
        while a stack trains, its members' train.log files are written by the stack."""
        assert self.config is not None
        conf = OmegaConf.to_container(self.config.hydra.job_logging, resolve=False)
        if not isinstance(conf, dict) or not conf.get("handlers"):
            return
        files = {name for name, h in conf["handlers"].items() if "filename" in h}
        conf["handlers"] = {n: h for n, h in conf["handlers"].items() if n not in files}
        for logger in [conf.get("root", {}), *conf.get("loggers", {}).values()]:
            if "handlers" in logger:
                logger["handlers"] = [h for h in logger["handlers"] if h not in files]
        logging.config.dictConfig(conf)

    def _plan(self, configs: Sequence[DictConfig], tasks: Sequence[DictConfig]) -> Any:
        from dltrain.cli.app import TrainTask
        from dltrain.data import SOURCES, Generated
        from dltrain.errors import ConfigError
        from dltrain.runtime import resolve_device
        from dltrain.vectorised.plan import Plan, job_numbers, plan, varying

        numbers = [int(c.hydra.job.num) for c in configs]
        if not isinstance(self.task_function, TrainTask):
            result = Plan(alone={i: "the task is not dltrain's training"
                                 for i in range(len(configs))})
        elif any(c.hydra.job.chdir for c in configs):
            result = Plan(alone={i: "hydra.job.chdir=true: a run that changes directory "
                                 "runs alone" for i in range(len(configs))})
        else:
            generated = {name for name, s in SOURCES.items() if isinstance(s, Generated)}
            devices: dict[str, str] = {}
            for task in tasks:
                name = str(task.trainer.device)
                try:
                    devices.setdefault(name, resolve_device(name).type)
                except ConfigError:  # the stack refuses it, and each job says why alone
                    devices[name] = "cpu"
            result = plan(tasks, generated, [devices[str(t.trainer.device)] for t in tasks],
                          self.max_members)
        log.info(f"Launching {len(configs)} jobs: {len(result.stacks)} vectorised "
                 f"stack{'s' if len(result.stacks) != 1 else ''} "
                 f"({sum(len(s) for s in result.stacks)} jobs), {len(result.alone)} alone")
        for k, stack in enumerate(result.stacks):
            keys = ", ".join(varying([tasks[i] for i in stack])) or "nothing"
            log.info(f"\tstack {k + 1}: {job_numbers([numbers[i] for i in stack])} "
                     f"({len(stack)} jobs differing in {keys})")
        by_reason: dict[str, list[int]] = {}
        for i, why in result.alone.items():
            by_reason.setdefault(why, []).append(numbers[i])
        for why, jobs in by_reason.items():
            log.info(f"\t{job_numbers(jobs)} alone: {why}")
        return result

    def _stack(self, unit: list[int], configs: Sequence[DictConfig],
               tasks: Sequence[tuple[DictConfig, str]], number: int) -> dict[int, JobReturn]:
        """Train the jobs `unit` as one stack, each a Hydra job as run_job makes it (its
        .hydra files, its log, the callbacks, the task's accounting); alone if they cannot
        stack."""
        from dltrain.vectorised.model import Unstackable
        from dltrain.vectorised.plan import job_numbers
        from dltrain.vectorised.train import train_stack

        numbers = [int(configs[i].hydra.job.num) for i in unit]
        log.info(f"Stack {number}: {job_numbers(numbers)}")
        # each member's .hydra files before it trains, as run_job writes a job's before its
        # task runs: a stack that stops leaves every member resumable and in the report
        for i in unit:
            _save_job_files(configs[i])
        self._console_logging()
        try:
            results = train_stack([tasks[i][0] for i in unit], [tasks[i][1] for i in unit],
                                  index_of=number, save_every_s=self.save_every_s)
        except Unstackable as why:
            log.warning(f"{job_numbers(numbers)} run one by one: {why}")
            return {i: self._alone(configs[i]) for i in unit}
        finally:
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        finish = self.task_function.finish  # a TrainTask's (see _plan)
        returns = {}
        stopped: SystemExit | None = None
        for i, result in zip(unit, results, strict=True):
            try:
                returns[i] = self._member_job(configs[i], tasks[i][0],
                                              _member(finish, tasks[i][1], result))
            except SystemExit as stop:  # an interrupted member stops the sweep, once every
                stopped = stop  # member of its stack is accounted for (they all stopped)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if stopped is not None:
            raise stopped
        return returns

    def _member_job(self, sweep_config: DictConfig, task: DictConfig,
                    task_function: TaskFunction) -> JobReturn:
        """Hydra's run_job for a member whose .hydra files are written (_save_job_files) and
        which stays in this directory (hydra.job.chdir=true runs alone): Hydra holding the
        job's config, the job's logging, its env_set, the callbacks around the task, its
        JobReturn; without run_job's copies of the config (two of the whole, two of its
        hydra node: ~20 ms a job, a fifth of what a small run costs in a stack).

        The JobReturn's cfg is `task`, the config the member trained with (run_job's is an
        unresolved copy of it); its hydra_cfg holds the job's hydra node itself.
        """
        assert self.hydra_context is not None
        callbacks = self.hydra_context.callbacks
        with _holding(sweep_config) as hydra_cfg:
            hydra = sweep_config.hydra
            ret = JobReturn(overrides=OmegaConf.to_container(hydra.overrides.task), cfg=task,
                            hydra_cfg=hydra_cfg, working_dir=os.getcwd())
            configure_log(hydra.job_logging, hydra.verbose)
            with env_override(hydra.job.env_set):
                callbacks.on_job_start(config=sweep_config, task_function=task_function)
                try:
                    ret.return_value = task_function(task)
                    ret.status = JobStatus.COMPLETED
                except Exception as e:  # as run_job: the sweeper reads it from the return
                    ret.return_value = e
                    ret.status = JobStatus.FAILED
            ret.task_name = JobRuntime.instance().get("name")
            _flush_loggers()
            callbacks.on_job_end(config=sweep_config, job_return=ret)
        return ret


class ComposingOnce(ConfigLoader):
    """Hydra's config loader, composing a sweep's jobs of one kind once.

    A sweep's jobs are composed twice: by the sweeper, which validates every batch before
    launching it, and by the launcher, ~70 ms each time, which in a sweep of 64 small runs
    is a quarter of the time a stack takes to train them. Most of a sweep's jobs differ
    from another only in the values of keys they set (seed=0 against seed=1); this loader
    composes the first job of each kind (the same config groups chosen, the same keys set)
    and derives the others from it (`derive`: the config Hydra would compose, in a small
    fraction of the time). A config asked for a second time, the launcher's after the
    validation's, is the one made the first time: the validation only checks that it can
    be made. Everything else is Hydra's own loader's.
    """

    def __init__(self, loader: ConfigLoader) -> None:
        self.loader = loader
        self.composed: dict[tuple[Any, ...], DictConfig] = {}
        self.made: dict[tuple[Any, ...], DictConfig] = {}

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]
                          ) -> DictConfig:
        job = (id(master_config), *sweep_overrides)
        if job in self.made:
            return self.made.pop(job)
        config = self._make(master_config, list(sweep_overrides))
        self.made[job] = config
        return config

    def _make(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from dltrain.overrides import kind

        parsed = OverridesParser.create().parse_overrides(sweep_overrides)
        job_kind = kind(parsed, set(master_config.hydra.runtime.choices))
        if job_kind is None:  # a key set twice: Hydra's order of application
            return self.loader.load_sweep_config(master_config, sweep_overrides)
        key = (id(master_config), *job_kind)
        base = self.composed.get(key)
        if base is None:
            config = self.loader.load_sweep_config(master_config, sweep_overrides)
            self.composed[key] = config
            return copy.deepcopy(config)
        config = derive(base, parsed)
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config

    def load_configuration(self, config_name: str | None, overrides: list[str],
                           run_mode: RunMode, from_shell: bool = True,
                           validate_sweep_overrides: bool = True) -> DictConfig:
        return self.loader.load_configuration(config_name, overrides, run_mode, from_shell,
                                              validate_sweep_overrides)

    def get_search_path(self) -> Any:
        return self.loader.get_search_path()

    def get_sources(self) -> list[Any]:
        return self.loader.get_sources()

    def list_groups(self, parent_name: str) -> list[str]:
        return self.loader.list_groups(parent_name)

    def get_group_options(self, group_name: str, results_filter: Any = ObjectType.CONFIG,
                          config_name: str | None = None,
                          overrides: list[str] | None = None) -> list[str]:
        return self.loader.get_group_options(group_name, results_filter, config_name,
                                             overrides)

    def compute_defaults_list(self, config_name: str | None, overrides: list[str],
                              run_mode: RunMode) -> Any:
        return self.loader.compute_defaults_list(config_name, overrides, run_mode)

    def __getattr__(self, name: str) -> Any:  # what Hydra's own loader has beyond the ABC
        if name == "loader":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)


@contextmanager
def _holding(sweep_config: DictConfig) -> Iterator[DictConfig]:
    """HydraConfig holding the job's config while in the block, as HydraConfig.set_config
    holds it (its hydra node read-only, alone under a root of its own whose parent is the
    job's config, for interpolations into the task), without copying the node (~5 ms).
    Yields that root: what run_job hands on as the JobReturn's hydra_cfg."""
    node = sweep_config._get_node("hydra")
    OmegaConf.set_readonly(node, True)
    held = DictConfig({})
    with flag_override(held, "no_deepcopy_set_nodes", True):
        held.hydra = node
    node._set_parent(sweep_config)
    instance = HydraConfig.instance()
    before = instance.cfg
    instance.cfg = held  # type: ignore[assignment]
    try:
        yield held
    finally:
        instance.cfg = before


def _save_job_files(sweep_config: DictConfig) -> None:
    """The job's .hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra's run_job
    writes them (OmegaConf.to_yaml of the config without its hydra node, of the hydra node,
    of the job's overrides), from one conversion of the config instead of copies of it.
    hydra.runtime.output_dir is set (_task)."""
    hydra = sweep_config.hydra
    if hydra.output_subdir is None:
        return
    whole: Any = OmegaConf.to_container(sweep_config, resolve=False, enum_to_str=True)
    files = {"config.yaml": {k: v for k, v in whole.items() if k != "hydra"},
             "hydra.yaml": {"hydra": whole["hydra"]},
             "overrides.yaml": whole["hydra"]["overrides"]["task"]}
    folder = Path(str(hydra.runtime.output_dir)) / str(hydra.output_subdir)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_text(_yaml(content), encoding="utf-8")


def _yaml(content: Any) -> str:
    """OmegaConf.to_yaml of a config converted to plain containers."""
    return yaml.dump(content, default_flow_style=False, allow_unicode=True, sort_keys=False,
                     Dumper=get_omega_conf_dumper())


def _member(finish: Callable[[str, Any], Any], run_dir: str, result: Any) -> TaskFunction:
    """The task function of a member that has trained: its result handed to dltrain's own
    accounting (dltrain.cli.TrainTask.finish), inside Hydra's job like any run."""

    def task(_cfg: DictConfig) -> Any:
        summary = result.summary
        best = summary.get("best") or {}
        test = summary.get("test") or {}
        shown = [f"{best['metric']} {best['value']:.4g}"] if best.get("value") is not None \
            else []
        shown += [f"test/{k} {v:.4g}" for k, v in test.items() if k != "loss"]
        log.info(f"{Path(run_dir).name}: {result.status}"
                 f"{' · ' + ' · '.join(shown) if shown else ''} (in a vectorised stack)")
        return finish(run_dir, result)

    return task


def derive(base: DictConfig, parsed: Sequence[Any]) -> DictConfig:
    """The config of the job with overrides `parsed`, from the composed config `base` of a
    job whose overrides choose the same groups and set the same keys (to other values):
    `base` with the job's values, and the job's own entries of the hydra node (its
    overrides, its directory name) set as Hydra sets them."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    from dltrain.overrides import with_values

    config = with_values(base, parsed, set(base.hydra.runtime.choices))
    with read_write(config), open_dict(config), read_write(config.hydra):
        dirname = config.hydra.job.config.override_dirname
        config.hydra.overrides.task = [o.input_line for o in parsed]
        config.hydra.job.override_dirname = get_overrides_dirname(
            overrides=list(parsed), kv_sep=dirname.kv_sep, item_sep=dirname.item_sep,
            exclude_keys=list(dirname.exclude_keys))
    return config
