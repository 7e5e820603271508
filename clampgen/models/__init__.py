"""The bundled offline `shapes` CLIP: its procedural world, open_clip registration, training and judges."""
