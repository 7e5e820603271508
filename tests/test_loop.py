import dataclasses
import math

import pytest
import torch

from clampgen.clip_loader import load_clip
from clampgen.config import GenerateConfig
from clampgen.generators import with_defaults
from clampgen.loop import (
    Targets,
    make_optimizer,
    optimize,
    prompt_losses,
    spherical_dist,
    tv_loss,
)
from clampgen.run import complete, prepare

INFO_KEYS = {"step", "image", "loss", "losses", "eval_loss", "out_of_range", "grad_norm", "seconds"}


@pytest.fixture(scope="module")
def bundle():
    return load_clip("clampgen-tiny", "", "cpu")


def small_cfg(**kw):
    base = dict(
        prompt="a red circle | blue:-0.5",
        size=(24, 24),
        steps=6,
        cutn=4,
        eval_every=3,
        save_every=0,
        seed=0,
        progress=False,
    )
    return with_defaults(GenerateConfig(**{**base, **kw}))  # the generator's lr


def run(bundle, cfg, callback=None):
    parts = prepare(cfg, bundle)
    return optimize(**parts, cfg=cfg, callback=callback), parts["generator"]


def test_spherical_dist_values():
    e = torch.eye(3)
    d = spherical_dist(e, e)
    torch.testing.assert_close(d.diagonal(), torch.zeros(3))
    torch.testing.assert_close(d[0, 1], torch.tensor(math.pi**2 / 8))  # orthogonal: 2 (pi/4)^2
    torch.testing.assert_close(spherical_dist(e[:1], -e[:1]), torch.tensor([[math.pi**2 / 2]]))


def test_prompt_losses_weight_sign_and_stop():
    x = torch.nn.functional.normalize(torch.tensor([[1.0, 1.0]]), dim=-1).requires_grad_()
    y = torch.eye(2)
    d = spherical_dist(x, y)[0]  # (2,) both pi^2/32
    t = Targets(y, torch.tensor([2.0, -1.0]), torch.tensor([-math.inf, -math.inf]), ["a", "b"])
    torch.testing.assert_close(prompt_losses(x, t), torch.stack([2 * d[0], -d[1]]).detach())
    floored = Targets(y, torch.tensor([1.0, 1.0]), torch.tensor([1.0, -math.inf]), ["a", "b"])
    losses = prompt_losses(x, floored)
    assert losses[0].item() == 1.0  # floored at stop
    grad = torch.autograd.grad(losses[0], x)[0]
    assert torch.equal(grad, torch.zeros_like(grad))  # no push below the floor


def test_callback_contract_and_steps(bundle):
    infos = []
    result, _ = run(bundle, small_cfg(), infos.append)
    assert [i["step"] for i in infos] == list(range(7))
    for info in infos:
        assert INFO_KEYS <= set(info)
        assert info["image"].shape == (1, 3, 24, 24) and not info["image"].requires_grad
        assert 0 <= info["image"].min() and info["image"].max() <= 1
        assert len(info["losses"]) == 2 and isinstance(info["loss"], float)
        assert (info["eval_loss"] is not None) == (info["step"] % 3 == 0 or info["step"] == 6)
    assert infos[-1]["last"] and result["step"] == 6 and not result["stopped"]


def test_loss_decreases(bundle):
    infos = []
    # from grey noise: the tiny random model's best flat colour may already beat what 15 steps
    # reach from it
    cfg = small_cfg(steps=15, lr=0.1, prompt="a red circle", init_colour="none")
    run(bundle, cfg, infos.append)
    evals = [i["eval_loss"] for i in infos if i["eval_loss"] is not None]
    assert evals[-1] < evals[0]


def test_callback_true_stops(bundle):
    infos = []
    result, _ = run(bundle, small_cfg(), lambda info: infos.append(info) or info["step"] == 2)
    assert result["stopped"] and result["step"] == 2 and len(infos) == 3


def test_eval_does_not_consume_training_randomness(bundle):
    _, a = run(bundle, small_cfg(eval_every=1))
    _, b = run(bundle, small_cfg(eval_every=0))
    assert torch.equal(a(), b())


