"""`examples/train_with_peft.py` trains an exported configuration with `peft` alone, on the tiny saved BERT.

The export is built as `autopeft export` builds it (`Bundle` + `peft_config_for`), without a study.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from autopeft.export.bundle import Bundle, read_bundle, write_bundle
from autopeft.export.study_export import peft_config_for
from tests.conftest import TINY_PLAN, tiny_recipe_dict

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "train_with_peft.py"
STEPS = 3


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_with_peft", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _export(folder: Path, model_dir: Path, plan: dict[Any, Any]) -> Path:
    """`autopeft.yaml`, plus `peft/adapter_config.json` when `peft` can express the plan."""
    folder.mkdir()
    recipe = tiny_recipe_dict(model_dir, fmax=6, warmup_ratio=0.2)
    bundle = Bundle.build(recipe, folder, {"plan": plan, "learning_rate": 5e-3})
    write_bundle(bundle, folder)
    export = peft_config_for(bundle.recipe, bundle.config)
    assert export is not None
    if export.config is not None:
        from peft import get_peft_config

        get_peft_config(dict(export.config)).save_pretrained(str(folder / "peft"))
    return folder


@pytest.mark.parametrize("trainer", [True, False], ids=["trainer", "plain-loop"])
def test_trains_the_export_with_peft(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                     trainer: bool) -> None:
    from peft import PeftConfig, PeftModel, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    script = _script()
    monkeypatch.setattr(script, "trainer_available", lambda: trainer)
    export, out = _export(tmp_path / "exp", tiny_model_dir, TINY_PLAN), tmp_path / "out"
    assert script.main([str(export), "--max-steps", str(STEPS), "--out", str(out)]) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and metrics["dev_split"] == "dev" and metrics["steps"] == STEPS
    assert 0.0 <= metrics["dev_score"] <= 1.0 and metrics["train_seconds"] > 0
    fresh = get_peft_model(AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2),
                           PeftConfig.from_pretrained(str(export / "peft")))
    assert metrics["trainable_params"] == fresh.get_nb_trainable_parameters()[0]
    assert metrics["trainable_params"] == 2 * 2 * (4 * 32 + 32 * 4) + (32 * 2 + 2)  # LoRA q,v in 2 layers + head
    assert metrics["task"] == "demo"
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(tiny_model_dir)  # as exported, the user's folder
    assert len(saved["modules_to_save"]) == len(set(saved["modules_to_save"]))

    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    loaded = PeftModel.from_pretrained(base, str(out))
    lora_b = [p for n, p in loaded.named_parameters() if "lora_B" in n]
    assert len(lora_b) == 4 and all(p.abs().sum() > 0 for p in lora_b)  # trained: lora_B starts at zero
    if trainer:  # the reloaded adapter scores what the script measured
        from autopeft.train.tasks import encode, load_task

        tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
        rows = script.features(encode(load_task(read_bundle(export / "autopeft.yaml").recipe.task).dev, tokenizer, 32))
        assert script.evaluate(loaded, tokenizer, rows, "accuracy", 64) == pytest.approx(metrics["dev_score"])


def test_a_plan_peft_cannot_express_exits_2(tmp_path: Path, tiny_model_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    export = _export(tmp_path / "exp", tiny_model_dir, {"2": [{"method": "serial_adapter", "size": 8}]})
    assert not (export / "peft").exists()
    assert _script().main([str(export), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "peft cannot express this plan" in err
    assert not (tmp_path / "out").exists()


def test_a_files_task_is_named_by_its_recipe_not_its_train_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    from autopeft.train.recipe import TrialRecipe

    recipe = TrialRecipe.model_validate({**tiny_recipe_dict(tiny_model_dir), "name": "reviews", "task": {
        "name": "files", "train": "train.tsv", "text_columns": ["text"], "label_column": "label"}})
    assert _script().task_title(recipe, "train") == "reviews"
    assert _script().task_title(TrialRecipe.model_validate(tiny_recipe_dict(tiny_model_dir)), "demo") == "demo"
