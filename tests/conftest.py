"""Shared fixtures: tiny random-init transformers (built from configs, nothing downloaded)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_GLUE = Path(os.environ.get("AUTOPEFT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data/glue"))


def tiny_bert(num_labels: int = 2, layers: int = 3) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=64, num_labels=num_labels,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(cfg)


def tiny_gpt2(num_labels: int = 2, layers: int = 3) -> nn.Module:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    cfg = GPT2Config(vocab_size=120, n_embd=32, n_layer=layers, n_head=4, n_positions=64, num_labels=num_labels,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return GPT2ForSequenceClassification(cfg)


def tiny_llama(num_labels: int = 2, layers: int = 3) -> nn.Module:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    cfg = LlamaConfig(vocab_size=120, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=48, max_position_embeddings=64,
                      num_labels=num_labels, pad_token_id=0)
    return LlamaForSequenceClassification(cfg)


TINY_MODELS: dict[str, Callable[..., nn.Module]] = {"bert": tiny_bert, "gpt2": tiny_gpt2, "llama": tiny_llama}


def tiny_batch(batch: int = 3, seq: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    """Token ids with right padding of different lengths (ids never 0 except padding)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 120, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.long)
    for row in range(1, batch):
        mask[row, seq - row:] = 0
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(params=sorted(TINY_MODELS))
def tiny_model_factory(request: pytest.FixtureRequest) -> Callable[..., nn.Module]:
    """Each tiny architecture in turn (BERT, GPT-2, Llama)."""
    torch.manual_seed(0)
    return TINY_MODELS[request.param]


@pytest.fixture
def glue_dir() -> Path:
    if not SHARED_GLUE.is_dir():
        pytest.skip(f"GLUE files not found at {SHARED_GLUE} (set AUTOPEFT_DATA_DIR or put ../shared beside the repo)")
    return SHARED_GLUE
