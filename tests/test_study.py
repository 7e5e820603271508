"""The clamp study (clampgen.study): its conditions, their seeds, one tiny study end to end, and
the same tiny study sharded by two torchrun agents (multi-node c10d rendezvous on localhost)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from clampgen import study
from clampgen.compare.runner import seed_list
from clampgen.config import GenerateConfig
from clampgen.generators import get_generator, with_defaults

ROOT = Path(__file__).resolve().parent.parent


def test_conditions_run_at_the_generators_defaults_and_given_options_win():
    opts, given = study.parse_args(["--steps", "7"])
    vq = study.condition_config("vqgan-random", opts, given)
    spec = get_generator("vqgan")
    assert (vq.generator, vq.lr, vq.steps, vq.size) == ("vqgan", spec.lr, 7, (64, 64))
    assert vq.init_colour == "none"  # the notebooks' random codes
    assert study.condition_config("vqgan", opts, given).init_colour == "auto"  # the default
    names = vq.clamp.split(",")
    assert "clamp_with_grad" in names and "range_loss" in names
    assert not {"sigmoid", "tanh", "project"} & set(names)  # pixel/fft keepers only
    out = study.condition_config("pixel-out", opts, given).clamp.split(",")
    assert {"project", "sigmoid", "proposed_adam_reset", "proposed_decoupled"} <= set(out)
    fft = study.condition_config("fft-in", *study.parse_args([]))
    spec = get_generator("fft")  # nothing of the generator's own is pinned by the study
    assert (fft.steps, fft.lr, fft.cut_overhang, fft.tv_weight, fft.init_scale) == (
        spec.steps,
        spec.lr,
        spec.cut_overhang,
        spec.tv_weight,
        spec.init_scale,
    )
    assert "project" not in fft.clamp.split(",") and fft.cutn == 16  # GenerateConfig's cutn
    sgd = study.condition_config("pixel-out-sgd", *study.parse_args([]))
    assert (sgd.optimizer, sgd.lr) == ("sgd", 200.0)  # what a condition is about is pinned
    pixel = study.condition_config("pixel", *study.parse_args([]))
    default = with_defaults(GenerateConfig(generator="pixel"))  # what `--generator pixel` runs
    same = ("init", "init_scale", "init_colour", "init_centre", "lr", "steps", "tv_weight", "size")
    assert [getattr(pixel, k) for k in same] == [getattr(default, k) for k in same]


def test_three_seeds_per_prompt_everywhere_unless_given():
    opts, _ = study.parse_args([])
    assert {n: study.condition_seeds(n, opts) for n in study.CONDITIONS} == dict.fromkeys(
        study.CONDITIONS, 3
    )
    opts, _ = study.parse_args(["--seeds", "2"])
    assert study.condition_seeds("vqgan-image", opts) == 2


def test_study_runs_each_condition_with_its_seeds_and_judges_every_run(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle on a blue background\n")
    out = tmp_path / "study"
    argv = ["--out", str(out), "--prompts", str(prompts), "--conditions", "pixel-in,vqgan-image"]
    argv += ["--steps", "2", "--clamp", "clamp,clamp_with_grad", "--no-video", "--size", "48"]
    assert study.main(argv) == 0
    comparison = out / "vqgan-image" / "00-a-red-circle-on-a-blue-background"
    for seed in seed_list(0, study.SEEDS["vqgan-image"]):  # 3 seeds: one directory each
        assert (comparison / f"seed_{seed}" / "clamp" / "final.png").is_file()
        assert (comparison / f"seed_{seed}" / "clamp" / "judged.csv").is_file()
    summary = (out / "summary.md").read_text()
    assert "## pixel-in" in summary and "## vqgan-image" in summary
    assert summary.index("## Judged: Δ p(shape)") < summary.index("## The guide's loss")
    assert "## Where the guide's loss and the judges disagree" in summary
    assert "1 prompt(s) × 3 seed(s) (3 runs per variant)" in summary
    assert (out / "study.png").is_file() and (out / "step_sizes-pixel-in.png").is_file()
    assert (out / "grid-vqgan-image.png").is_file()


def _without_wall_times(markdown: str) -> str:
    """summary.md without its `wall s` columns: the one thing two machines measure differently."""
    lines, drop = [], None
    for line in markdown.splitlines():
        cells = line.split(" | ")
        if line.startswith("| variant") and "wall s" in cells:
            drop = cells.index("wall s")
        elif not line.startswith("|"):
            drop = None
        lines.append(" | ".join(c for i, c in enumerate(cells) if i != drop) if drop else line)
    return "\n".join(lines)


def _numbers(path):
    """A summary.json without measured wall times."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if "wall" not in k}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip(json.loads(Path(path).read_text()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_torchrun_agents_give_the_summary_of_one_process(tmp_path):
    """The study sharded over two torchrun agents (--nnodes 2, c10d rendezvous on localhost, as on
    two machines sharing a filesystem) writes the study a single process writes."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle on a blue background\na yellow star on a black background\n")
    args = ["-m", "clampgen.study", "--prompts", str(prompts), "--conditions", "pixel-in"]
    args += ["--steps", "2", "--seeds", "1", "--clamp", "clamp,clamp_with_grad", "--size", "32"]
    args += ["--no-video", "--save-every", "0", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    one = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{_free_port()}"]
    agent = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"]
    agent += ["--nproc-per-node", "1", *rdzv, "--rdzv-id", "clampgen-test", "--max-restarts", "0"]
    logs = [open(tmp_path / f"agent{i}.log", "w") for i in (0, 1)]
    agents = [
        subprocess.Popen(
            [*agent, *args, "--out", str(tmp_path / "two")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for log in logs
    ]
    try:
        codes = [a.wait(timeout=300) for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
        for log in logs:
            log.close()
    text = "".join((tmp_path / f"agent{i}.log").read_text() for i in (0, 1))
    assert codes == [0, 0], text[-3000:]
    assert "[0/2] run 2/2" in text and "[1/2] run 2/2" in text  # 4 runs, 2 on each node
    comparison = "pixel-in/00-a-red-circle-on-a-blue-background"
    for name in ("pixel-in/summary.json", f"{comparison}/summary.json"):
        assert _numbers(tmp_path / "two" / name) == _numbers(tmp_path / "one" / name)
    same = [_without_wall_times((tmp_path / d / "summary.md").read_text()) for d in ("one", "two")]
    assert same[0] == same[1] and "p(shape)" in same[0]
