"""Training through Hydra: the Hydra app of `dltrain [OVERRIDES]` and `-m` sweeps, its task
(TrainTask, which the vectorised launcher imports), and the other ranks of a torchrun job.

This package is the only place that imports Hydra's application machinery."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# The task is pickled to a launcher's workers (joblib, SLURM): unpickling it there imports
# this module, and so dltrain.sweep, which registers the resolvers that name run directories.
import dltrain.sweep
from dltrain.cli.options import help_groups
from dltrain.cli.preflight import Mode, compose_checked, preflight
from dltrain.cli.sources import Sources, hydra_context, sources, without_config_name
from dltrain.errors import ConfigError
from dltrain.log.painter import Painter
from dltrain.results import EXIT_BAD_INPUT, EXIT_INTERRUPTED
from dltrain.training.signals import StopRequest, signal_at


def train(argv: list[str], stop: StopRequest | None = None) -> int:
    """Hand the arguments to the Hydra app after a preflight; return the worst exit code.
    `stop`: the command's StopRequest (dltrain.cli.main installs it), handed to each run."""
    import hydra
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    src = sources(args.config_dir, args.config_name)  # conf/, and -cd DIR -cn NAME
    if args.help and not args.config_path:
        print(app_help(list(args.overrides), resolve=args.resolve, src=src))
        return 0
    just_asking = args.help or args.hydra_help or args.info or args.shell_completion
    mode = None
    if not just_asking:
        # --cfg prints the config and trains nothing: no output folder to check
        mode = preflight(list(args.overrides), bool(args.multirun), src, output=not args.cfg)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one of torchrun's processes
            if args.multirun:
                raise ConfigError("torchrun starts one data-parallel run, not a sweep; drop -m "
                                  "(sweep data-parallel runs with a cluster launcher instead).")
            if int(os.environ.get("RANK", "0")) != 0:
                return _worker(list(args.overrides), src, stop or StopRequest())
        signal_at("preflight")

    # a single run's pictures drawn by a process of its own, forked now, before torch
    painter = Painter.start() if _one_run(args, mode) else None
    task = TrainTask(stop, painter)
    codes: list[int] = []  # exits of Hydra itself and of the sweep's report
    src.register()
    # Hydra adds -cd DIR to its search path itself; the primary config is given here (a
    # plain YAML's is composed on train.yaml), so -cn leaves the arguments.
    app = hydra.main(config_path=str(src.root), config_name=src.primary,
                     version_base="1.3")(task)

    saved = sys.argv
    sys.argv = ["dltrain", *without_config_name(argv)]
    try:
        with _mode_known(mode):
            app()
    except SystemExit as stop:  # Hydra's own exits, and a sweep's report naming failures
        codes.append(0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1)
        if codes[-1] == EXIT_INTERRUPTED:  # Hydra skips a stopped sweep's report: write it
            dltrain.sweep.report_interrupted_sweep(d for d, _, _ in task.outcomes)
    finally:
        sys.argv = saved
        if painter is not None:
            painter.close()
    return max([*codes, task.report_failures()], default=0)


def _one_run(args, mode: Mode | None) -> bool:
    """Whether the command trains one run in this process (not a sweep, not --cfg or help)."""
    from hydra.types import RunMode

    return (mode is not None and not args.multirun and not args.cfg
            and mode.known and mode.value != RunMode.MULTIRUN)


@contextmanager
def _mode_known(mode: Mode | None) -> Iterator[None]:
    """Hydra composes the whole config once only to read `hydra.mode` (Hydra.get_mode), then
    again for the run: with the mode the preflight read from its own composition, the first
    of these is skipped (a quarter of a second of `dltrain trainer=smoke`). Hydra's private
    method is replaced for the duration of the command only; where the mode is not known
    (no preflight, or a sweep over hydra.mode), Hydra asks its own way."""
    from hydra._internal.hydra import Hydra

    if mode is None or not mode.known:
        yield
        return
    own = Hydra.get_mode
    Hydra.get_mode = lambda self, config_name, overrides: mode.value  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.get_mode = own  # type: ignore[method-assign]


