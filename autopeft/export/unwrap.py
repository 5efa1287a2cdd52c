"""A trained model with its layers as transformers built them, for saving under the names others expect.

Training wraps some layers for speed (`train/first_token.py`: the last layer of a BERT classifier;
`train/frozen.py`: the frozen layers below the lowest adapter). The wrappers hold the original layer
as `.layer`, which inserts `.layer` into every parameter path: `peft` (and a fresh `apply_plan` model)
would not find them. `plain_layers` puts the originals back for the duration of a save. The wrappers
are recognised by their base class, `train.wrapper.LayerWrapper`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from autopeft.peft.inject import model_layers
from autopeft.peft.roles import ArchitectureMap, architecture_for
from autopeft.train.wrapper import LayerWrapper


def _inner(module: nn.Module) -> nn.Module:
    while isinstance(module, LayerWrapper):
        module = module.layer
    return module


@contextmanager
def plain_layers(model: nn.Module, arch: ArchitectureMap | None = None) -> Iterator[nn.Module]:
    """Within the block, `model`'s layer list holds the unwrapped layers (same parameters); restored after."""
    layers = model_layers(model, architecture_for(model, arch))
    saved = list(layers)
    for i, layer in enumerate(saved):
        layers[i] = _inner(layer)
    try:
        yield model
    finally:
        for i, layer in enumerate(saved):
            layers[i] = layer
