"""Device choice and precision policy (clampgen.devices): the decisions are pure functions of
what a machine has, so every machine's answer is checked here on CPU; CUDA, MPS and several GPUs
themselves are not needed to test the choice, only to run on them."""

import pytest
import torch

from clampgen.devices import (
    Machine,
    autocast,
    compute_dtype,
    device_for_rank,
    pick_device,
    precision,
    resolve_device,
    this_machine,
)

CPU_ONLY, ONE_GPU, TWO_GPUS, MAC = Machine(), Machine(cuda=1), Machine(cuda=2), Machine(mps=True)


@pytest.mark.parametrize(
    "name, machine, local_rank, device",
    [
        ("auto", CPU_ONLY, None, "cpu"),
        ("auto", MAC, None, "mps"),
        ("auto", Machine(cuda=1, mps=True), None, "cuda"),  # cuda before mps
        ("auto", TWO_GPUS, None, "cuda"),  # one process: the current device
        ("auto", TWO_GPUS, 1, "cuda:1"),  # torchrun: its own GPU
        ("auto", TWO_GPUS, 3, "cuda:1"),  # more processes than GPUs: in turn
        ("auto", CPU_ONLY, 1, "cpu"),  # torchrun without GPUs
        ("auto", MAC, 1, "mps"),
        ("cuda", TWO_GPUS, None, "cuda"),
        ("cuda", TWO_GPUS, 0, "cuda:0"),
        ("cuda", TWO_GPUS, 1, "cuda:1"),
        ("cuda:1", TWO_GPUS, None, "cuda:1"),
        ("cuda:1", TWO_GPUS, 0, "cuda:1"),  # asked for by name: every process there
        ("cuda:0", ONE_GPU, None, "cuda:0"),
        ("cpu", TWO_GPUS, 1, "cpu"),
        ("mps", MAC, None, "mps"),
    ],
)
def test_pick_device(name, machine, local_rank, device):
    assert pick_device(name, machine, local_rank)[0] == device


def test_auto_says_what_it_chose():
    assert pick_device("auto", CPU_ONLY)[1] == "auto: no CUDA GPU and no Apple MPS"
    assert pick_device("auto", MAC)[1] == "auto: Apple MPS, no CUDA GPU"
    assert pick_device("auto", TWO_GPUS, 1)[1] == "auto: 2 CUDA GPUs, local rank 1"


@pytest.mark.parametrize(
    "name, machine, message",
    [
        ("cuda", CPU_ONLY, "--device cuda: no CUDA GPU is available"),
        ("cuda:0", MAC, "--device cuda:0: no CUDA GPU is available"),
        ("cuda:3", TWO_GPUS, "--device cuda:3: this machine has 2 CUDA GPUs (cuda:0 to cuda:1"),
        ("cuda:1", ONE_GPU, "this machine has 1 CUDA GPU (cuda:0 to cuda:0"),
        ("mps", TWO_GPUS, "--device mps: Apple MPS is not available here"),
        ("tpu", TWO_GPUS, "unknown device 'tpu' (choose from: auto, cpu, cuda, cuda:N, mps)"),
        ("cuda:x", TWO_GPUS, "unknown device 'cuda:x'"),
        ("cuda:-1", TWO_GPUS, "unknown device 'cuda:-1'"),
        ("CPU", CPU_ONLY, "unknown device 'CPU'"),
    ],
)
def test_absent_or_unknown_device_is_one_line(name, machine, message):
    with pytest.raises(ValueError) as e:
        pick_device(name, machine)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_device_for_rank():
    assert device_for_rank("auto", None, 4) == "cuda"
    assert [device_for_rank("cuda", r, 4) for r in range(6)] == [
        "cuda:0",
        "cuda:1",
        "cuda:2",
        "cuda:3",
        "cuda:0",
        "cuda:1",
    ]
    assert device_for_rank("cuda:2", 0, 4) == "cuda:2"
    assert device_for_rank("auto", 1, 0) == "auto"  # no GPU: pick_device decides
    assert device_for_rank("cpu", 1, 4) == "cpu"


def test_resolve_device_reads_this_machine(monkeypatch, caplog):
    """resolve_device asks torch what is there (here: a pretend 2-GPU machine without CUDA
    calls; nothing runs on it) and logs what 'auto' chose, once."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert this_machine() == TWO_GPUS
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="this machine has 2 CUDA GPUs"):
        resolve_device("cuda:2")
    with caplog.at_level("INFO", logger="clampgen.devices"):
        assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
        assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    said = [r.getMessage() for r in caplog.records if r.name == "clampgen.devices"]
    assert said == ["device: cuda:1 (auto: 2 CUDA GPUs, local rank 1)"]


def test_resolve_device_here():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_precision_policy():
    assert precision("cuda", fast_bf16=True) == torch.bfloat16  # Ampere and later, ROCm
    assert precision("cuda", fast_bf16=False) == torch.float32  # older GPUs emulate bf16
    for device_type in ("cpu", "mps"):
        for fast in (False, True):
            assert precision(device_type, fast_bf16=fast) == torch.float32


def test_cpu_is_fp32_without_autocast():
    """CPU runs are pinned bit for bit: no autocast context at all there."""
    assert compute_dtype("cpu") == torch.float32
    with autocast("cpu", torch.float32):
        assert not torch.is_autocast_enabled("cpu")
    x = torch.randn(4, 4)
    with autocast("cpu", torch.bfloat16):  # the context a CUDA bf16 policy gets, shown on CPU
        assert (x @ x).dtype == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_precision_here():
    major = torch.cuda.get_device_properties(0).major
    expected = torch.bfloat16 if torch.version.hip or major >= 8 else torch.float32
    assert compute_dtype("cuda:0") == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_torchrun_process_without_gpus(monkeypatch):
    """compare.dist.use_local_gpu: a torchrun process (LOCAL_RANK set) on a machine without
    GPUs runs where the device name says; asking for CUDA there is the usual one-line error."""
    from clampgen.compare.dist import use_local_gpu

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert use_local_gpu("cpu") == torch.device("cpu")
    assert use_local_gpu("auto").type in ("cpu", "mps")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        use_local_gpu("cuda")
