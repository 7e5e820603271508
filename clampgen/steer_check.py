"""
Judged steering check: does the bundled `shapes` CLIP steer the generator to the prompted scene?

    python -m clampgen.steer_check --steps 100 --grid steer_grid.png
    python -m clampgen.steer_check --size 64 --generator pixel --lr 0.02 --seeds 2

One prompt per shape, "a <colour> <shape> on a <background> background" (colour pairs fixed
below), is generated with the generator's own defaults (--model shapes) unless overridden. The
final images are scored by judges that are not the guiding model (clampgen.models.judge): the
most common palette colour must be the background, the second most common the shape colour,
and the supervised shape classifier must name the shape. Prints one row per image and the
accuracies, and saves a grid of the images (rows: seeds, columns: shapes).
"""
import argparse
import dataclasses

import torch
import torch.nn.functional as F

from clampgen.models import shapes_data as sd
from clampgen.models.judge import colour_shares, judge_shapes, load_shape_judge

PAIRS = [('red', 'blue'), ('yellow', 'black'), ('green', 'white'), ('white', 'purple'),
         ('orange', 'grey'), ('blue', 'yellow'), ('pink', 'green'), ('black', 'orange')]  # (shape, background)


VERDICTS = ('background_ok', 'colour_ok', 'colour_top3', 'shape_ok')


def prompts():
    """[(prompt, shape, colour, background)] one per shape."""
    return [(sd.describe(shape=s, colour=c, background=b), s, c, b) for s, (c, b) in zip(sd.SHAPES, PAIRS)]


def generate(cfg, bundle=None):
    """Runs the generator loop for cfg without writing files; returns the final image (1, 3, H, W)."""
    from clampgen.loop import optimize
    from clampgen.run import prepare
    seen = {}
    optimize(**prepare(cfg, bundle), cfg=cfg, callback=lambda info: seen.update(image=info['image']))
    return seen['image'].cpu()


def judge(image, shape, colour, background, shape_judge):
    """Judges one image (1, 3, H, W): dict of verdicts and what the judges saw.

    background_ok: the most common palette colour is the background; colour_ok: the second most
    common is the shape's colour (strict: noise pixels compete with a small object); colour_top3:
    the shape's colour is among the three most common after the background; shape_ok: the shape
    judge's top class is the prompted shape.
    """
    shares = colour_shares(image)[0]
    top = shares.topk(4).indices.tolist()
    probs = judge_shapes(shape_judge, image)[0]
    c = sd.COLOURS.index(colour)
    return {
        'background_ok': sd.COLOURS[top[0]] == background, 'colour_ok': top[1] == c,
        'colour_top3': c in top[1:] and top[0] != c, 'shape_ok': sd.SHAPES[probs.argmax()] == shape,
        'judged_shape': sd.SHAPES[probs.argmax()], 'shape_prob': probs[sd.SHAPES.index(shape)].item(),
        'colour_share': shares[c].item(),
        'colours_seen': ', '.join(f'{sd.COLOURS[i]} {shares[i]:.2f}' for i in top[:3]),
    }


def run(overrides, seeds=1, weights='', progress=print, first_seed=0):
    """Generates and judges every prompt for seeds first_seed.. (seeds of them); returns (rows, images)."""
    from clampgen.clip_loader import load_clip
    from clampgen.config import GenerateConfig
    base = dataclasses.replace(GenerateConfig(), model='shapes', progress=False, **overrides)
    bundle = load_clip('shapes', weights, 'cpu')
    shape_judge = load_shape_judge()
    rows, images = [], []
    for seed in range(first_seed, first_seed + seeds):
        for prompt, shape, colour, background in prompts():
            cfg = dataclasses.replace(base, prompt=prompt, seed=seed)
            image = generate(cfg, bundle)
            verdict = judge(image, shape, colour, background, shape_judge)
            rows.append({'prompt': prompt, 'seed': seed, **verdict})
            images.append(F.interpolate(image, size=(128, 128), mode='nearest'))
            progress(_format_row(rows[-1]))
    return rows, images


def _format_row(r):
    marks = ''.join('+' if r[k] else '-' for k in VERDICTS)
    return (f"{marks} seed {r['seed']} {r['prompt']!r}: judged {r['judged_shape']} "
            f"(p={r['shape_prob']:.2f}), shape colour share {r['colour_share']:.2f}, "
            f"top colours {r['colours_seen']}")


def accuracies(rows):
    return {k: sum(r[k] for r in rows) / len(rows) for k in VERDICTS}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--seeds', type=int, default=1, help='seeds per prompt')
    p.add_argument('--first-seed', type=int, default=0, help='first seed (then +1, +2, ...)')
    p.add_argument('--weights', default='', help='shapes CLIP safetensors (default: the shipped weights)')
    p.add_argument('--grid', default='steer_grid.png', help='where to save the grid of final images')
    p.add_argument('--steps', type=int, help='optimisation steps (default: the generator default)')
    p.add_argument('--size', type=int, help='image side in pixels (default: the generator default)')
    p.add_argument('--generator', help='pixel or fft (default: the generator default)')
    p.add_argument('--lr', type=float, help='learning rate (default: the generator default)')
    p.add_argument('--cutn', type=int, help='cutouts per step (default: the generator default)')
    p.add_argument('--clamp', help='clamp variant (default: the generator default)')
    args = vars(p.parse_args(argv))
    seeds, first, grid, weights = args.pop('seeds'), args.pop('first_seed'), args.pop('grid'), args.pop('weights')
    overrides = {k: v for k, v in args.items() if v is not None}
    if 'size' in overrides:
        overrides['size'] = (overrides['size'], overrides['size'])
    torch.set_num_threads(1)
    rows, images = run(overrides, seeds, weights, first_seed=first)
    acc = accuracies(rows)
    print(' '.join(f'{k} {100 * v:.0f}%' for k, v in acc.items()),
          f'({len(rows)} images, {overrides or "defaults"})')
    from torchvision.utils import save_image
    save_image(torch.cat(images), grid, nrow=len(sd.SHAPES), padding=2, pad_value=1.0)
    print(f'saved {grid}')


if __name__ == '__main__':
    main()
