"""Injection across architectures: every built-in role map takes a mixed plan, and misfits are clear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autopeft.errors import ConfigError, UnsupportedArchitectureError
from autopeft.peft import ARCHITECTURES, PeftPlan, apply_plan, num_layers
from autopeft.peft.roles import ArchitectureMap, ModuleSlot, Role, role_map_from_dict
from tests.conftest import tiny_batch, tiny_bert


def _tiny(kind: str) -> nn.Module:
    """Tiny random-init classifiers of the families the issue names beyond BERT/GPT-2/Llama."""
    import transformers as tf

    common = {"vocab_size": 120, "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
              "intermediate_size": 48, "max_position_embeddings": 64, "num_labels": 2, "pad_token_id": 0}
    if kind == "roberta":
        return tf.RobertaForSequenceClassification(tf.RobertaConfig(**common, type_vocab_size=1))
    if kind == "electra":
        return tf.ElectraForSequenceClassification(tf.ElectraConfig(**common, embedding_size=32))
    if kind == "qwen2":
        return tf.Qwen2ForSequenceClassification(tf.Qwen2Config(**common, num_key_value_heads=2))
    return tf.MistralForSequenceClassification(tf.MistralConfig(**common, num_key_value_heads=2))


def _mixed_plan(roles_ff: list[str]) -> dict[str, object]:
    return {
        "0": [{"method": "lora", "r": 4, "roles": ["query", "value", *roles_ff]}],
        "1": [{"method": "dora", "r": 2, "roles": ["key"]}, {"method": "ia3"},
              {"method": "parallel_adapter", "size": 8}],
        "2": [{"method": "serial_adapter", "size": 8, "placement": "houlsby"}, {"method": "prefix", "length": 3}],
    }


@pytest.mark.parametrize("kind", ["roberta", "electra", "qwen2", "mistral"])
def test_mixed_plan_trains_on_every_builtin_family(kind: str) -> None:
    torch.manual_seed(0)
    model = _tiny(kind)
    assert model.config.model_type in ARCHITECTURES
    roles_ff = ["ff_gate", "ff_up"] if kind in ("qwen2", "mistral") else ["ff_up"]
    info = apply_plan(model, PeftPlan.from_selectors(_mixed_plan(roles_ff), num_layers(model)))
    batch = tiny_batch()
    out = model(**batch, labels=torch.tensor([0, 1, 1]))
    out.loss.backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == info.trainable_params
    assert all(p.grad is not None for p in trainable.values())
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    assert 0 < info.trainable_share < 1


def test_unknown_architecture_lists_the_supported_ones() -> None:
    model = tiny_bert()
    model.config.model_type = "my-arch"
    with pytest.raises(UnsupportedArchitectureError) as info:
        apply_plan(model, PeftPlan.from_selectors({"0": [{"method": "lora", "r": 2}]}, 3))
    message = str(info.value)
    assert "'my-arch'" in message and "bert" in message and "llama" in message and "role_map" in message


def test_a_role_map_from_the_recipe_adapts_an_unknown_architecture() -> None:
    torch.manual_seed(0)
    model = tiny_bert()
    model.config.model_type = "my-arch"
    arch = role_map_from_dict({"layers": "encoder.layer", "attention": "attention.self",
                               "roles": {"query": "attention.self.query", "value": "attention.self.value"}})
    info = apply_plan(model, PeftPlan.from_selectors({"all": [{"method": "lora", "r": 2}]}, 3), arch=arch)
    # 3 layers x 2 roles x (2x32 + 32x2) + classifier (32x2 + 2)
    assert info.trainable_params == 3 * 2 * (2 * 32 + 32 * 2) + 32 * 2 + 2


def test_role_missing_from_the_map_is_named() -> None:
    arch = ArchitectureMap(layers="encoder.layer", attention="attention.self",
                           roles={Role.QUERY: ModuleSlot("attention.self.query")})
    with pytest.raises(UnsupportedArchitectureError, match="role 'ff_gate' does not exist"):
        apply_plan(tiny_bert(), PeftPlan.from_selectors({"0": [{"method": "lora", "r": 2, "roles": ["ff_gate"]}]},
                                                        3), arch=arch)


def test_bad_role_map_is_one_clear_error() -> None:
    with pytest.raises(UnsupportedArchitectureError, match="unknown role 'q'; accepted: query"):
        role_map_from_dict({"layers": "encoder.layer", "roles": {"q": "attention.self.query"}})


def test_plan_for_another_layer_count_is_refused() -> None:
    with pytest.raises(ConfigError, match="plan was made for 6 layers but the model has 3"):
        apply_plan(tiny_bert(), PeftPlan.from_selectors({"0": [{"method": "lora", "r": 2}]}, 6))


def test_counts_on_the_meta_device_equal_the_real_ones() -> None:
    plan = PeftPlan.from_selectors(_mixed_plan(["ff_up"]), 3)
    real = apply_plan(tiny_bert(), plan)
    with torch.device("meta"):
        meta_model = tiny_bert()
    assert apply_plan(meta_model, plan) == real


