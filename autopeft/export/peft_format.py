"""Export a `PeftPlan`, and an adapted model's weights, in Hugging Face `peft`'s adapter format.

`to_peft_config` says whether `peft` can express a plan and, when it can, returns the
`adapter_config.json` dict, built through `peft`'s own config classes. Per-layer sizes become `peft`'s
`rank_pattern` / `alpha_pattern`: the most common rank and alpha are the defaults, the rest overrides
keyed by the exact (escaped) module path. `save_peft_adapter` writes that config and
`adapter_model.safetensors` with `peft`'s key names, read from a `peft` model built on a `meta` copy of
the base, so the file is whatever `PeftModel.from_pretrained` expects.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from packaging.version import Version
from torch import nn

from autopeft.errors import ConfigError, UnsupportedArchitectureError
from autopeft.peft.adapted import AdaptedLinear
from autopeft.peft.expressible import peft_equivalent, peft_reasons, plan_family, plan_targets, prefix_specs
from autopeft.peft.ia3.layer import IA3Vector
from autopeft.peft.ia3.model import INPUT_SCALED_ROLES
from autopeft.peft.inject import HEAD_NAMES, model_layers
from autopeft.peft.lora.config import LoraSpec
from autopeft.peft.lora.layer import DoraDelta, LoraDelta
from autopeft.peft.plan import PeftPlan
from autopeft.peft.prefix.layer import PrefixKV
from autopeft.peft.roles import ARCHITECTURES, ArchitectureMap, architecture_for

#: Model types whose projections are transformers' `Conv1D` (weight stored (in, out)): `fan_in_fan_out`.
CONV1D_MODEL_TYPES = frozenset({"gpt2"})
#: Packaged models (`autopeft.train.model.PACKAGED_MODELS`) -> the Hugging Face id of the same weights, which
#: an exported `base_model_name_or_path` names instead of a path inside this virtual environment.
PACKAGED_HUB_IDS = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}
_PEFT_PREFIX = "base_model.model."  # keys of tuners that wrap the model (LoRA, IA3)
_PEFT_PROMPT_PREFIX = "base_model."  # keys of prompt-learning methods, which hold the model directly


@dataclass(frozen=True)
class PeftExport:
    """What `peft` can make of a plan: its `adapter_config.json` dict, or the reasons it cannot.

    `notes` are caveats of an expressible export (e.g. where `peft` computes the same thing but trains
    it differently).
    """

    config: dict[str, Any] | None
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def expressible(self) -> bool:
        return self.config is not None


@dataclass(frozen=True)
class _Where:
    model_type: str
    arch: ArchitectureMap
    layers_path: str  # dotted path of the layer list, from the model's root when the model is known
    heads: tuple[str, ...]
    num_layers: int | None = None  # known when the model is


def _where(model: nn.Module | str, arch: ArchitectureMap | None) -> _Where:
    if isinstance(model, str):
        if arch is None and model not in ARCHITECTURES:
            raise UnsupportedArchitectureError(
                f"model_type {model!r} has no built-in role map; supported: {', '.join(sorted(ARCHITECTURES))}"
            )
        resolved = arch or ARCHITECTURES[model]
        # Without the model, paths start at the layer list; peft matches them as dotted suffixes.
        return _Where(model, resolved, resolved.layers, HEAD_NAMES)
    resolved = architecture_for(model, arch)
    layers = model_layers(model, resolved)
    root = next((name for name, m in model.named_modules() if m is layers), resolved.layers)
    heads = tuple(h for h in HEAD_NAMES if isinstance(getattr(model, h, None), nn.Module)) or HEAD_NAMES
    model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
    return _Where(model_type, resolved, root, heads, len(layers))


def portable_base_model(name: str, base_dir: Path | None = None) -> str:
    """What an exported adapter names as its base: the Hub id of a packaged model's weights, else the
    user's own id or local folder (a relative folder resolved against the recipe's, as training does)."""
    from autopeft.train.model import resolve_model_path

    return PACKAGED_HUB_IDS.get(name) or resolve_model_path(name, base_dir)


def to_peft_config(plan: PeftPlan, model: nn.Module | str, *, arch: ArchitectureMap | None = None,
                   base_model: str | None = None) -> PeftExport:
    """The `peft` adapter config for `plan` on `model` (a model, or a `model_type` with an optional role map).

    `base_model` goes to `base_model_name_or_path` (what `AutoPeftModel` loads; see `portable_base_model`).

    Expressible: what `autopeft.peft.expressible.peft_reasons` allows (all LoRA or all DoRA with per-module
    ranks and alphas, all IA3, one prefix length everywhere), with a `peft` that can run it.
    Raises `ConfigError` when the plan was made for another layer count than `model` has, and
    `UnsupportedArchitectureError` for a `model_type` without a role map.
    """
    where = _where(model, arch)
    if where.num_layers is not None and where.num_layers != plan.num_layers:
        raise ConfigError(f"plan was made for {plan.num_layers} layers but the model has {where.num_layers}",
                          field="plan")
    family, reasons = plan_family(plan)
    if family is None:
        return PeftExport(None, reasons)
    equivalent = peft_equivalent(family)
    reasons = peft_reasons(plan, where.arch, layers_path=where.layers_path)
    if equivalent.peft_type == "PREFIX_TUNING" and (broken := peft_prefix_unsupported()):
        reasons.append(broken)
    if reasons:
        return PeftExport(None, reasons)
    export = _CONFIG_WRITERS[equivalent.peft_type](plan, where, **equivalent.options)
    if export.config is not None and base_model is not None:
        export.config["base_model_name_or_path"] = base_model
    return export


def _common(values: list[Any]) -> Any:
    return Counter(values).most_common(1)[0][0]


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _lora_config(plan: PeftPlan, where: _Where, *, use_dora: bool = False) -> PeftExport:
    from peft import LoraConfig

    targets, _ = plan_targets(plan, where.arch, where.layers_path, "DoRA" if use_dora else "LoRA")
    notes: list[str] = []
    rslora = _common([t.spec.rslora for t in targets])
    if len({t.spec.rslora for t in targets}) > 1:
        rslora = False
        notes.append("rsLoRA is on for only some modules: exported without use_rslora, alphas rescaled to match")
    ranks: dict[str, int] = {}
    alphas: dict[str, float | int] = {}
    for t in targets:
        spec: LoraSpec = t.spec
        rank = spec.r * len(t.roles)
        ranks[t.path] = rank
        if rank == spec.r and spec.rslora == rslora:
            alphas[t.path] = _number(spec.alpha)
        else:  # same scaling as ours: peft scales by alpha / r (or / sqrt(r) with rsLoRA)
            alphas[t.path] = _number(spec.scaling * (math.sqrt(rank) if rslora else rank))
        if len(t.roles) > 1:
            notes.append(f"{t.path}: {len(t.roles)} roles of a fused projection exported as one rank-{rank} "
                         "LoRA (block-diagonal B: the same function; peft trains it as a dense rank-"
                         f"{rank} update)")
    r, alpha = _common(list(ranks.values())), _common(list(alphas.values()))
    config = LoraConfig(
        r=r, lora_alpha=alpha,
        target_modules=sorted(ranks),
        rank_pattern={re.escape(p): v for p, v in sorted(ranks.items()) if v != r},
        alpha_pattern={re.escape(p): v for p, v in sorted(alphas.items()) if v != alpha},
        lora_dropout=targets[0].spec.dropout, use_rslora=rslora, use_dora=use_dora,
        fan_in_fan_out=where.model_type in CONV1D_MODEL_TYPES,
        task_type="SEQ_CLS", modules_to_save=list(where.heads),
    )
    return PeftExport(_jsonable(config.to_dict()), [], notes)


def _ia3_config(plan: PeftPlan, where: _Where) -> PeftExport:
    from peft import IA3Config

    targets, _ = plan_targets(plan, where.arch, where.layers_path, "IA3")
    feedforward = sorted(t.path for t in targets if set(t.roles) & INPUT_SCALED_ROLES)
    config = IA3Config(
        target_modules=sorted(t.path for t in targets), feedforward_modules=feedforward,
        fan_in_fan_out=where.model_type in CONV1D_MODEL_TYPES, task_type="SEQ_CLS",
        modules_to_save=list(where.heads),
    )
    return PeftExport(_jsonable(config.to_dict()), [])


def _prefix_config(plan: PeftPlan, where: _Where) -> PeftExport:
    from peft import PrefixTuningConfig

    length = next(iter(prefix_specs(plan).values())).length  # one length in every layer (peft_reasons)
    config = PrefixTuningConfig(num_virtual_tokens=length, task_type="SEQ_CLS", modules_to_save=list(where.heads))
    note = (f"peft passes the prefix as a cache, so the real tokens sit at positions {length}.. in peft and "
            "at 0.. in autopeft: with absolute position embeddings the outputs differ")
    return PeftExport(_jsonable(config.to_dict()), [], [note])


#: transformers 5.24.0 renamed the models' `past_key_values` forward argument to `cache` (the old name is
#: still accepted, deprecated, until 5.40). peft's prefix-tuning forward (`_prefix_tuning_forward`, up to
#: 0.21.2 at least) looks for a parameter literally named `past_key_values` in the signature of the model's
#: and then its backbone's forward, finds neither, and raises "Model does not support past key values which
#: are required for prefix tuning" on the first forward pass. Loading the adapter works; running it does not.
CACHE_RENAMED_IN_TRANSFORMERS = Version("5.24.0")
#: The newest peft known to have that check: the latest release when the rename came out. A newer peft is
#: assumed fixed until scripts/check_latest.sh shows otherwise (then raise this).
LAST_PEFT_WITH_OLD_CACHE_NAME = Version("0.21.2")


def peft_prefix_unsupported(transformers_version: str | None = None, peft_version: str | None = None) -> str | None:
    """Why `peft` cannot run a prefix-tuning adapter with these versions (default: the installed ones),
    or None when it can. A version check, not a probe: the breakage is in peft's argument lookup, the same
    for every model (BERT, GPT-2, Llama alike)."""
    transformers_v = transformers_version or version("transformers")
    peft_v = peft_version or version("peft")
    # base_version: a 5.24 pre-release already has the rename; a locally built 0.21.2+x is still 0.21.2.
    if (Version(Version(transformers_v).base_version) >= CACHE_RENAMED_IN_TRANSFORMERS
            and Version(Version(peft_v).base_version) <= LAST_PEFT_WITH_OLD_CACHE_NAME):
        return (f"peft {peft_v} cannot run prefix tuning on transformers {transformers_v}: it looks for the "
                "argument `past_key_values`, renamed `cache` in transformers 5.24 (use transformers<5.24, "
                "as constraints.txt pins, or a newer peft)")
    return None


#: `peft`'s tuner (`PeftEquivalent.peft_type`) -> the function that writes its config, with the method's options.
_CONFIG_WRITERS: dict[str, Callable[..., PeftExport]] = {
    "LORA": _lora_config, "IA3": _ia3_config, "PREFIX_TUNING": _prefix_config,
}


def _jsonable(config: dict[str, Any]) -> dict[str, Any]:
    """`peft`'s `to_dict` as `save_pretrained` writes it: sets as sorted lists, enums as their values."""
    def default(value: Any) -> Any:
        if isinstance(value, set | frozenset):
            return sorted(value)
        raise TypeError(f"not JSON serialisable: {type(value).__name__}")

    result: dict[str, Any] = json.loads(json.dumps(config, default=default))
    return result


