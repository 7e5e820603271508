"""Processes of a torchrun job (gloo): joining the group, collectives, leaving it.

    ranks = join()                 # Ranks(rank=0, world=1) outside torchrun
    try:
        plan = broadcast(plan, ranks)        # rank 0's value everywhere
        barrier(ranks)
    finally:
        leave(ranks)

Every function is a no-op (or the identity) for a single process, so callers never branch on
torchrun.
"""

import os
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    owned: bool = False  # this process joined the group here, and leaves it in leave()


def join() -> Ranks:
    """Joins the torchrun process group (gloo) when WORLD_SIZE > 1, unless already in one."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return Ranks()
    owned = not dist.is_initialized()
    if owned:  # runs are long, and the barriers wait for all of them
        dist.init_process_group("gloo", timeout=timedelta(days=7))
    return Ranks(dist.get_rank(), dist.get_world_size(), owned)


def leave(ranks: Ranks) -> None:
    """Leaves the process group if join() created it."""
    if ranks.owned:
        import torch.distributed as dist

        dist.destroy_process_group()


def broadcast(obj, ranks: Ranks):
    """Rank 0's obj on every rank."""
    if ranks.world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ranks: Ranks) -> None:
    """Waits until every rank has reached it."""
    if ranks.world > 1:
        import torch.distributed as dist

        dist.barrier()


def gather(obj, ranks: Ranks) -> list:
    """Every rank's obj, in rank order (on every rank)."""
    if ranks.world == 1:
        return [obj]
    import torch.distributed as dist

    every = [None] * ranks.world
    dist.all_gather_object(every, obj)
    return every


def use_local_gpu(device: str):
    """The torch.device this process runs on for --device `device`: under torchrun (LOCAL_RANK
    set) 'auto' and 'cuda' mean this process's own GPU, cuda:LOCAL_RANK (modulo the GPUs; see
    devices.device_for_rank), which also becomes torch's current CUDA device; otherwise the
    device as devices.resolve_device gives it."""
    import torch

    from clampgen.devices import resolve_device

    local_rank = os.environ.get("LOCAL_RANK")
    resolved = resolve_device(device, None if local_rank is None else int(local_rank))
    if resolved.type == "cuda" and resolved.index is not None:
        torch.cuda.set_device(resolved)  # code that says plain "cuda" lands on the same GPU
    return resolved
