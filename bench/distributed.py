"""The little of `torch.distributed` a sharded run needs: a rendezvous, a barrier, and a device per rank.

Shards never exchange tensors: each writes its own files in the shared run directory. The process group
exists only so that shards launched together (``torchrun``, ``accelerate launch``) can wait for each
other before rank 0 merges, scores and reports (docs/scaling.md). It always uses the *gloo* backend, even on
GPUs: a barrier on CPU needs no GPU memory, no ``set_device`` and none of NCCL's watchdog timeouts, and
it works the same on a laptop and a cluster.
"""
from __future__ import annotations

import datetime as _dt
import os

import torch

from mgt_common.errors import UserError

from .sharding import Shard

#: How long a rank waits at the barrier for the slowest one. Shards of a big run may finish hours apart;
#: a rank that dies does not leave the others hanging, because the launcher then stops every rank.
BARRIER_TIMEOUT = _dt.timedelta(hours=float(os.environ.get("MGT_BENCH_BARRIER_HOURS", "72")))


def rank_device(device: str, shard: Shard) -> str:
    """The device this rank generates on: ``cuda`` becomes ``cuda:LOCAL_RANK`` under a launcher.

    An explicit ``cuda:N`` is kept (the user chose it), as is every non-CUDA device. Only the device
    *type* enters a unit's key, so which GPU a unit runs on never changes its image's identity.
    """
    device = str(device)
    if device != "cuda" or shard.local_rank is None:
        return device
    if torch.cuda.is_available():
        available = torch.cuda.device_count()
        if shard.local_rank >= available:
            raise UserError(f"LOCAL_RANK={shard.local_rank} but this node has {available} GPU(s); launch at most "
                            f"{available} processes per node (torchrun --nproc_per_node {available})")
    return f"cuda:{shard.local_rank}"


class ProcessGroup:
    """A gloo group over the launcher's ranks, or nothing for shards that were started separately."""

    def __init__(self, shard: Shard):
        self.shard = shard
        self.owned = False
        if not shard.launched_together:
            return
        import torch.distributed as dist

        if not dist.is_available():
            raise UserError("this PyTorch build has no torch.distributed; run the shards with --shard i/n and "
                            "merge with --merge RUN_DIR instead")
        if not dist.is_initialized():
            # torchrun / accelerate set MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE: env:// reads them.
            dist.init_process_group("gloo", init_method="env://", rank=shard.index, world_size=shard.count,
                                    timeout=BARRIER_TIMEOUT)
            self.owned = True

    @property
    def active(self) -> bool:
        import torch.distributed as dist

        return self.shard.launched_together and dist.is_available() and dist.is_initialized()

    def barrier(self) -> None:
        """Wait until every rank reaches this point (no-op for separate shards)."""
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.owned:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owned = False

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def widen_threads() -> None:
    """Rank 0 scores alone after the barrier: give it the threads a single process would have (torch's
    default, one per physical core), at most what its node's ranks had between them.

    torchrun sets OMP_NUM_THREADS=1 per rank; scoring with one thread is slow, and some reductions
    (the eigenvalues inside FID) round differently with another thread count, so the merged run's set
    metrics would differ from a single process's in their last digits.
    """
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if ranks_here <= 1:
        return
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(cores, torch.get_num_threads() * ranks_here)))
