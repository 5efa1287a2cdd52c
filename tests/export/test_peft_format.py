"""Export to Hugging Face `peft`: the config says what `peft` can express, and the saved adapter, loaded
by `PeftModel.from_pretrained` on a saved-and-reloaded base, computes what our adapted model computes."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from autopeft.export import PeftExport, peft_format, save_peft_adapter, to_peft_config
from autopeft.export.peft_format import peft_prefix_unsupported
from autopeft.peft import PeftPlan, apply_plan
from autopeft.peft.ia3 import IA3Vector
from autopeft.peft.inject import HEAD_NAMES
from autopeft.peft.lora import DoraDelta, LoraDelta
from tests.conftest import TINY_MODELS, tiny_batch

peft = pytest.importorskip("peft")

TOL = {"rtol": 1e-5, "atol": 1e-5}
QV = ["query", "value"]


def build(kind: str, plan_raw: dict[Any, Any]) -> tuple[nn.Module, nn.Module, PeftPlan]:
    """(our adapted float64 model with non-trivial adapters and head, an untouched copy, the plan)."""
    torch.manual_seed(0)
    model = TINY_MODELS[kind]().double()
    plain = copy.deepcopy(model)
    plan = PeftPlan.from_selectors(plan_raw, 3)
    apply_plan(model, plan)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraDelta):
                module.lora_B.copy_(0.3 * torch.randn(module.lora_B.shape, generator=gen))
            if isinstance(module, DoraDelta):
                module.magnitude.mul_(1 + 0.2 * torch.randn(module.magnitude.shape, generator=gen))
            if isinstance(module, IA3Vector):
                module.vector.copy_(1 + 0.3 * torch.randn(module.vector.shape, generator=gen))
        for name in HEAD_NAMES:  # the trained head travels through modules_to_save
            head = getattr(model, name, None)
            if isinstance(head, nn.Module):
                for p in head.parameters():
                    p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model, plain, plan


def load_in_peft(plain: nn.Module, adapter_dir: Path, tmp_path: Path) -> Any:
    """The adapter on a base saved with `save_pretrained` and loaded back, as a user of `peft` would."""
    plain.save_pretrained(tmp_path / "base")
    base = type(plain).from_pretrained(tmp_path / "base", dtype=torch.float64)
    pm = peft.PeftModel.from_pretrained(base, adapter_dir)
    pm.eval()
    return pm


def peft_ranks(pm: Any) -> dict[str, int]:
    """The rank `peft` gave each module it adapted (after applying rank_pattern)."""
    return {n: m.r["default"] for n, m in pm.base_model.model.named_modules()
            if isinstance(m, peft.tuners.lora.LoraLayer)}


def roundtrip(kind: str, plan_raw: dict[Any, Any], tmp_path: Path, **forward: Any) -> tuple[PeftExport, Any]:
    ours, plain, plan = build(kind, plan_raw)
    ours.eval()
    export = save_peft_adapter(ours, plan, tmp_path / "adapter")
    assert export.expressible, export.unsupported
    assert json.loads((tmp_path / "adapter/adapter_config.json").read_text())["peft_type"] == export.config["peft_type"]
    pm = load_in_peft(plain, tmp_path / "adapter", tmp_path)
    batch = tiny_batch()
    with torch.no_grad():
        logits = ours(**batch, **forward).logits
        their_logits = pm(**batch).logits
        base_logits = plain(**batch).logits
    torch.testing.assert_close(logits, their_logits, **TOL)
    assert not torch.allclose(logits, base_logits)
    return export, pm


def test_lora_per_layer_ranks_roundtrip_with_rank_and_alpha_patterns(tmp_path: Path) -> None:
    export, pm = roundtrip("bert", {
        "0": [{"method": "lora", "r": 2, "alpha": 16, "roles": QV}],
        "1": [{"method": "lora", "r": 4, "alpha": 8, "roles": QV}],
        "2": [{"method": "lora", "r": 4, "alpha": 16, "roles": ["query", "ff_down"]}],
    }, tmp_path)
    config = export.config
    assert config is not None
    assert config["r"] == 4 and config["lora_alpha"] == 16
    assert sorted(config["target_modules"]) == [
        "bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.0.attention.self.value",
        "bert.encoder.layer.1.attention.self.query", "bert.encoder.layer.1.attention.self.value",
        "bert.encoder.layer.2.attention.self.query", "bert.encoder.layer.2.output.dense",
    ]
    assert config["rank_pattern"] == {re.escape(f"bert.encoder.layer.0.attention.self.{r}"): 2 for r in QV}
    assert config["alpha_pattern"] == {re.escape(f"bert.encoder.layer.1.attention.self.{r}"): 8 for r in QV}
    assert config["task_type"] == "SEQ_CLS" and "classifier" in config["modules_to_save"]
    assert not config["use_dora"] and config["lora_dropout"] == 0.0
    ranks = peft_ranks(pm)
    assert ranks["bert.encoder.layer.0.attention.self.query"] == 2
    assert ranks["bert.encoder.layer.2.output.dense"] == 4


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_dora_roundtrip(kind: str, tmp_path: Path) -> None:
    export, _ = roundtrip(kind, {
        "0-1": [{"method": "dora", "r": 4, "alpha": 8, "roles": ["query", "value", "ff_down"]}],
        "2": [{"method": "dora", "r": 2, "alpha": 8, "roles": QV}],
    }, tmp_path)
    assert export.config is not None and export.config["use_dora"]
    assert set(export.config["rank_pattern"].values()) == {2}


def test_rslora_and_gpt2_fused_c_attn_with_all_of_qkv(tmp_path: Path) -> None:
    export, pm = roundtrip("gpt2", {"all": [{"method": "lora", "r": 2, "alpha": 4, "rslora": True,
                                            "roles": ["query", "key", "value", "ff_down"]}]}, tmp_path)
    config = export.config
    assert config is not None and config["fan_in_fan_out"] and config["use_rslora"]
    want = {f"transformer.h.{i}.{path}": r for i in range(3) for path, r in (("attn.c_attn", 6), ("mlp.c_proj", 2))}
    assert peft_ranks(pm) == want
    assert any("block-diagonal" in n for n in export.notes)


def test_gpt2_dora_on_all_of_qkv(tmp_path: Path) -> None:
    roundtrip("gpt2", {"1-2": [{"method": "dora", "r": 2, "alpha": 4, "roles": ["query", "key", "value"]}]}, tmp_path)


def test_mixed_rslora_folds_into_alpha_and_one_dropout_is_kept(tmp_path: Path) -> None:
    export, _ = roundtrip("bert", {
        "0": [{"method": "lora", "r": 4, "alpha": 8, "rslora": True, "dropout": 0.1, "roles": QV}],
        "1-2": [{"method": "lora", "r": 4, "alpha": 8, "dropout": 0.1, "roles": QV}],
    }, tmp_path)
    config = export.config
    assert config is not None and not config["use_rslora"] and config["lora_dropout"] == 0.1
    assert config["alpha_pattern"] == {re.escape(f"bert.encoder.layer.0.attention.self.{r}"): 16 for r in QV}
    assert any("rsLoRA" in n for n in export.notes)


def test_ia3_roundtrip_including_gpt2_fused_key_value_query(tmp_path: Path) -> None:
    export, _ = roundtrip("gpt2", {"0-1": [{"method": "ia3", "roles": ["query", "key", "value", "ff_down"]}],
                                   "2": [{"method": "ia3", "roles": ["attn_output"]}]}, tmp_path)
    config = export.config
    assert config is not None and config["peft_type"] == "IA3"
    assert sorted(config["feedforward_modules"]) == ["transformer.h.0.mlp.c_proj", "transformer.h.1.mlp.c_proj"]
    assert len(config["target_modules"]) == 5


def test_ia3_roundtrip_bert(tmp_path: Path) -> None:
    roundtrip("bert", {"all": [{"method": "ia3"}]}, tmp_path)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_uniform_prefix_roundtrip(kind: str, tmp_path: Path) -> None:
    if broken := peft_prefix_unsupported():
        pytest.skip(broken)
    # peft feeds the prefix as a cache and shifts the real tokens' positions by its length; ours keeps
    # them at 0.., so ours runs at peft's positions for the comparison (and the export notes it).
    length = 3
    positions = torch.arange(length, length + tiny_batch()["input_ids"].shape[1]).unsqueeze(0)
    export, _ = roundtrip(kind, {"all": [{"method": "prefix", "length": length}]}, tmp_path, position_ids=positions)
    assert export.config is not None and export.config["num_virtual_tokens"] == length
    assert any("position" in n for n in export.notes)


@pytest.mark.parametrize(("transformers", "peft_version", "broken"), [
    ("5.23.0", "0.21.2", False),
    ("5.24.0", "0.21.2", True),
    ("5.24.0.dev0", "0.17.0", True),  # pre-releases of 5.24 have the rename already
    ("5.25.1", "0.21.2+local", True),
    ("6.0.0", "0.21.1", True),
    ("5.24.0", "0.22.0", False),  # assumed fixed until scripts/check_latest.sh says otherwise
])
def test_peft_prefix_unsupported_by_version(transformers: str, peft_version: str, broken: bool) -> None:
    reason = peft_prefix_unsupported(transformers, peft_version)
    assert (reason is not None) == broken
    if reason is not None:
        assert f"peft {peft_version}" in reason and f"transformers {transformers}" in reason
        assert "\n" not in reason


def test_uniform_prefix_is_not_exported_for_a_peft_that_cannot_run_it(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    installed = {"transformers": "5.24.0", "peft": "0.21.2"}
    monkeypatch.setattr(peft_format, "version", installed.__getitem__)
    model, _, plan = build("bert", {"all": [{"method": "prefix", "length": 3}]})
    export = to_peft_config(plan, model)
    assert not export.expressible
    assert export.unsupported == [peft_prefix_unsupported("5.24.0", "0.21.2")]
    assert not save_peft_adapter(model, plan, tmp_path / "out").expressible
    assert not (tmp_path / "out").exists()


UNSUPPORTED: list[tuple[str, dict[Any, Any], str]] = [
    ("bert", {"0": [{"method": "parallel_adapter", "size": 4}], "1": [{"method": "lora", "r": 2}]},
     "layer 0: parallel_adapter has no peft equivalent"),
    ("bert", {"0": [{"method": "serial_adapter", "size": 4}]}, "layer 0: serial_adapter has no peft equivalent"),
    ("bert", {"0": [{"method": "lora", "r": 2}], "1": [{"method": "ia3"}]}, "mixes IA3 and LoRA"),
    ("bert", {"0": [{"method": "lora", "r": 2}], "1": [{"method": "dora", "r": 2}]}, "mixes DoRA and LoRA"),
    ("gpt2", {"all": [{"method": "lora", "r": 2, "roles": ["query", "value"]}]}, "part of the fused projection"),
    ("gpt2", {"0": [{"method": "lora", "r": 2, "roles": ["query"]}, {"method": "lora", "r": 4, "roles": ["key"]}]},
     "part of the fused projection"),
    ("gpt2", {"all": [{"method": "ia3", "roles": ["key", "value"]}]}, "part of the fused projection"),
    ("bert", {"0": [{"method": "lora", "r": 2, "dropout": 0.1}], "1": [{"method": "lora", "r": 2}]},
     "peft has one lora_dropout"),
    ("bert", {"0-1": [{"method": "prefix", "length": 3}]}, "prefix in only some layers"),
    ("bert", {"0": [{"method": "prefix", "length": 3}], "1-2": [{"method": "prefix", "length": 4}]},
     "prefix lengths differ"),
    ("bert", {"all": [{"method": "prefix", "length": 3, "reparam": True}]}, "reparametrised prefix"),
]


@pytest.mark.parametrize("case", UNSUPPORTED, ids=[c[2][:30] for c in UNSUPPORTED])
def test_unsupported_plans_give_reasons_and_write_nothing(case: tuple[str, dict[Any, Any], str],
                                                         tmp_path: Path) -> None:
    kind, plan_raw, reason = case
    model, _, plan = build(kind, plan_raw)
    export = to_peft_config(plan, kind)
    assert not export.expressible and export.config is None
    assert any(reason in r for r in export.unsupported), export.unsupported
    assert save_peft_adapter(model, plan, tmp_path / "out") == to_peft_config(plan, model)
    assert not (tmp_path / "out").exists()


def test_config_from_model_type_alone_uses_layer_relative_paths() -> None:
    plan = PeftPlan.from_selectors({"1": [{"method": "lora", "r": 2, "roles": QV}]}, 3)
    export = to_peft_config(plan, "llama")
    assert export.config is not None
    assert sorted(export.config["target_modules"]) == ["layers.1.self_attn.q_proj", "layers.1.self_attn.v_proj"]
    assert peft.LoraConfig(**{k: v for k, v in export.config.items() if k != "peft_type"}).r == 2


def test_layer_count_mismatch_and_unknown_model_type_raise() -> None:
    from autopeft.errors import ConfigError, UnsupportedArchitectureError

    plan = PeftPlan.from_selectors({"1": [{"method": "lora", "r": 2}]}, 4)
    with pytest.raises(ConfigError, match="made for 4 layers"):
        to_peft_config(plan, TINY_MODELS["bert"]())
    with pytest.raises(UnsupportedArchitectureError, match="no built-in role map"):
        to_peft_config(plan, "t5")


def test_the_packaged_model_is_named_by_its_hub_id_and_a_users_model_as_given(tmp_path: Path) -> None:
    """`base_model_name_or_path` must mean something on another machine: not a path inside this venv."""
    from autopeft.export.bundle import Bundle
    from autopeft.export.peft_format import PACKAGED_HUB_IDS, portable_base_model
    from autopeft.export.study_export import peft_config_for
    from autopeft.train.model import PACKAGED_MODELS
    from autopeft.yamlio import read_yaml

    assert set(PACKAGED_HUB_IDS) == set(PACKAGED_MODELS)
    assert portable_base_model("minilm-l6") == "sentence-transformers/all-MiniLM-L6-v2"
    assert portable_base_model("bert-base-uncased") == "bert-base-uncased"
    (tmp_path / "mine").mkdir()
    assert portable_base_model("mine", tmp_path) == str(tmp_path / "mine")
    demo = Path(__file__).resolve().parents[2] / "trials"
    bundle = Bundle.build(read_yaml(demo / "demo.yaml"), demo, {"plan": {"0-1": [{"method": "lora", "r": 2}]}})
    export = peft_config_for(bundle.recipe, bundle.config)
    assert export is not None and export.config is not None
    assert export.config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert export.config["modules_to_save"] == ["classifier"]


def test_saving_weights_writes_each_head_once_and_the_base_given(tmp_path: Path) -> None:
    ours, _, plan = build("bert", {"1": [{"method": "lora", "r": 2, "roles": QV}]})
    save_peft_adapter(ours, plan, tmp_path / "a", base_model="org/model")
    written = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert written["modules_to_save"] == ["classifier"] and written["base_model_name_or_path"] == "org/model"
