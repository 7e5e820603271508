"""The clamp study (clampgen.study): its conditions, their seeds, and one tiny run end to end."""

from clampgen import study
from clampgen.compare.runner import seed_list


def test_conditions_keep_only_the_variants_that_apply_and_given_options_win():
    opts, given = study.parse_args(["--steps", "7"])
    vq = study.condition_config("vqgan-random", opts, given)
    assert (vq.generator, vq.lr, vq.steps, vq.size) == ("vqgan", 0.1, 7, (64, 64))
    names = vq.clamp.split(",")
    assert "clamp_with_grad" in names and "range_loss" in names
    assert not {"sigmoid", "tanh", "project"} & set(names)  # pixel/fft keepers only
    out = study.condition_config("pixel-out", opts, given).clamp.split(",")
    assert {"project", "sigmoid", "proposed_adam_reset", "proposed_decoupled"} <= set(out)
    fft = study.condition_config("fft-in", *study.parse_args([]))
    assert (fft.steps, fft.lr) == (200, 0.05) and "project" not in fft.clamp.split(",")


def test_seeds_per_condition_unless_given():
    opts, _ = study.parse_args([])
    seeds = {n: study.condition_seeds(n, opts) for n in study.CONDITIONS}
    assert seeds["pixel-out"] == seeds["fft-in"] == 1 and seeds["vqgan-random"] == 3
    assert seeds["vqgan-lr0.05"] == 1
    opts, _ = study.parse_args(["--seeds", "2"])
    assert study.condition_seeds("vqgan-lr0.05", opts) == 2


def test_study_runs_each_condition_with_its_generators_seeds(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle on a blue background\n")
    out = tmp_path / "study"
    argv = ["--out", str(out), "--prompts", str(prompts), "--conditions", "pixel-in,vqgan-image"]
    argv += ["--steps", "2", "--clamp", "clamp,clamp_with_grad", "--no-video", "--save-every", "0"]
    assert study.main(argv) == 0
    comparison = "00-a-red-circle-on-a-blue-background"
    assert (out / "pixel-in" / comparison / "clamp_with_grad" / "final.png").is_file()  # 1 seed
    for seed in seed_list(0, study.SEEDS["vqgan-image"]):  # 3 seeds: one directory each
        assert (out / "vqgan-image" / comparison / f"seed_{seed}" / "clamp" / "final.png").is_file()
    summary = (out / "summary.md").read_text()
    assert "## pixel-in" in summary and "## vqgan-image" in summary
    assert (out / "study.png").is_file() and (out / "step_sizes-pixel-in.png").is_file()
