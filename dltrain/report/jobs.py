"""Reading a sweep: one `Job` per run directory, from the files Hydra and dltrain.run leave,
and one per job of the sweep's plan that never started.

A job directory holds `.hydra/overrides.yaml`, `.hydra/config.yaml` and `summary.json`; the
sweep directory holds `jobs.yaml`, the jobs its sweeper planned (dltrain.sweep writes it when
the sweep starts). Nothing else is read, so the report needs neither torch nor Hydra.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dltrain.config import find
from dltrain.errors import ConfigError
from dltrain.results import PLAIN_SUFFIX

PLAN_FILE = "jobs.yaml"  # in a sweep's directory: the overrides of each job, by number
NOT_STARTED = "not started"


def parse_value(text: str) -> Any:
    """An override's value as the number, boolean or null it spells, else the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


@dataclass(frozen=True)
class Job:
    """One run of a sweep, as its directory tells it."""

    name: str  # the directory's name
    overrides: dict[str, str]  # key -> value, as given on the command line or by the sweeper
    config: dict[str, Any] = field(default_factory=dict)  # .hydra/config.yaml
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json; {} if never written
    started: bool = True  # False: a job of the sweep's plan that has no directory

    @property
    def status(self) -> str:
        if not self.started:
            return NOT_STARTED
        return str(self.summary.get("status", "unfinished"))

    @property
    def objective(self) -> float | None:
        value = self.summary.get("objective")
        ok = self.status == "completed" and isinstance(value, (int, float)) and math.isfinite(value)
        return float(value) if ok else None

    @property
    def run_name(self) -> str | None:
        """The run's name (`name=lr-study`), from its summary or else its config."""
        name = self.summary.get("name", self.config.get("name"))
        return None if name is None else str(name)

    def value(self, key: str) -> Any:
        """The value of `key` in this run: the config's (typed, and there even when the key was
        not overridden), else the override's, else the option a config group chose."""
        found, value = find(self.config, key)
        if found and not isinstance(value, Mapping):
            return value
        if key in self.overrides:
            return parse_value(self.overrides[key]) if self.started else \
                _planned_value(self.overrides[key])
        if found and "name" in value:  # a config group left at its default: its option's name
            return value["name"]
        return None


def _planned_value(text: str) -> Any:
    """An override's value where no config says it typed (a job that never started): a list
    or a mapping as the config would hold it (`model.hidden=[8]` is [8], as in the jobs that
    ran), else as parse_value reads it."""
    value = parse_value(text)
    if isinstance(value, str):
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError:
            return value
        return loaded if isinstance(loaded, (list, dict)) else value
    return value


def _key(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def read_job(path: Path) -> Job:
    """The job in directory `path` (which has .hydra/overrides.yaml)."""
    hydra_dir = path / ".hydra"
    overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text(encoding="utf-8")) or []
    config = {}
    if (hydra_dir / "config.yaml").is_file():
        config = yaml.safe_load((hydra_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    summary = {}
    if (path / "summary.json").is_file():
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return Job(path.name, dict(_key(str(o)) for o in overrides), config, summary)


def launch_args(job_dir: Path) -> list[str]:
    """What a job's command line said besides its overrides, as arguments of `dltrain`: -cd
    DIR, -cn NAME and a hydra.searchpath override (from its .hydra/hydra.yaml; [] when it
    has none, or said none of these)."""
    path = job_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return []
    hydra = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("hydra") or {}
    args: list[str] = []
    for source in (hydra.get("runtime") or {}).get("config_sources") or []:
        if source.get("provider") == "command-line":
            args += ["-cd", str(source["path"]).removeprefix("file://")]
    name = str((hydra.get("job") or {}).get("config_name") or "train").removesuffix(PLAIN_SUFFIX)
    if name != "train":
        args += ["-cn", name]
    args += [str(o) for o in (hydra.get("overrides") or {}).get("hydra") or []
             if str(o).startswith("hydra.searchpath=")]
    return args


def _natural(name: str) -> tuple[int, str]:
    number = name.split("_", 1)[0]
    return (int(number), name) if number.isdigit() else (1 << 62, name)


def find_jobs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep, in job-number order (or the directory itself if it is
    a single run)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir} is not a directory; give a sweep's directory, "
                          "e.g. outputs/sweeps/<date>_<time>_<tag>.")
    if (sweep_dir / ".hydra" / "overrides.yaml").is_file():
        return [sweep_dir]
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()]
    if not jobs:
        raise ConfigError(f"{sweep_dir} holds no runs (no */.hydra/overrides.yaml); give a "
                          "sweep's directory, e.g. outputs/sweeps/<date>_<time>_<tag>.")
    return sorted(jobs, key=lambda p: _natural(p.name))


def planned_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """The overrides of every job the sweep's sweeper planned, by job number (jobs.yaml);
    None when the sweep did not write one (a search that draws its trials as it goes)."""
    path = Path(sweep_dir) / PLAN_FILE
    if not path.is_file():
        return None
    plan = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(plan, list):
        return None
    return [[str(o) for o in job] for job in plan if isinstance(job, list)]


def not_started(plan: list[list[str]], jobs: list[Job]) -> list[Job]:
    """The jobs of `plan` that no job directory stands for, named by their number (#3).

    A directory stands for the planned job with the same overrides (Hydra writes a job's own
    list, as its sweeper made it, to .hydra/overrides.yaml); each directory answers for one
    planned job, so a plan that runs the same overrides twice needs two directories."""
    ran: dict[tuple[str, ...], int] = {}
    for job in jobs:
        key = tuple(f"{k}={v}" for k, v in job.overrides.items())
        ran[key] = ran.get(key, 0) + 1
    missing = []
    for num, overrides in enumerate(plan):
        key = tuple(f"{k}={v}" for k, v in (_key(o) for o in overrides))
        if ran.get(key, 0):
            ran[key] -= 1
        else:
            missing.append(Job(f"#{num}", dict(_key(o) for o in overrides), started=False))
    return missing


def read_sweep(sweep_dir: Path) -> list[Job]:
    """The sweep's jobs in job-number order: those with a directory, and those of its plan
    that never started."""
    plan = planned_jobs(sweep_dir)
    try:
        jobs = [read_job(p) for p in find_jobs(sweep_dir)]
    except ConfigError:
        if not plan:
            raise
        jobs = []  # stopped before its first job had a directory: all of it is to come
    if not plan:
        return jobs
    return sorted(jobs + not_started(plan, jobs), key=lambda j: _natural(
        j.name if j.started else j.name.removeprefix("#")))
