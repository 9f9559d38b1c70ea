"""Data parallelism on PyTorch's own engine: torchrun's environment, DistributedDataParallel.

`torchrun --nproc_per_node=N -m dltrain trainer=ddp ...` starts N processes; each reads its
rank from the environment torchrun sets, joins the process group (nccl on GPUs, gloo on CPUs),
wraps the model in DDP and takes its `Shard` of every global batch. Rank 0 alone writes files.
In a single process everything here is the identity, so the trainer needs no `if` for it.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from dltrain.data.spec import Shard
from dltrain.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, world size, local rank (its GPU on the node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def shard(self) -> Shard:
        """This process's rows of every global batch: all processes draw the same batches
        (the same seeded order), so DDP's averaged gradient is the gradient of the global
        batch, the same dynamics as one process."""
        return Shard(self.rank, self.world)

    def _reduced(self, tensor: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
        """`tensor` combined over all ranks by `op` (every rank gets it); a copy, so the
        caller's tensor stays its own."""
        if not self.active:
            return tensor
        out = tensor.clone()
        dist.all_reduce(out, op=op)
        return out

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The average of `tensor` over all ranks (every rank gets it)."""
        return self._reduced(tensor, dist.ReduceOp.SUM) / self.world

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._reduced(tensor, dist.ReduceOp.SUM)

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise largest of every rank's `tensor` (every rank gets it)."""
        return self._reduced(tensor, dist.ReduceOp.MAX)

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is true on any (e.g. a stop request one rank received)."""
        if not self.active:
            return flag
        t = torch.tensor(float(flag), device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj`, in rank order, on rank 0; None on the others. Every rank must
        call it at the same point."""
        if not self.active:
            return [obj]
        out: list[Any] | None = [None] * self.world if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def in_sync(self, model: torch.nn.Module) -> bool:
        """Whether every rank holds the same weights (a checksum compared across ranks)."""
        if not self.active:
            return True
        with torch.no_grad():
            total = torch.stack([torch.stack([p.double().sum(), p.double().square().sum()])
                                 for p in model.parameters()]).sum(0)
        low, high = total.clone(), total.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        return bool(torch.equal(low, high))


SINGLE = Dist()  # one process: every collective is the identity (immutable, safe to share)


def _slurm_tasks() -> int:
    """Tasks of the SLURM job this process is one of, when Hydra's submitit launcher started
    it (submitit marks its jobs with SUBMITIT_EXECUTOR); 1 otherwise."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":
        return 1
    return int(os.environ.get("SLURM_NTASKS", "1"))


def from_env(strategy: str) -> Dist:
    """The job torchrun (or a SLURM job of several tasks) describes in the environment,
    checked against `trainer.strategy`."""
    if strategy == "ddp" and "RANK" not in os.environ and _slurm_tasks() > 1:
        # One SLURM task per GPU (hydra/launcher=submitit_slurm_ddp): submitit knows the
        # job's nodes and ranks and exports them as torchrun would (MASTER_ADDR, RANK, ...).
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and strategy != "ddp":
        raise ConfigError(f"This process is one of {world} started by torchrun, but "
                          f"trainer.strategy={strategy}; add trainer=ddp to train them as one.")
    if world == 1:
        return SINGLE
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def device_of(d: Dist, device: torch.device) -> torch.device:
    """On GPUs each process of a node drives its own device, the one of its local rank."""
    if d.active and device.type == "cuda":
        return torch.device("cuda", d.local_rank)
    return device


@contextmanager
def process_group(d: Dist, device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the block (nccl on GPUs, gloo otherwise)."""
    if not d.active or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
        # Every rank tears down together: a rank that destroys its group and exits while
        # another still talks to it (rank 0 testing and writing) can abort in gloo's threads
        # ("terminate called without an active exception", seen on a loaded CPU machine).
        dist.barrier()
    finally:
        # Whatever still holds the group from a reference cycle (the job's model and its DDP
        # reducer, hooks) is freed now, while the group is alive: left to the interpreter's
        # shutdown, gloo's worker threads can die there and abort the process.
        gc.collect()
        dist.destroy_process_group()
