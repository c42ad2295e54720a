"""Text-to-video generation: model registry, offline tiny model, diffusers inference.

Only :mod:`videogen.generation.registry` is import-cheap; the other modules import torch/diffusers
lazily inside their functions.
"""