def test_clamps_share_step_zero(bundle):
    """A/B fairness: runs that differ only in the clamp see the same frame 0 and step-0 loss."""
    firsts = []
    for clamp in ("clamp", "clamp_with_grad", "clamp_with_grad_proposed"):
        infos = []
        run(
            bundle, small_cfg(clamp=clamp, generator="pixel", init_scale=2.0, steps=2), infos.append
        )
        firsts.append(infos[0])
    for info in firsts[1:]:
        assert torch.equal(info["image"], firsts[0]["image"]) and info["loss"] == firsts[0]["loss"]
    assert firsts[0]["out_of_range"] > 0.1


def test_init_weight_keeps_close_to_init(bundle):
    far, near = [], []
    for weight, out in ((0.0, far), (1000.0, near)):
        cfg = small_cfg(generator="pixel", init="gray", lr=0.05, steps=8, init_weight=weight)
        _, gen = run(bundle, cfg)
        out.append((gen() - 0.5).abs().mean().item())
    assert near[0] < far[0]


def test_tv_loss_by_hand():
    # one channel, rows [0, 1] and [0, 3]: horizontal steps 1, 3; vertical steps 0, 2
    image = torch.tensor([[[[0.0, 1.0], [0.0, 3.0]]]])  # (1, 1, 2, 2)
    assert tv_loss(image).item() == pytest.approx((1 + 9) / 2 + (0 + 4) / 2)
    assert tv_loss(torch.full((1, 3, 5, 7), 0.3)).item() == 0.0


def test_tv_weight_smooths_the_image(bundle):
    roughness = []
    for weight in (0.0, 100.0):
        cfg = small_cfg(generator="pixel", lr=0.05, steps=8, tv_weight=weight)
        _, gen = run(bundle, cfg)
        roughness.append(tv_loss(gen().clamp(0, 1)).item())
    assert roughness[1] < 0.5 * roughness[0]


def test_make_optimizer_errors():
    p = [torch.nn.Parameter(torch.zeros(1))]
    assert isinstance(make_optimizer(p, "sgd", 0.1), torch.optim.SGD)
    with pytest.raises(ValueError, match="adam, adamw"):
        make_optimizer(p, "lbfgs-ish", 0.1)


def test_works_with_any_registered_clamp(bundle):
    from clampgen.clamps import list_clamps

    for clamp in list_clamps():
        result, _ = run(bundle, dataclasses.replace(small_cfg(clamp=clamp), steps=1))
        assert math.isfinite(result["loss"])


def test_prepare_needs_a_seed(bundle):
    with pytest.raises(ValueError, match="needs a seed"):
        prepare(small_cfg(seed=None), bundle)


def test_prepare_needs_the_generator_defaults_and_complete_gives_them(bundle):
    with pytest.raises(
        ValueError, match="needs steps, lr, cut_overhang, tv_weight, cut_whole, init_scale"
    ):
        prepare(GenerateConfig(prompt="a red circle", seed=0), bundle)
    for generator, defaults in (
        ("pixel", (150, 0.1, 0.0, 10.0, 0)),
        ("fft", (150, 0.1, 0.0, 10.0, 0)),
        ("vqgan", (75, 0.2, 0.0, 0.0, 4)),
    ):
        cfg = complete(GenerateConfig(prompt="a red circle", generator=generator))
        assert (cfg.steps, cfg.lr, cfg.cut_overhang, cfg.tv_weight, cfg.cut_whole) == defaults
        assert isinstance(cfg.seed, int)
    given = complete(
        GenerateConfig(
            prompt="a",
            generator="fft",
            steps=3,
            lr=0.5,
            cut_overhang=0.1,
            tv_weight=0.0,
            cut_whole=2,
            seed=7,
        )
    )
    got = (given.steps, given.lr, given.cut_overhang, given.tv_weight, given.cut_whole, given.seed)
    assert got == (3, 0.5, 0.1, 0.0, 2, 7)


