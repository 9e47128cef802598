"""One process or a `torchrun` group (DDP: gloo on CPU, nccl on CUDA), behind one `Runtime`.

Besides rank/world bookkeeping this holds the guard that DDP replicas ended identical (a
parameter checksum). Embedding max-norm, the other guard, is
`embedkit.molecules.gin.apply_embedding_max_norm`, applied after every step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Runtime:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1 or not values:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()


def setup_runtime(threads: int | None) -> Runtime:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; a plain `python -m` run is world size 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // local_world))
    return Runtime(rank, world, device)


def check_replicas(model: nn.Module, rt: Runtime) -> None:
    """DDP parameters must end identical; a differing checksum means a rank drifted.

    (BatchNorm running stats may differ: each rank's last forward updates its own, and
    rank 0's, which DDP broadcasts before every forward, are the ones saved.)
    """
    if rt.world == 1:
        return
    with torch.no_grad():
        local = sum(float(p.double().abs().sum()) for p in model.parameters())
    sums = [torch.zeros(1, dtype=torch.float64, device=rt.device) for _ in range(rt.world)]
    dist.all_gather(sums, torch.tensor([local], dtype=torch.float64, device=rt.device))
    values = [float(t) for t in sums]
    if max(values) - min(values) > 1e-6 * max(abs(v) for v in values):
        raise RuntimeError(f"DDP replicas diverged: parameter checksums {values}")