# --- weights ---------------------------------------------------------------------------------------


def save_peft_adapter(
    model: nn.Module, plan: PeftPlan, out_dir: str | Path, *, arch: ArchitectureMap | None = None,
    base_model: str | None = None,
) -> PeftExport:
    """Write `adapter_config.json` and `adapter_model.safetensors` for `model` (adapted by `plan`).

    `base_model` is written as `base_model_name_or_path` (default: the model's own path). Writes nothing
    when `peft` cannot express the plan; the returned export says why.
    """
    from peft import get_peft_config
    from safetensors.torch import save_file

    export = to_peft_config(plan, model, arch=arch, base_model=base_model)
    if export.config is None:
        return export
    # get_peft_model (for the key names) rewrites its config in place: the base path, the heads added again
    tensors = _adapter_tensors(model, get_peft_config(copy.deepcopy(export.config)))
    peft_config = get_peft_config(copy.deepcopy(export.config))
    if peft_config.base_model_name_or_path is None:
        peft_config.base_model_name_or_path = getattr(model, "name_or_path", None) or None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(out / "adapter_model.safetensors"),
              metadata={"format": "pt"})
    peft_config.save_pretrained(str(out))
    return export


def _adapter_tensors(model: nn.Module, peft_config: Any) -> dict[str, torch.Tensor]:
    """`peft`'s state-dict keys (from a `peft` model on a `meta` skeleton), filled from our modules."""
    from peft import get_peft_model, get_peft_model_state_dict

    with torch.device("meta"):
        skeleton = type(model)(model.config)
    peft_model = get_peft_model(skeleton, peft_config)
    prompt_encoder = getattr(peft_model, "prompt_encoder", None)
    if isinstance(prompt_encoder, nn.Module):  # peft copies the prompt table out to save it: give it storage
        prompt_encoder.to_empty(device="cpu")
    wanted = get_peft_model_state_dict(peft_model)
    tensors: dict[str, torch.Tensor] = {}
    for key, like in wanted.items():
        name = key.removeprefix(_PEFT_PREFIX).removeprefix(_PEFT_PROMPT_PREFIX)
        value = _prefix_table(model) if name == "prompt_embeddings" else _value_for(model, name)
        if value.numel() != like.numel():
            raise UnsupportedArchitectureError(f"{key}: peft expects shape {tuple(like.shape)}, "
                                               f"autopeft has {tuple(value.shape)}")
        tensors[key] = value.reshape(like.shape)
    return tensors