def app_help(overrides: list[str], resolve: bool = False, src: Sources | None = None) -> str:
    """`dltrain --help`: the template of conf/hydra/help/dltrain.yaml filled in as Hydra's
    own app help fills it, but with the groups read from conf/ (help_groups; Hydra's way took
    most of the time of --help) and a bad override answered in one sentence. Each `$NAME` is
    computed only if the template names it."""
    import string

    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    src = src or sources()
    with hydra_context(src):
        cfg = compose_checked(overrides, src, with_hydra=True)
        HydraConfig.instance().set_config(cfg)  # for ${hydra:...} under --resolve
        template = string.Template(cfg.hydra.help.template)
        with open_dict(cfg):
            del cfg["hydra"]  # the job's config, as `--cfg job` shows it
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        values = _Computed(
            APP_CONFIG_GROUPS=lambda: help_groups(*src.dirs),
            CONFIG=lambda: OmegaConf.to_yaml(cfg, resolve=resolve),
            FLAGS_HELP=lambda: Hydra.format_args_help(get_args_parser()),
            HYDRA_CONFIG_GROUPS=lambda: hydra.format_config_groups(
                lambda group: group == "hydra" or group.startswith("hydra/")),
        )
        return template.substitute(values)


class _Computed(dict):
    """Values of a string.Template given as functions, called when the template asks."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key)()


class TrainTask:
    """The Hydra task of `dltrain`: trains a run and accounts for every run that ended (its
    exit code, its error on stderr if it was refused, the value handed to the sweeper).

    The vectorised launcher (hydra_plugins/dltrain_vectorised) imports this class: it trains
    the members of a stack itself and hands each one's result to `finish`, as a run's own
    call hands its result.
    """

    def __init__(self, stop: StopRequest | None = None, painter: Painter | None = None) -> None:
        self.outcomes: list[tuple[str, int, str]] = []  # (run dir, exit code, status: error)
        self.stop = stop or StopRequest()
        self.painter = painter  # draws curves.png beside the run (dltrain.log.painter)

    def __getstate__(self) -> dict:
        # a launcher's worker (joblib, SLURM) gets the task without this process's painter
        return {**self.__dict__, "painter": None}

    def __call__(self, cfg) -> float | None:
        # From the task's first instruction the run directory exists (Hydra's job made it):
        # a signal, even a second Ctrl-C, is a stop request, which run() reads before it loads
        # anything and ends in a summary.json with status interrupted. A sweep's job after a
        # signal stops there.
        with self.stop.on_signals(second_stops=False):
            from hydra.core.hydra_config import HydraConfig

            from dltrain.run import run  # torch is imported here, after the config is good

            run_dir = HydraConfig.get().runtime.output_dir
            signal_at("task")
            result = run(cfg, run_dir, stop=self.stop, painter=self.painter)
            signal_at("ended")
            return self.finish(run_dir, result)

    def finish(self, run_dir: str, result) -> float | None:
        """Account for a run that ended (`result`: a dltrain.results.RunResult). Called
        inside Hydra's job (HydraConfig holds the job's config)."""
        from hydra.core.hydra_config import HydraConfig

        from dltrain.sweep import sweeper_value

        error = result.summary.get("error", "")
        self.outcomes.append((run_dir, result.exit_code, f"{result.status}: {error}"))
        if result.exit_code == EXIT_BAD_INPUT:
            print(f"dltrain: {error}", file=sys.stderr)
        if result.status == "interrupted":  # a stopped sweep stops, it does not go on
            raise SystemExit(EXIT_INTERRUPTED)
        return sweeper_value(result.summary, HydraConfig.get().sweeper.get("direction"))

    def report_failures(self) -> int:
        """Name the runs of a sweep that did not complete; the worst exit code of the runs."""
        failures = [(d, why) for d, code, why in self.outcomes if code != 0]
        if len(self.outcomes) > 1 and failures:
            print(f"dltrain: {len(failures)} of {len(self.outcomes)} runs did not complete:",
                  file=sys.stderr)
            for run_dir, why in failures:
                print(f"  {run_dir}  {why}", file=sys.stderr)
        return max((code for _, code, _ in self.outcomes), default=0)


def _worker(overrides: list[str], src: Sources, stop: StopRequest) -> int:
    """A data-parallel rank other than 0: the same config, composed without Hydra's run
    directory or logging (rank 0 owns the one directory of the job and tells the others)."""
    from hydra import compose

    from dltrain.run import run

    with hydra_context(src):
        cfg = compose(src.primary, overrides=overrides)
    return run(cfg, None, stop=stop).exit_code
