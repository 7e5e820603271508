"""The training script reproduces its weights from the seed, and its loss behaves (tiny runs)."""

import torch

from clampgen.training.train_shapes import TrainConfig, multi_positive_clip_loss, parse_args, train


def test_training_is_reproducible():
    cfg = TrainConfig(steps=2, batch_size=8, warmup=1, eval_every=0)
    a, b = train(cfg).state_dict(), train(cfg).state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_multi_positive_loss_reduces_to_clip_loss():
    """With only the diagonal positive, the loss is CLIP's symmetric cross-entropy."""
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    logits = 10 * img @ txt.T
    labels = torch.arange(5)
    expected = (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.cross_entropy(logits.T, labels)
    ) / 2
    torch.testing.assert_close(
        multi_positive_clip_loss(img, txt, torch.eye(5, dtype=torch.bool), 10.0), expected
    )


def test_multi_positive_loss_spreads_targets():
    """Two identical captions that are both true of an image share its target mass."""
    img = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0]]), dim=-1)
    txt = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=-1)
    positives = torch.tensor([[True, True]])
    loss = multi_positive_clip_loss(
        img, txt, positives, 1.0
    )  # both logits equal: image side log 2, text side 0
    torch.testing.assert_close(loss, torch.tensor(0.5 * torch.log(torch.tensor(2.0)).item()))


def test_cli_defaults_are_the_config():
    assert parse_args([]) == TrainConfig()
    assert parse_args(["--steps", "5", "--batch-size", "4"]).steps == 5
