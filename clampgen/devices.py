"""Devices: the names --device accepts, which device each one means on this machine, and the
precision CLIP runs in there. The one place that decides either.

    from clampgen.devices import resolve_device, compute_dtype, autocast
    device = resolve_device("auto")       # cuda, else mps, else cpu (and logs which, once)
    dtype = compute_dtype(device)         # bfloat16 on CUDA GPUs with fast bf16, else float32
    with autocast(device, dtype):         # nothing at all for float32
        ...

Every decision is a pure function of what the machine has, so it is tested on any machine:
`pick_device(name, Machine(cuda=2, mps=False), local_rank=1)`, `device_for_rank(...)`,
`precision(device_type, fast_bf16=...)`. The functions without a `Machine` argument ask torch.

Precision policy (CLIP's forward only: cutouts, clamps and the image parameters stay float32):
- cuda: bf16 autocast when the GPU does bf16 at full speed (compute capability 8.0 and up:
  Ampere, Ada, Hopper, ...; ROCm GPUs); fp32 on older GPUs, where torch emulates bf16 slowly.
- mps: fp32, no autocast. torch's MPS autocast covers fewer ops than CUDA's (the rest run in fp32
  with casts around them), bf16 needs macOS 14 and M1 GPUs have no bf16 arithmetic, and the
  memory saving matters less on unified memory; no Apple machine has been available to measure
  a gain, and fp32 is correct everywhere.
- cpu: fp32, no autocast. CPU runs are pinned (tests/test_pinned.py): bit for bit on one
  machine and thread count, within measured bounds across CPUs (docs/reproducibility.md).

`available_memory(device)` is what a run may still allocate there (the size check before a run).
"""

import contextlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")  # what --device accepts
_CUDA = re.compile(r"cuda(?::(\d+))?")


@dataclass(frozen=True)
class Machine:
    """What this process can use."""

    cuda: int = 0  # CUDA (or ROCm) GPUs visible to torch
    mps: bool = False  # Apple's Metal backend


def this_machine() -> Machine:
    """The GPUs torch sees in this process (CUDA_VISIBLE_DEVICES applies)."""
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = getattr(torch.backends, "mps", None)
    return Machine(cuda=cuda, mps=bool(mps and mps.is_available()))


def _gpus(n: int) -> str:
    return f"{n} CUDA GPU{'s' if n != 1 else ''}"


def device_for_rank(requested: str, local_rank, n_gpus: int) -> str:
    """The device a process asks for, given its torchrun LOCAL_RANK (None: not under torchrun).

    'auto' or 'cuda' on a machine with GPUs: under torchrun each process takes its own GPU,
    cuda:(local_rank mod n_gpus) (more processes than GPUs share them in turn); a single process
    keeps plain 'cuda' (torch's current device). Anything else is returned as given: an explicit
    cuda:N is every process's device, and 'auto' without GPUs is decided by pick_device."""
    if requested in ("auto", "cuda") and n_gpus > 0:
        return "cuda" if local_rank is None else f"cuda:{int(local_rank) % n_gpus}"
    return requested


def pick_device(name: str, machine: Machine, local_rank=None) -> tuple:
    """(device, why) for the --device value `name` on `machine`: 'auto' is cuda, then mps, then
    cpu; under torchrun (local_rank given) cuda means the process's own GPU (device_for_rank).
    An unknown or absent device is a ValueError whose message is one line."""
    if name == "auto":
        if machine.cuda:
            device = device_for_rank("auto", local_rank, machine.cuda)
            rank = "" if local_rank is None else f", local rank {local_rank}"
            return device, f"auto: {_gpus(machine.cuda)}{rank}"
        if machine.mps:
            return "mps", "auto: Apple MPS, no CUDA GPU"
        return "cpu", "auto: no CUDA GPU and no Apple MPS"
    if name == "cpu":
        return "cpu", "--device cpu"
    if name == "mps":
        if not machine.mps:
            raise ValueError(
                "--device mps: Apple MPS is not available here (it needs macOS on Apple silicon "
                "and a torch built with MPS; use --device cpu or auto)"
            )
        return "mps", "--device mps"
    match = _CUDA.fullmatch(name)
    if not match:
        raise ValueError(f"unknown device '{name}' (choose from: {', '.join(DEVICES)})")
    if not machine.cuda:
        raise ValueError(f"--device {name}: no CUDA GPU is available (use --device cpu or auto)")
    if match.group(1) is None:
        return device_for_rank("cuda", local_rank, machine.cuda), f"--device {name}"
    index = int(match.group(1))
    if index >= machine.cuda:
        raise ValueError(
            f"--device {name}: this machine has {_gpus(machine.cuda)} "
            f"(cuda:0 to cuda:{machine.cuda - 1}; CUDA_VISIBLE_DEVICES applies)"
        )
    return f"cuda:{index}", f"--device {name}"


_said = set()  # the 'auto' choices already logged: check_config and prepare both resolve


def resolve_device(name: str, local_rank=None) -> torch.device:
    """The torch.device for --device `name` on this machine (see pick_device); logs what 'auto'
    chose, once per process."""
    device, why = pick_device(name, this_machine(), local_rank)
    if name == "auto" and (device, why) not in _said:
        _said.add((device, why))
        log.info(f"device: {device} ({why})")
    return torch.device(device)


def precision(device_type: str, *, fast_bf16: bool) -> torch.dtype:
    """The dtype CLIP computes in on a device of `device_type` (the policy, see the module
    docstring): bfloat16 under autocast on CUDA GPUs with fast bf16, float32 everywhere else."""
    return torch.bfloat16 if device_type == "cuda" and fast_bf16 else torch.float32


def _fast_bf16(device: torch.device) -> bool:
    """True when the CUDA/ROCm GPU `device` does bf16 arithmetic natively."""
    if torch.version.hip:
        return True
    index = device.index if device.index is not None else torch.cuda.current_device()
    return torch.cuda.get_device_properties(index).major >= 8


def compute_dtype(device) -> torch.dtype:
    """precision() for `device` on this machine (asks the GPU only for cuda devices)."""
    device = torch.device(device)
    return precision(device.type, fast_bf16=device.type == "cuda" and _fast_bf16(device))


def autocast(device, dtype: torch.dtype):
    """Autocast to `dtype` on `device`'s type; nothing at all (no context) for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def available_memory(device) -> Optional[int]:
    """Bytes a run may still allocate on device: a CUDA GPU's free memory; on CPU the kernel's
    MemAvailable, or less where a cgroup (a container's limit) leaves less; None where it cannot
    be told (MPS, or a system without /proc)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    known = [v for v in (_mem_available(), _cgroup_room()) if v is not None]
    return min(known) if known else None


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _mem_available() -> Optional[int]:
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key == "MemAvailable":
            return int(value.split()[0]) * 1024  # kB
    return None


def _cgroup_room() -> Optional[int]:
    """The memory limit of this process's cgroup less what it uses (v2, else v1), or None."""
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        cap, used = _read(limit), _read(usage)
        if cap and used and cap.strip().isdigit() and used.strip().isdigit():
            return max(int(cap) - int(used), 0)
    return None