@pytest.mark.parametrize("generator", ["pixel", "fft"])
def test_step_forward_compiles_as_one_graph(bundle, generator):
    """The step's differentiable part, model included, is captured whole by torch.compile
    (fullgraph: no host sync, no graph break) and gives the eager loss and gradient."""
    from clampgen.cutouts import Augment, draw_cutouts
    from clampgen.keepers import get_keeper
    from clampgen.loop import step_forward

    cfg = small_cfg(generator=generator)
    parts = prepare(cfg, bundle)
    gen, guides = parts["generator"], parts["guides"]
    draws = (draw_cutouts(cfg.cutn, 3, bundle.input_size, torch.Generator().manual_seed(0)),)
    args = (guides, cfg, get_keeper(cfg.clamp), Augment(), draws, None)
    compiled = torch.compile(step_forward, fullgraph=True, backend="aot_eager", dynamic=False)
    losses = []
    for fn in (step_forward, compiled):
        gen.zero_grad()
        loss = fn(gen, *args)[2]
        loss.backward()
        losses.append((loss.detach(), next(gen.parameters()).grad.clone()))
    torch.testing.assert_close(losses[1][0], losses[0][0])
    torch.testing.assert_close(losses[1][1], losses[0][1])


def test_one_host_sync_per_reported_step_keeps_metrics(bundle, monkeypatch):
    """Metrics come from one batched transfer per reported step (.tolist/.item counted, no
    eval steps but the last); they match what the tensors say."""
    infos, calls = [], []
    for name in ("tolist", "item"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor, name, lambda self, _f=original, _n=name: calls.append(_n) or _f(self)
        )
    cfg = small_cfg(steps=4, log_every=2, eval_every=0, tv_weight=0.0)  # loss: the prompts'
    parts = prepare(cfg, bundle)
    calls.clear()
    optimize(**parts, cfg=cfg, callback=infos.append)
    assert [i["step"] for i in infos] == [0, 2, 4]
    assert calls == ["tolist"] * 3 + ["item"]  # one per reported step, eval_loss at the last
    for info in infos:
        assert isinstance(info["grad_norm"], float) and info["grad_norm"] >= 0
        assert 0 <= info["out_of_range"] <= 1
        assert math.isclose(sum(info["losses"]), info["loss"], rel_tol=1e-5, abs_tol=1e-6)


def test_lr_factor_cosine_by_hand_and_constant():
    from clampgen.loop import lr_factor

    assert [lr_factor("cosine", s, 4) for s in range(5)] == pytest.approx(
        [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2, 0.0]
    )
    assert {lr_factor("constant", s, 4) for s in range(5)} == {1.0}
    with pytest.raises(ValueError, match="unknown lr schedule"):
        lr_factor("step", 1, 4)


def test_the_optimizer_steps_with_the_scheduled_lr_and_keeps_the_initial_one(bundle):
    cfg = small_cfg(steps=4, lr=0.2, lr_schedule="cosine")
    seen = []
    parts = prepare(cfg, bundle)
    opt = make_optimizer([p for p in parts["generator"].parameters()], cfg.optimizer, cfg.lr)
    optimize(
        **parts, cfg=cfg, optimizer=opt, callback=lambda i: seen.append(opt.param_groups[0]["lr"])
    )
    # the callback of step s sees the lr of update s-1 (step 0: the optimizer's own)
    assert seen == pytest.approx(
        [0.2, 0.2, 0.2 * (1 + math.sqrt(0.5)) / 2, 0.1, 0.2 * (1 - math.sqrt(0.5)) / 2]
    )
    assert opt.param_groups[0]["initial_lr"] == 0.2
    assert opt.state_dict()["param_groups"][0]["initial_lr"] == 0.2  # a checkpoint keeps it


def test_the_schedule_changes_the_run(bundle):
    _, a = run(bundle, small_cfg(lr_schedule="constant"))
    _, b = run(bundle, small_cfg(lr_schedule="cosine"))
    assert not torch.equal(a(), b())
