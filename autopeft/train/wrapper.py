"""The base of the training-speed wrappers around one transformer layer (first-token, frozen prefix).

A wrapper holds the original layer as `.layer`, which inserts `.layer` into every parameter path.
Code that saves weights under transformers' names (`export.unwrap.plain_layers`) recognises the
wrappers by this type, not by where their classes happen to live.
"""

from __future__ import annotations

from torch import nn


class LayerWrapper(nn.Module):
    """Wraps one layer for speed; `layer` is the original module, with the same parameters."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
