"""The bundled offline models: the procedural shapes world, the `shapes` CLIP, the judges."""
