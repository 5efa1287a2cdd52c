"""Compute only the first token in the last layer of BERT-family classifiers.

A BERT-family sequence classifier reads nothing but the first token of the last layer (the pooler
takes `[:, 0]`; RoBERTa's and ELECTRA's heads take `features[:, 0]`). The last layer's keys and values
still need every token, but its query, attention output and feed-forward block need only that one.
Skipping the rest removes about 10/12 of the last layer's matrix work, forward and backward, and
changes no logit (the tests compare with the full model).

transformers has no switch for this; `BertSelfAttention` reshapes its output to the input's sequence
length, so the layer is re-expressed here from its own submodules (adapters included, as they live
inside those submodules) and its attention goes through the model's attention function as usual.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from autopeft.train.wrapper import LayerWrapper

#: `model_type`s whose sequence-classification heads read only the first token.
FIRST_TOKEN_HEADS = ("bert", "roberta", "xlm-roberta", "electra")


def supports_first_token(model: nn.Module) -> bool:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return model_type in FIRST_TOKEN_HEADS and type(model).__name__.endswith("ForSequenceClassification")


class FirstTokenLayer(LayerWrapper):
    """Wraps a BERT-family layer; returns `(batch, 1, hidden)`: the first token's output only."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> Any:
        if encoder_hidden_states is not None or kwargs.get("past_key_values") is not None:
            return self.layer(hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        layer: Any = self.layer  # a transformers BertLayer (or RoBERTa/ELECTRA): duck-typed
        attention: Any = layer.attention.self
        batch = hidden_states.shape[0]
        first = hidden_states[:, :1]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, x.shape[1], -1, attention.attention_head_size).transpose(1, 2)

        query = heads(attention.query(first))
        key = heads(attention.key(hidden_states))
        value = heads(attention.value(hidden_states))
        if attention_mask is not None and attention_mask.dim() == 4 and attention_mask.shape[-2] > 1:
            attention_mask = attention_mask[..., :1, :]  # an encoder's mask rows are all the same
        interface: Any = ALL_ATTENTION_FUNCTIONS.get(attention.config._attn_implementation)
        if interface is None:  # eager: transformers' own module-level function for this model
            import importlib

            interface = importlib.import_module(type(attention).__module__).eager_attention_forward
        context, _ = interface(attention, query, key, value, attention_mask,
                               dropout=attention.dropout.p if attention.training else 0.0,
                               scaling=attention.scaling)
        context = context.reshape(batch, 1, -1)
        attention_output = layer.attention.output(context, first)
        return layer.feed_forward_chunk(attention_output)


def use_first_token_last_layer(model: nn.Module, layers: nn.ModuleList) -> bool:
    """Wrap the last layer if the model's head reads only the first token; returns whether it did."""
    if not supports_first_token(model):
        return False
    last = layers[-1]
    if not all(hasattr(last, name) for name in ("attention", "feed_forward_chunk")):
        return False
    layers[-1] = FirstTokenLayer(last)
    return True
