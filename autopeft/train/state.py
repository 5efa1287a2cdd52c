"""Saving and restoring a trial's training state, so a scheduler can continue it instead of restarting."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autopeft.errors import ConfigError
from autopeft.train.storage import STATE_FILE  # defined there, beside the code that copies it, without torch


def config_fingerprint(payload: dict[str, Any]) -> str:
    """Stable hash of a configuration, stored beside the state so it is never resumed under another one."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class TrainState:
    step: int
    adapter: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: torch.Tensor
    losses: list[float]
    fingerprint: str


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the trained tensors (adapters and head): the frozen base is reloaded from its checkpoint."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_state(trial_dir: Path, state: TrainState) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written state behind."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    tmp = trial_dir / f".{STATE_FILE}.tmp"
    torch.save(state.__dict__, tmp)
    os.replace(tmp, trial_dir / STATE_FILE)


def load_state(trial_dir: Path | None) -> TrainState | None:
    if trial_dir is None or not (trial_dir / STATE_FILE).is_file():
        return None
    raw = torch.load(trial_dir / STATE_FILE, map_location="cpu", weights_only=True)
    return TrainState(**raw)


def restore_trainable(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [name for name in tensors if name not in params]
    if missing:
        raise ConfigError(f"saved state does not fit the model (e.g. {missing[0]!r})", field="trial_dir")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)
