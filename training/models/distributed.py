"""Scale-out under torchrun: the process group, and the few collectives that keep ranks in step
(DistributedDataParallel averages the gradients)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def distributed() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not launched by torchrun."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def process_group() -> Iterator[tuple[int, int]]:
    """Join torchrun's process group for the block (gloo on the CPU, nccl on a GPU); a plain run
    is rank 0 of 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2 or dist.is_initialized():
        yield distributed()
        return
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield distributed()
    finally:
        dist.destroy_process_group()


def agree(values: list[float], world: int) -> list[float]:
    """Rank 0's values on every rank: all ranks take the same early-stopping decisions, so none is
    left waiting in a collective the others have stopped calling."""
    if world == 1:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.broadcast(tensor, src=0)
    return tensor.tolist()


def same_steps(batches: int, world: int) -> int:
    """The fewest batches any rank has: every rank takes that many steps, so gradient averaging
    never waits on a rank that has run out."""
    if world == 1:
        return batches
    import torch.distributed as dist

    tensor = torch.tensor([batches])
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def same_module(module: torch.nn.Module, world: int) -> None:
    """Rank 0's parameters of ``module`` on every rank (for a part fitted outside
    DistributedDataParallel, on each rank's own users): the ranks keep one model."""
    if world == 1:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for parameter in module.parameters():
            dist.broadcast(parameter.data, src=0)
