"""CLIP-guided image generation with a choice of clamp pseudo-gradients.

    python generate.py "a red circle on a blue background"
    python generate.py "a watercolor lighthouse:1 | blurry:-0.5" --model ViT-B-32 \
        --pretrained laion2b_s34b_b79k --size 512 --steps 300
    python generate.py --config prompts/shapes.toml --seed 42
    python generate.py --help

See clampgen/cli.py for the options (built from clampgen.config.GenerateConfig).
"""

import sys

from clampgen.cli import main

if __name__ == "__main__":
    sys.exit(main())
