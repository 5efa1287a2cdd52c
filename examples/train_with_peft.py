"""Train an exported autopeft configuration with Hugging Face `peft` alone, no autopeft training code.

`autopeft export STUDY --out DIR` writes `DIR/autopeft.yaml` and, when `peft` can express the plan,
`DIR/peft/adapter_config.json`. This script shows that the configuration stands on its own: it reads the
model, task and training settings from `autopeft.yaml`, builds the adapter from `DIR/peft` with
`peft.get_peft_model` (from scratch: trained weights there are not read), trains it with the `Trainer`
(or a plain PyTorch loop when `accelerate` is missing), scores the dev split and saves the adapter.
autopeft is used only to read and tokenise the task's data.

    python examples/train_with_peft.py DIR [--max-steps N] [--out OUT]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from peft import PeftConfig, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, set_seed

from autopeft.export.bundle import read_bundle
from autopeft.train.metrics import compute_metric
from autopeft.train.model import resolve_model_path
from autopeft.train.recipe import TrainingSpec, TrialRecipe
from autopeft.train.tasks import EncodedSplit, encode, load_task

#: autopeft's `constant` schedule keeps its warmup; transformers' `constant` has none.
HF_SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def task_title(recipe: TrialRecipe, task_name: str) -> str:
    """The task's name for messages: the recipe's name for the user's own files (the loader only knows the
    file's name there, often `train`), else the task's (`sst2`, `demo`, a Hugging Face dataset)."""
    return recipe.name if recipe.task.name == "files" else task_name


def portable(model: Any, exported: PeftConfig) -> None:
    """Save with the exported config's base model (a Hub id or the user's folder, not the path the weights
    were read from here) and each head once (peft appends its own head names on top of the listed ones)."""
    config = model.peft_config["default"]
    config.base_model_name_or_path = exported.base_model_name_or_path or config.base_model_name_or_path
    if config.modules_to_save is not None:
        config.modules_to_save = list(dict.fromkeys(config.modules_to_save))


def trainer_available() -> bool:
    """The `Trainer` needs `accelerate`; without it, a plain PyTorch loop does the same training."""
    return importlib.util.find_spec("accelerate") is not None


def features(split: EncodedSplit) -> list[dict[str, Any]]:
    """One dict per example, as `DataCollatorWithPadding` (and the `Trainer`) take them."""
    rows: list[dict[str, Any]] = [{"input_ids": ids, "labels": y}
                                  for ids, y in zip(split.input_ids, split.labels, strict=True)]
    if split.token_type_ids is not None:  # BERT-style segment ids
        for row, types in zip(rows, split.token_type_ids, strict=True):
            row["token_type_ids"] = types
    return rows


def train_with_trainer(model: Any, tokenizer: Any, rows: list[dict[str, Any]], settings: TrainingSpec,
                       steps: int) -> None:
    from transformers import Trainer, TrainingArguments

    scratch = tempfile.TemporaryDirectory()  # nothing is saved there (save_strategy="no")
    args = TrainingArguments(
        output_dir=scratch.name, max_steps=steps, per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, lr_scheduler_type=HF_SCHEDULES[settings.lr_schedule],
        warmup_steps=math.ceil(settings.warmup_ratio * steps), weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm or 0.0, seed=settings.seed, use_cpu=settings.device == "cpu",
        train_sampling_strategy="group_by_length",  # transformers < 5: group_by_length=True
        save_strategy="no", report_to="none", disable_tqdm=True, remove_unused_columns=False, label_names=["labels"],
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    with scratch:
        Trainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer,
                data_collator=DataCollatorWithPadding(tokenizer)).train()


def train_plain(model: Any, tokenizer: Any, rows: list[dict[str, Any]], settings: TrainingSpec, steps: int,
                device: torch.device) -> None:
    from transformers import get_scheduler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    scheduler = get_scheduler(HF_SCHEDULES[settings.lr_schedule], optimizer, num_warmup_steps=math.ceil(
        settings.warmup_ratio * steps), num_training_steps=steps)
    sampler = LengthGroupedSampler(settings.batch_size, lengths=[len(r["input_ids"]) for r in rows],
                                   generator=torch.Generator().manual_seed(settings.seed))
    loader: DataLoader[Any] = DataLoader(rows, batch_size=settings.batch_size, sampler=sampler,  # type: ignore[arg-type]
                                         collate_fn=DataCollatorWithPadding(tokenizer))
    model.train()
    step = 0
    while step < steps:  # epoch after epoch until `steps` optimizer steps
        for batch in loader:
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            loss.backward()
            if settings.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            if step == steps:
                break


@torch.no_grad()
def evaluate(model: Any, tokenizer: Any, rows: list[dict[str, Any]], metric: str, batch_size: int) -> float:
    model.eval()
    device = next(model.parameters()).device
    predictions, labels = [], []
    for batch in DataLoader(rows, batch_size=batch_size, collate_fn=DataCollatorWithPadding(tokenizer)):  # type: ignore[arg-type]
        logits = model(**{k: v.to(device) for k, v in batch.items() if k != "labels"}).logits
        predictions += (logits[:, 0] if logits.shape[-1] == 1 else logits.argmax(-1)).tolist()
        labels += batch["labels"].tolist()
    return compute_metric(metric, predictions, labels)["primary"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, help="the folder `autopeft export --out` wrote")
    parser.add_argument("--max-steps", type=int, help="train this many steps (default: the recipe's full fidelity)")
    parser.add_argument("--out", type=Path, help="adapter and metrics.json go here (default: DIR/peft-trained)")
    args = parser.parse_args(argv)
    if not (args.export_dir / "autopeft.yaml").is_file():
        parser.error(f"{args.export_dir}/autopeft.yaml not found: pass the folder `autopeft export --out` wrote")
    if not (args.export_dir / "peft" / "adapter_config.json").is_file():
        print(f"{args.export_dir}: no peft/ folder: peft cannot express this plan (autopeft export said why)",
              file=sys.stderr)
        return 2
    bundle = read_bundle(args.export_dir / "autopeft.yaml")
    recipe, settings = bundle.recipe, bundle.recipe.training_for(bundle.config)  # the configuration's lr settings win
    steps = args.max_steps or recipe.fidelity.to_steps(recipe.fidelity.max, settings.batch_size)
    out: Path = args.out or args.export_dir / "peft-trained"

    model_path = resolve_model_path(recipe.model.name, recipe.base_dir)  # `minilm-l6` is a packaged model
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:  # GPT-2 and Llama tokenizers have none
        tokenizer.pad_token = tokenizer.eos_token
    task = load_task(recipe.task, recipe.base_dir)
    train_rows = features(encode(task.train, tokenizer, recipe.task.max_length))
    dev_rows = features(encode(task.dev or task.validation, tokenizer, recipe.task.max_length))

    set_seed(settings.seed)  # the new classifier head and the adapter's initial weights
    base = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=task.num_labels, dtype=getattr(torch, recipe.model.dtype),
        pad_token_id=tokenizer.pad_token_id)
    exported = PeftConfig.from_pretrained(str(args.export_dir / "peft"))
    config = PeftConfig.from_pretrained(str(args.export_dir / "peft"))
    config.base_model_name_or_path = None  # the weights come from model_path (no "renamed" warning); see portable
    model = get_peft_model(base, config)
    model.print_trainable_parameters()
    trainable, _ = model.get_nb_trainable_parameters()

    start = time.perf_counter()
    if trainer_available():
        train_with_trainer(model, tokenizer, train_rows, settings, steps)
    else:
        cuda = settings.device != "cpu" and torch.cuda.is_available()
        device = torch.device("cuda" if cuda else "cpu")
        train_plain(model.to(device), tokenizer, train_rows, settings, steps, device)
    seconds = time.perf_counter() - start
    score = evaluate(model, tokenizer, dev_rows, task.metric, settings.eval_batch_size)

    portable(model, exported)
    model.save_pretrained(str(out))
    title = task_title(recipe, task.name)
    metrics = {"task": title, "metric": task.metric, "dev_split": "dev" if task.dev else "validation",
               "dev_score": score, "trainable_params": trainable, "steps": steps, "train_seconds": round(seconds, 3)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    print(f"{title}: dev {task.metric} {score:.4f} after {steps} steps ({seconds:.1f}s); adapter -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
