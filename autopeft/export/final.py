"""`autopeft train`: an exported configuration trained for real, scored on the held-back dev split.

The search scored trials on a validation slice of the training data; the dev split was never looked at,
so its score here is the honest estimate to report. Runs the same `TrialJob` as the search, at full
fidelity by default. The adapter goes out in `peft` format where `peft` can express the plan, else in
our own (the trained tensors under autopeft's parameter names, next to `autopeft.yaml`'s plan).

It lives in `export`, the layer above `train`: it runs the trial job (`train`) and writes the adapter
through the exporter (`peft_format`, `unwrap`, `staging`), so placed in `train` it made the two import
each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopeft.errors import TrialFailedError
from autopeft.export.bundle import BUNDLE_FILE, Bundle, write_bundle
from autopeft.export.staging import staged_dir
from autopeft.train.job import TrialJob
from autopeft.train.result import TrialResult, TrialStatus

METRICS_FILE = "metrics.json"
PEFT_DIR = "peft"
OWN_ADAPTER_FILE = "autopeft_adapter.safetensors"
TRAINED_DIR = "trained"


@dataclass(frozen=True)
class FinalRun:
    """What `train_bundle` wrote: the metrics (as in metrics.json) and where the adapter went."""

    out_dir: Path
    result: TrialResult
    metrics: dict[str, Any]
    adapter_format: str  # "peft" or "autopeft"
    unsupported: list[str] = field(default_factory=list)  # why not peft, when "autopeft"
    notes: list[str] = field(default_factory=list)

    @property
    def adapter_path(self) -> Path:
        return self.out_dir / (PEFT_DIR if self.adapter_format == "peft" else OWN_ADAPTER_FILE)


def default_out_dir(bundle_path: Path) -> Path:
    return bundle_path.parent / TRAINED_DIR


def train_bundle(bundle: Bundle, out_dir: str | Path, *, fidelity: int | None = None,
                 progress: Any = None) -> FinalRun:
    """Train `bundle` to `fidelity` (default: the recipe's max), score validation and dev, write `out_dir`.

    Raises `TrialFailedError` when training cannot finish (nothing is written then).
    """
    from autopeft.export.peft_format import portable_base_model, save_peft_adapter
    from autopeft.export.unwrap import plain_layers
    from autopeft.peft.roles import role_map_from_dict

    out = Path(out_dir)
    source = str(bundle.path) if bundle.path else None
    job = TrialJob(bundle.recipe, bundle.config, config_source=source)
    result = job.run(fidelity, evaluate_dev=True, progress=progress)
    if result.status is not TrialStatus.COMPLETE:
        raise TrialFailedError(f"training failed at step {result.steps}: {result.error or result.status.value}")
    session = job.session
    model_spec = bundle.recipe.model
    arch = role_map_from_dict(model_spec.role_map) if model_spec.role_map else None
    owned = (METRICS_FILE, PEFT_DIR, OWN_ADAPTER_FILE, BUNDLE_FILE)
    with staged_dir(out, owned=owned, marker=METRICS_FILE) as tmp, \
            plain_layers(session.model, arch) as model:
        export = save_peft_adapter(model, session.plan, tmp / PEFT_DIR, arch=arch,
                                   base_model=portable_base_model(model_spec.name, bundle.recipe.base_dir))
        if export.expressible:
            adapter_format = "peft"
        else:
            _save_own_adapter(model, tmp / OWN_ADAPTER_FILE)
            adapter_format = "autopeft"
        metrics = _metrics(bundle, result, session.task.metric, adapter_format, export.unsupported, export.notes)
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        write_bundle(bundle, tmp)  # what it was trained from: `autopeft evaluate` reads it, wherever --out put it
    return FinalRun(out, result, metrics, adapter_format, list(export.unsupported), list(export.notes))


def _save_own_adapter(model: Any, path: Path) -> None:
    """Trainable tensors by autopeft's names: `apply_plan` the same plan, then `restore_trainable` them."""
    from safetensors.torch import save_file

    from autopeft.train.state import trainable_state

    save_file({k: v.contiguous() for k, v in trainable_state(model).items()}, str(path), metadata={"format": "pt"})


def dev_score(metric: str, dev_metrics: dict[str, float] | None) -> float | None:
    """The primary value on dev (the job reports dev companions without `primary`)."""
    if not dev_metrics:
        return None
    if metric == "pearson_spearman":
        return (dev_metrics["pearson"] + dev_metrics["spearman"]) / 2
    return dev_metrics.get(metric)


def _metrics(bundle: Bundle, result: TrialResult, metric: str, adapter_format: str, unsupported: list[str],
             notes: list[str]) -> dict[str, Any]:
    adapter: dict[str, Any] = {"format": adapter_format,
                               "path": PEFT_DIR if adapter_format == "peft" else OWN_ADAPTER_FILE}
    if unsupported:
        adapter["not_peft_because"] = list(unsupported)
    if notes:
        adapter["notes"] = list(notes)
    data: dict[str, Any] = {
        "metric": metric,
        "dev_score": dev_score(metric, result.dev_metrics),
        "dev_metrics": result.dev_metrics,
        "validation_score": result.score,
        "validation_metrics": result.metrics,
        "trainable_params": result.trainable_params,
        "trainable_share": result.trainable_share,
        "train_seconds": result.train_seconds,
        "examples_per_second": result.examples_per_second,
        "peak_memory_mb": result.peak_memory_mb,
        "threads": result.threads,
        "device": result.device,
        "train_loss": result.train_loss,
        "fidelity": result.fidelity,
        "fidelity_unit": result.fidelity_unit,
        "steps": result.steps,
        "adapter": adapter,
    }
    if bundle.provenance is not None:
        data["search"] = bundle.provenance.model_dump(mode="json", exclude_none=True)
    return data