def _value_for(model: nn.Module, name: str) -> torch.Tensor:
    """The tensor of ours behind one `peft` key (module path + `lora_A.weight`, `ia3_l`, ...)."""
    for suffix in (".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector", ".ia3_l"):
        if name.endswith(suffix):
            linear = model.get_submodule(name.removesuffix(suffix))
            if not isinstance(linear, AdaptedLinear):
                raise UnsupportedArchitectureError(f"{name}: the module is not adapted by autopeft")
            return _piece_value(linear, suffix)
    return model.get_parameter(name)  # modules_to_save: the classifier head, trained in place


def _piece_value(linear: AdaptedLinear, suffix: str) -> torch.Tensor:
    if suffix == ".ia3_l":
        inputs = [v for v in linear.input_transforms if isinstance(v, IA3Vector)]
        vectors = inputs or sorted((v for v in linear.output_transforms if isinstance(v, IA3Vector)),
                                   key=lambda v: v.span.start)
        return torch.cat([v.vector for v in vectors])
    deltas = sorted((d for d in linear.deltas if isinstance(d, LoraDelta)), key=lambda d: d.out_slice.start)
    if suffix == ".lora_A.weight":
        return torch.cat([d.lora_A for d in deltas])
    if suffix == ".lora_magnitude_vector":
        return torch.cat([d.magnitude for d in deltas if isinstance(d, DoraDelta)])
    # Block-diagonal B for a fused projection: its deltas come from one spec, so they share peft's scaling.
    b = deltas[0].lora_B.new_zeros(sum(d.lora_B.shape[0] for d in deltas), sum(d.r for d in deltas))
    row = col = 0
    for d in deltas:
        b[row:row + d.lora_B.shape[0], col:col + d.r] = d.lora_B
        row, col = row + d.lora_B.shape[0], col + d.r
    return b


def _prefix_table(model: nn.Module) -> torch.Tensor:
    """`peft`'s prompt table `(length, layers * 2 * kv_heads * head_dim)`: per token, per layer [keys, values]."""
    prefixes = [m for m in model.modules() if isinstance(m, PrefixKV)]
    parts: list[torch.Tensor] = []
    for prefix in prefixes:
        key, value = prefix()
        parts += [key, value]
    stacked = torch.stack(parts)  # (2 * layers, kv_heads, length, head_dim)
    return stacked.permute(2, 0, 1, 3).reshape(stacked.shape[2], -1)
