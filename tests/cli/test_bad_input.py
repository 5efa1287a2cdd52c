"""Bad input to every command, table-driven: each case runs the real CLI in a fresh folder holding good
inputs (a tiny recipe, space, configuration, data files, an exported bundle and a store with one finished
study), breaks one of them or passes one bad option, and asserts the one-line error rule: exit code 2,
one `error:` line on stderr naming the file and/or field, no traceback, and nothing written (no new file
or folder, no new study or trial in the store)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autopeft.cli import app
from autopeft.engine.loop import Budget
from autopeft.engine.study import new_study, run_study
from autopeft.engine.task import TrialOutcome, TrialTask
from autopeft.engine.worker import run_trial
from autopeft.store import Store
from tests.cli import one_line_error
from tests.cli.test_study import TINY_SPACE
from tests.conftest import TINY_PLAN, tiny_recipe_dict

runner = CliRunner()

GOOD_CSV = "sentence,label\n" + "".join(f"{'good fine' if i % 2 else 'bad awful'} text {i},{i % 2}\n"
                                        for i in range(20))
NON_UTF8 = b"sentence,label\nvery good,1\ncaf\xe9 bad,0\n"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Case:
    """A command line (`{name}` is a path in the case's folder) and the words its error line must hold."""

    args: tuple[str, ...]
    expect: tuple[str, ...]
    files: dict[str, Any] = field(default_factory=dict)  # file -> YAML data, text or bytes, written first


def _recipe(model_dir: Path, **task: Any) -> dict[str, Any]:
    recipe = tiny_recipe_dict(model_dir, fmin=2, fmax=4, threads=1)
    if task:
        recipe["task"] = {"name": "files", "train": "train.csv", "text_columns": ["sentence"],
                          "label_column": "label", "max_length": 16, **task}
    return recipe


def _space(**changes: Any) -> dict[str, Any]:
    return {**TINY_SPACE, **changes}


def _layers(**params: Any) -> dict[str, Any]:
    return {"method": {"choices": ["none", "lora"]}, **params}


LORA_PLAN = [{"method": "lora", "r": "$rank", "roles": ["query", "value"], "when": {"method": ["lora"]}}]
#: The space of the store's finished study `done` (and of `idle`, which has no trial).
DONE_SPACE = {**TINY_SPACE, "layers": {"method": {"choices": ["lora"]}, "rank": {"choices": [2]}},
              "plan": [{"method": "lora", "r": "$rank", "roles": ["query", "value"]}]}
RUN = ("study", "run", "--space", "{space.yaml}", "--trial", "{recipe.yaml}", "--storage", "{store}",
       "--executor", "inprocess", "--budget", "1")
RUN_FILES = ("study", "run", "--space", "{space.yaml}", "--trial", "{files.yaml}", "--storage", "{store}",
             "--executor", "inprocess", "--budget", "1")
CHECK = ("space", "check", "{space.yaml}", "--trial", "{recipe.yaml}")
TRIAL = ("trial", "run", "--trial", "{recipe.yaml}", "--config", "{config.yaml}")


def _cases(model_dir: Path) -> dict[str, Case]:
    """Built once the tiny model's folder is known (recipes name it)."""
    files_recipe = _recipe(model_dir, train="train.csv")
    return {
        # -- spaces: study run and space check make the same checks ----------------------------------------
        "space rank 0": Case(RUN, ("space.yaml", "layers.rank", "0 gives lora.r", "greater than 0"),
                             {"space.yaml": _space(layers=_layers(rank={"int": [0, 4], "when": {"method": ["lora"]}}),
                                                   plan=LORA_PLAN)}),
        "space negative rank (space check)": Case(CHECK, ("space.yaml", "layers.rank", "-2 gives lora.r"),
                                                  {"space.yaml": _space(layers=_layers(rank={"choices": [-2, 4]}),
                                                                        plan=LORA_PLAN)}),
        "space unknown method": Case(RUN, ("space.yaml", "layers.method", "'loraz'", "accepted: lora"),
                                     {"space.yaml": _space(layers={"method": {"choices": ["none", "loraz"]}},
                                                           plan=[{"method": "$method", "r": 2}])}),
        "space unknown role": Case(RUN, ("space.yaml", "layers.roles", "'nose' is not a role", "accepted: query"),
                                   {"space.yaml": _space(layers={"roles": {"choices": [["query"], ["nose"]]}},
                                                         plan=[{"method": "lora", "r": 2, "roles": "$roles"}])}),
        "space fixed rank 0 (space check)": Case(CHECK, ("space.yaml", "plan.0.r", "greater than 0"),
                                                 {"space.yaml": _space(layers={}, plan=[{"method": "lora", "r": 0}])}),
        "space unknown method field": Case(RUN, ("space.yaml", "plan.0.size", "lora has no field"),
                                           {"space.yaml": _space(layers={}, plan=[{"method": "lora", "r": 2,
                                                                                   "size": 3}])}),
        "space plan entry without method": Case(RUN, ("space.yaml", "plan.0", "needs `method`"),
                                                {"space.yaml": _space(plan=[{"r": 2}])}),
        "space unknown reference": Case(RUN, ("space.yaml", "$nope is not a parameter"),
                                        {"space.yaml": _space(plan=[{"method": "lora", "r": "$nope"}])}),
        "space unknown key": Case(RUN, ("space.yaml", "layer", "unknown field; accepted"),
                                  {"space.yaml": {**TINY_SPACE, "layer": {}}}),
        "space without plan": Case(RUN, ("space.yaml", "plan", "Field required"),
                                   {"space.yaml": {k: v for k, v in TINY_SPACE.items() if k != "plan"}}),
        "space empty plan": Case(RUN, ("space.yaml", "plan"), {"space.yaml": _space(plan=[])}),
        "space layers out of range": Case(RUN, ("space.yaml", "searched_layers", "0-2"),
                                          {"space.yaml": _space(searched_layers="3-5")}),
        "space layers out of range (space check)": Case(CHECK, ("space.yaml", "searched_layers"),
                                                        {"space.yaml": _space(searched_layers=7)}),
        "space constraints nothing meets": Case(RUN, ("space.yaml", "constraints",
                                                      "no configuration satisfies the constraints"),
                                                {"space.yaml": _space(constraints=[{"max_trainable_params": 5}])}),
        "space constraint with two limits": Case(RUN, ("space.yaml", "constraints.0", "exactly one"),
                                                 {"space.yaml": _space(constraints=[{"max_trainable_params": 5,
                                                                                     "max_trainable_share": 0.1}])}),
        "space constraint share above 1": Case(RUN, ("space.yaml", "constraints.0.max_trainable_share"),
                                               {"space.yaml": _space(constraints=[{"max_trainable_share": 2}])}),
        "space log range from 0": Case(RUN, ("space.yaml", "layers.rank", "low > 0"),
                                       {"space.yaml": _space(layers=_layers(rank={"int": [0, 4], "log": True}))}),
        "space empty range": Case(RUN, ("space.yaml", "layers.rank", "is empty"),
                                  {"space.yaml": _space(layers=_layers(rank={"int": [8, 2]}))}),
        "space param of two kinds": Case(RUN, ("space.yaml", "layers.rank", "exactly one of"),
                                         {"space.yaml": _space(layers=_layers(rank={"int": [1, 2],
                                                                                    "choices": [1]}))}),
        "space when on unknown param": Case(RUN, ("space.yaml", "'kind' is not a layers parameter"),
                                            {"space.yaml": _space(layers=_layers(rank={"choices": [2],
                                                                                       "when": {"kind": ["x"]}}))}),
        "space unsearchable training key": Case(RUN, ("space.yaml", "training.batch_size cannot be searched"),
                                                {"space.yaml": _space(training={"batch_size": {"choices": [8]}})}),
        "space learning rate below 0": Case(RUN, ("space.yaml", "training.learning_rate", "greater than 0"),
                                            {"space.yaml": _space(training={"learning_rate": {"float": [-1, 1]}})}),
        "space unknown schedule": Case(RUN, ("space.yaml", "training.lr_schedule", "'wavy'"),
                                       {"space.yaml": _space(training={"lr_schedule": {"choices": ["linear",
                                                                                                   "wavy"]}})}),
        "space two low-rank updates": Case(RUN, ("space.yaml", "two low-rank updates"),
                                           {"space.yaml": _space(layers={}, plan=[{"method": "lora", "r": 2},
                                                                                  {"method": "dora", "r": 2}])}),
        "space not YAML": Case(RUN, ("space.yaml", "not valid YAML at line"), {"space.yaml": "name: [x\nplan: {"}),
        "space a list": Case(RUN, ("space.yaml", "mapping"), {"space.yaml": "- name\n- plan\n"}),
        "space empty file": Case(RUN, ("space.yaml", "name", "Field required"), {"space.yaml": ""}),
        "space not UTF-8": Case(RUN, ("space.yaml", "is not UTF-8"), {"space.yaml": b"name: caf\xe9\n"}),
        "space missing": Case(("study", "run", "--space", "{nope.yaml}", "--trial", "{recipe.yaml}"),
                              ("--space", "no such file")),
        "space a folder (space check)": Case(("space", "check", "{.}", "--trial", "{recipe.yaml}"),
                                             ("cannot read",)),
        # -- recipes ----------------------------------------------------------------------------------------
        "recipe without model": Case(RUN, ("recipe.yaml", "model", "Field required"),
                                     {"recipe.yaml": {k: v for k, v in _recipe(model_dir).items() if k != "model"}}),
        "recipe model not found": Case(RUN, ("recipe.yaml", "model.name"),
                                       {"recipe.yaml": {**_recipe(model_dir), "model": {"name": "no-such-model"}}}),
        "recipe fidelity min above max": Case(RUN, ("recipe.yaml", "fidelity", "must not exceed"),
                                              {"recipe.yaml": {**_recipe(model_dir),
                                                               "fidelity": {"min": 5, "max": 2}}}),
        "recipe fidelity 0": Case(RUN, ("recipe.yaml", "fidelity.min", "greater than 0"),
                                  {"recipe.yaml": {**_recipe(model_dir), "fidelity": {"min": 0, "max": 2}}}),
        "recipe unknown task": Case(RUN, ("recipe.yaml", "task.name"),
                                    {"recipe.yaml": {**_recipe(model_dir), "task": {"name": "imdb"}}}),
        "recipe unknown training key": Case(RUN, ("recipe.yaml", "training.lr", "unknown field; accepted"),
                                            {"recipe.yaml": {**_recipe(model_dir), "training": {"lr": 1}}}),
        "recipe batch size 0": Case(RUN, ("recipe.yaml", "training.batch_size", "greater than 0"),
                                    {"recipe.yaml": {**_recipe(model_dir), "training": {"batch_size": 0}}}),
        "recipe files task without train": Case(RUN, ("recipe.yaml", "task", "needs train"),
                                                {"recipe.yaml": {**_recipe(model_dir),
                                                                 "task": {"name": "files", "text_columns": ["a"],
                                                                          "label_column": "b"}}}),
        "recipe validation leaves nothing": Case(RUN_FILES, ("validation_size 30", "no training examples"),
                                                 {"files.yaml": _recipe(model_dir, validation_size=30)}),
        "recipe missing": Case(("study", "run", "--space", "{space.yaml}", "--trial", "{nope.yaml}"),
                               ("--trial", "no such file")),
        "recipe not YAML (space check)": Case(CHECK, ("recipe.yaml", "not valid YAML"), {"recipe.yaml": "a: b: c"}),
        "recipe a number": Case(RUN, ("recipe.yaml", "mapping"), {"recipe.yaml": "42\n"}),
        # -- data files of a `files` task --------------------------------------------------------------------
        "data missing": Case(RUN_FILES, ("train.csv", "file not found"), {"files.yaml": files_recipe,
                                                                           "train.csv": None}),
        "data empty": Case(RUN_FILES, ("train.csv", "no column 'sentence'"), {"train.csv": ""}),
        "data header only": Case(RUN_FILES, ("train.csv", "no rows"), {"train.csv": "sentence,label\n"}),
        "data wrong columns": Case(RUN_FILES, ("train.csv", "no column 'sentence'", "columns: text, label"),
                                   {"train.csv": GOOD_CSV.replace("sentence,", "text,", 1)}),
        "data one class": Case(RUN_FILES, ("train.csv", "1 distinct label", "at least 2"),
                               {"train.csv": "sentence,label\na,1\nb,1\nc,1\n"}),
        "data not UTF-8": Case(RUN_FILES, ("train.csv:3", "byte 0xe9 at offset 30", "re-encode"),
                               {"train.csv": NON_UTF8}),
        "data not UTF-8 (trial run)": Case(("trial", "run", "--trial", "{files.yaml}", "--config", "{config.yaml}"),
                                           ("train.csv:3", "is not UTF-8"), {"train.csv": NON_UTF8}),
        "data not UTF-8 (space check)": Case(("space", "check", "{space.yaml}", "--trial", "{files.yaml}"),
                                             ("train.csv:3", "is not UTF-8"), {"train.csv": NON_UTF8}),
        "data unbalanced quote": Case(RUN_FILES, ("train.csv:22", "field larger than field limit", "unbalanced"),
                                      {"train.csv": GOOD_CSV + '"unclosed,1\n' + "x,0\n" * 40_000}),
        "data short row": Case(RUN_FILES, ("train.csv:3", "column 'label' is missing"),
                               {"train.csv": "sentence,label\na,1\nb\n"}),
        "data unknown label": Case(RUN_FILES, ("train.csv", "unknown label 'maybe'"),
                                   {"files.yaml": _recipe(model_dir, labels=[0, 1]),
                                    "train.csv": GOOD_CSV + "odd,maybe\n"}),
        "data not a number": Case(RUN_FILES, ("train.csv", "not a finite number"),
                                  {"files.yaml": _recipe(model_dir, regression=True),
                                   "train.csv": GOOD_CSV + "odd,high\n"}),
        "data malformed JSONL": Case(RUN_FILES, ("train.jsonl:2", "not valid JSON"),
                                     {"files.yaml": _recipe(model_dir, train="train.jsonl"),
                                      "train.jsonl": '{"sentence": "a", "label": 0}\n{"sentence": \n'}),
        "data unknown file type": Case(RUN_FILES, ("train.txt", "unknown file type"),
                                       {"files.yaml": _recipe(model_dir, train="train.txt"), "train.txt": "x"}),
        "data header-less by index without header: false": Case(
            RUN_FILES, ("files.yaml", "task", "column 1 is an index", "header: false"),
            {"files.yaml": _recipe(model_dir, train="train.tsv", text_columns=[1], label_column=0)}),
        "data header-less short line": Case(
            RUN_FILES, ("train.tsv:2", "column 1 is missing"),
            {"files.yaml": _recipe(model_dir, train="train.tsv", text_columns=[1], label_column=0, header=False),
             "train.tsv": "0\tbad awful\n1\n" + "1\tgood\n" * 10}),
        "data header-less with names": Case(
            RUN_FILES, ("files.yaml", "task", "0-based indices", "'sentence'"),
            {"files.yaml": _recipe(model_dir, train="train.tsv", header=False)}),
        "data header-less JSONL": Case(
            RUN_FILES, ("files.yaml", "task", "header: false is for CSV/TSV"),
            {"files.yaml": _recipe(model_dir, train="train.jsonl", text_columns=[1], label_column=0, header=False)}),
        "recipe three text columns": Case(
            RUN_FILES, ("files.yaml", "task.text_columns", "one text column, or two", "got 3"),
            {"files.yaml": _recipe(model_dir, text_columns=["a", "b", "c"])}),
        "recipe validation size a word": Case(
            RUN_FILES, ("files.yaml", "task.validation_size", "valid integer or a valid number"),
            {"files.yaml": _recipe(model_dir, validation_size="most")}),
        "recipe model folder missing": Case(
            RUN, ("recipe.yaml", "model.name", "no such folder", "models/nope"),
            {"recipe.yaml": {**_recipe(model_dir), "model": {"name": "./models/nope"}}}),
        "recipe model folder missing (trial run)": Case(
            TRIAL, ("model.name", "no such folder", "nope"),
            {"recipe.yaml": {**_recipe(model_dir), "model": {"name": "/no/such/folder/nope"}}}),
        "data missing with labels given": Case(RUN_FILES, ("train.csv", "file not found"),
                                               {"files.yaml": _recipe(model_dir, labels=[0, 1]), "train.csv": None}),
        # -- study run options -------------------------------------------------------------------------------
        "run strategy": Case((*RUN, "--strategy", "bayes"), ("strategy", "unknown strategy 'bayes'", "accepted")),
        "run objective unknown": Case((*RUN, "--objectives", "score,accuracy"), ("objectives", "'accuracy'")),
        "run objectives without score": Case((*RUN, "--objectives", "trainable_params"),
                                             ("objectives", "must include score")),
        "run objectives repeat": Case((*RUN, "--objectives", "score,score"), ("objectives", "repeat")),
        "run objectives empty": Case((*RUN, "--objectives", ","), ("objectives",)),
        "run eta 1": Case((*RUN, "--eta", "1"), ("eta", ">= 2")),
        "run eta nan": Case((*RUN, "--eta", "nan"), ("eta", ">= 2")),
        "run budget 0": Case((*RUN, "--budget", "0"), ("budget", "must be > 0")),
        "run budget negative": Case((*RUN, "--budget", "-1"), ("budget", "must be > 0")),
        "run budget inf": Case((*RUN, "--budget", "inf"), ("budget", "finite")),
        "run budget not a number": Case((*RUN, "--budget", "abc"), ("--budget", "valid number")),
        "run max-time word": Case((*RUN, "--max-time", "soon"), ("max-time", "not a duration")),
        "run max-time 0": Case((*RUN, "--max-time", "0s"), ("max-time", "not a duration")),
        "run workers 0": Case((*RUN, "--workers", "0"), ("--workers", "greater than or equal to 1")),
        "run max-retries negative": Case((*RUN, "--max-retries", "-1"), ("--max-retries", "greater than or equal")),
        "run trial-timeout word": Case((*RUN, "--trial-timeout", "soon"), ("trial-timeout", "not a duration")),
        "run trial-timeout in process": Case((*RUN, "--trial-timeout", "5m"), ("trial-timeout", "cannot stop a trial")),
        "run workers with inprocess": Case((*RUN, "--workers", "2"), ("workers", "one trial at a time")),
        "run executor": Case((*RUN, "--executor", "x"), ("executor", "unknown executor 'x'", "accepted: local")),
        "run seed negative": Case((*RUN, "--seed", "-1"), ("seed", "0-4294967295")),
        "run seed not a number": Case((*RUN, "--seed", "one"), ("--seed",)),
        "run runs-dir a file": Case((*RUN, "--runs-dir", "{recipe.yaml}"), ("runs-dir", "not a folder")),
        "run name with a slash": Case((*RUN, "--name", "a/b"), ("name", "'a/b' is not a study name")),
        "run name empty": Case((*RUN, "--name", ""), ("name", "is not a study name")),
        "run name chaining URLs": Case((*RUN, "--name", "a::b"), ("name", "'a::b' is not a study name")),
        "run name taken": Case((*RUN, "--name", "done"), ("study 'done' already exists",)),
        "run unknown option": Case((*RUN, "--bogus"), ("No such option", "--bogus")),
        "run storage backend": Case((*RUN, "--storage", "mysql://u@h/db"), ("storage", "'mysql' is not supported")),
        "run storage driver": Case((*RUN, "--storage", "postgresql+psycopg2://u@h/db"),
                                   ("storage", "not installed")),
        "run storage folder missing": Case((*RUN, "--storage", "sqlite:///{nodir}/x.db"),
                                           ("storage", "does not exist")),
        "run storage a folder": Case((*RUN, "--storage", "sqlite:///{.}"), ("storage", "is a folder")),
        "run storage not a URL": Case((*RUN, "--storage", "::"), ("storage", "not a database URL")),
        "run default store, bad space": Case(("study", "run", "--space", "{space.yaml}", "--trial", "{recipe.yaml}"),
                                             ("space.yaml", "layers.rank"),
                                             {"space.yaml": _space(layers=_layers(rank={"choices": [0]}),
                                                                   plan=LORA_PLAN)}),
        # -- --warm-start: another study of this store and space, with a front to offer --------------------------
        "run warm-start unknown study": Case((*RUN, "--warm-start", "nope"),
                                             ("--warm-start", "no study 'nope'", "studies: done, idle")),
        "run warm-start other space": Case((*RUN, "--warm-start", "done"),
                                           ("--warm-start", "study 'done' searched another space", "space.yaml")),
        "run warm-start no full-fidelity trial": Case((*RUN, "--warm-start", "idle"),
                                                      ("--warm-start", "'idle' has no trial complete at full "
                                                       "fidelity"), {"space.yaml": DONE_SPACE}),
        "run warm-start no store": Case((*RUN[:7], "sqlite:///{none.db}", *RUN[8:], "--warm-start", "done"),
                                        ("--warm-start", "no store at")),
        "resume warm-start": Case(("study", "resume", "done", "--storage", "{store}", "--warm-start", "done"),
                                  ("No such option", "--warm-start")),
        "run no-defaults with a value": Case((*RUN, "--no-defaults=yes"), ("--no-defaults",)),
        # -- study resume / list / show / delete ---------------------------------------------------------------
        "resume unknown study": Case(("study", "resume", "nope", "--storage", "{store}"), ("no study 'nope'", "done")),
        "resume budget 0": Case(("study", "resume", "done", "--storage", "{store}", "--budget", "0"),
                                ("budget", "must be > 0")),
        "resume executor": Case(("study", "resume", "done", "--storage", "{store}", "--executor", "dask"),
                                ("executor", "unknown executor 'dask'", "accepted: local, inprocess, ray")),
        # -- --executor ray: its options are checked before any cluster is reached ---------------------------
        "run ray gpus negative": Case((*RUN, "--executor", "ray", "--gpus-per-trial", "-1"),
                                      ("gpus-per-trial", "must be >= 0", "got -1")),
        "run ray gpus 1.5": Case((*RUN, "--executor", "ray", "--gpus-per-trial", "1.5"),
                                 ("gpus-per-trial", "whole number of GPUs")),
        "run ray device cuda": Case((*RUN, "--executor", "ray", "--device", "cuda"),
                                    ("device", "the GPU Ray gives it", "only cpu")),
        "run gpus without ray": Case((*RUN, "--gpus-per-trial", "1"), ("gpus-per-trial", "--executor ray only")),
        "resume ray cpus 0": Case(("study", "resume", "done", "--storage", "{store}", "--executor", "ray",
                                   "--cpus-per-trial", "0"), ("cpus-per-trial", "must be > 0")),
        "resume ray address": Case(("study", "resume", "done", "--storage", "{store}", "--executor", "ray",
                                    "--ray-address", "nowhere"), ("ray-address", "not a Ray address")),
        "resume workers 0": Case(("study", "resume", "done", "--storage", "{store}", "--workers", "0"),
                                 ("--workers",)),
        "resume max-time": Case(("study", "resume", "done", "--storage", "{store}", "--max-time", "2 days"),
                                ("max-time", "not a duration")),
        "resume trial-timeout 0": Case(("study", "resume", "done", "--storage", "{store}", "--trial-timeout", "0"),
                                       ("trial-timeout", "not a duration")),
        "resume no store": Case(("study", "resume", "done", "--storage", "sqlite:///{none.db}"), ("no store at",)),
        "resume no store by default": Case(("study", "resume", "done"), ("no store at autopeft.db",)),
        "list bad storage": Case(("study", "list", "--storage", "mysql://u@h/db"), ("storage", "mysql")),
        "show unknown study": Case(("study", "show", "nope", "--storage", "{store}"), ("no study 'nope'",)),
        "show no store": Case(("study", "show", "done", "--storage", "sqlite:///{none.db}"), ("no store at",)),
        "delete unknown study": Case(("study", "delete", "nope", "--storage", "{store}", "--yes"),
                                     ("no study 'nope'",)),
        "delete missing name": Case(("study", "delete", "--yes"), ("Missing argument",)),
        # -- pareto / export / train ---------------------------------------------------------------------------
        "pareto unknown study": Case(("pareto", "nope", "--storage", "{store}"), ("nope",)),
        "pareto format": Case(("pareto", "done", "--storage", "{store}", "--format", "xml"), ("--format", "xml")),
        "export unknown study": Case(("export", "nope", "--out", "{out}", "--storage", "{store}"), ("nope",)),
        "export unknown trial": Case(("export", "done", "--out", "{out}", "--storage", "{store}", "--trial", "99"),
                                     ("has no trial 99",)),
        "export share too small": Case(("export", "done", "--out", "{out}", "--storage", "{store}",
                                        "--max-params-pct", "0.00001"), ("trainable share <= 1e-05%",)),
        "export score too high": Case(("export", "done", "--out", "{out}", "--storage", "{store}",
                                       "--min-score", "2"), ("scores >= 2",)),
        "export two rules": Case(("export", "done", "--out", "{out}", "--storage", "{store}", "--trial", "0",
                                  "--min-score", "0.1"), ("at most one of",)),
        "export share negative": Case(("export", "done", "--out", "{out}", "--storage", "{store}",
                                       "--max-params-pct", "-5"), ("max_params_pct", "must be in (0, 100]", "-5")),
        "export share above 100": Case(("export", "done", "--out", "{out}", "--storage", "{store}",
                                        "--max-params-pct", "150"), ("max_params_pct", "must be in (0, 100]")),
        "export score NaN": Case(("export", "done", "--out", "{out}", "--storage", "{store}",
                                  "--min-score", "nan"), ("min_score", "finite", "nan")),
        "export peft-only none loadable": Case(("export", "done", "--out", "{out}", "--storage", "{store}",
                                                "--peft-only", "--min-score", "2"), ("that peft can load",)),
        "export out is a file": Case(("export", "done", "--out", "{recipe.yaml}", "--storage", "{store}"),
                                     ("recipe.yaml",)),
        "export without --out": Case(("export", "done", "--storage", "{store}"), ("Missing option", "--out")),
        "train missing bundle": Case(("train", "{nope.yaml}"), ("nope.yaml", "file not found")),
        "train bundle not YAML": Case(("train", "{bundle.yaml}"), ("bundle.yaml", "not valid YAML"),
                                      {"bundle.yaml": "recipe: [\n"}),
        "train bundle without config": Case(("train", "{bundle.yaml}"), ("bundle.yaml", "config", "Field required"),
                                            {"bundle.yaml": lambda bundle: {k: v for k, v in bundle.items()
                                                                            if k != "config"}}),
        "train bundle rank 0": Case(("train", "{bundle.yaml}"), ("bundle.yaml", "config.plan", "greater than 0"),
                                    {"bundle.yaml": lambda bundle: {**bundle, "config": {
                                        "plan": {"all": [{"method": "lora", "r": 0}]}}}}),
        "train bundle unknown model": Case(("train", "{bundle.yaml}"), ("bundle.yaml", "recipe.model"),
                                           {"bundle.yaml": lambda bundle: {**bundle, "recipe": {
                                               **bundle["recipe"], "model": {"nam": "x"}}}}),
        "train fidelity 0": Case(("train", "{bundle.yaml}", "--fidelity", "0", "--out", "{trained}"),
                                 ("fidelity",)),
        "train fidelity above max": Case(("train", "{bundle.yaml}", "--fidelity", "99", "--out", "{trained}"),
                                         ("fidelity", "99")),
        "train fidelity not a number": Case(("train", "{bundle.yaml}", "--fidelity", "all"), ("--fidelity",)),
        "evaluate missing folder": Case(("evaluate", "{nope}", "--data", "{train.csv}"), ("nope", "no such folder")),
        "evaluate not a trained folder": Case(("evaluate", "{.}", "--data", "{train.csv}"), ("no trained adapter",)),
        "evaluate without --data": Case(("evaluate", "{.}"), ("Missing option", "--data")),
        "predict without --out": Case(("predict", "{.}", "--data", "{train.csv}"), ("Missing option", "--out")),
        "predict not a trained folder": Case(("predict", "{.}", "--data", "{train.csv}", "--out", "{p.csv}"),
                                             ("no trained adapter",)),
        "pareto no store": Case(("pareto", "done", "--storage", "sqlite:///{none.db}"), ("no store at",)),
        "export no store": Case(("export", "done", "--out", "{out}", "--storage", "sqlite:///{none.db}"),
                                ("no store at",)),
        "space check seed not a number": Case((*CHECK, "--seed", "x"), ("--seed",)),
        "space check without --trial": Case(("space", "check", "{space.yaml}"), ("Missing option", "--trial")),
        "train out is a file": Case(("train", "{bundle.yaml}", "--out", "{recipe.yaml}"), ("recipe.yaml",)),
        # -- trial run ---------------------------------------------------------------------------------------
        "trial config missing": Case(("trial", "run", "--trial", "{recipe.yaml}", "--config", "{nope.yaml}"),
                                     ("nope.yaml", "file not found")),
        "trial rank 0": Case(TRIAL, ("config.yaml", "plan.all", "greater than 0"),
                             {"config.yaml": {"plan": {"all": [{"method": "lora", "r": 0}]}}}),
        "trial unknown method": Case(TRIAL, ("config.yaml", "plan.all", "accepted: lora"),
                                     {"config.yaml": {"plan": {"all": [{"method": "loraz", "r": 2}]}}}),
        "trial layer out of range": Case(TRIAL, ("config.yaml", "plan.0-5", "out of range"),
                                         {"config.yaml": {"plan": {"0-5": [{"method": "lora", "r": 2}]}}}),
        "trial learning rate 0": Case(TRIAL, ("config.yaml", "learning_rate", "greater than 0"),
                                      {"config.yaml": {"plan": TINY_PLAN, "learning_rate": 0}}),
        "trial unknown key": Case(TRIAL, ("config.yaml", "epochs", "unknown field"),
                                  {"config.yaml": {"plan": TINY_PLAN, "epochs": 3}}),
        "trial plan a list": Case(TRIAL, ("config.yaml", "plan"), {"config.yaml": {"plan": [1, 2]}}),
        "trial fidelity 0": Case((*TRIAL, "--fidelity", "0"), ("fidelity", "outside 1-4")),
        "trial fidelity above max": Case((*TRIAL, "--fidelity", "99"), ("fidelity", "outside 1-4")),
        "trial recipe missing": Case(("trial", "run", "--trial", "{nope.yaml}", "--config", "{config.yaml}"),
                                     ("nope.yaml", "file not found")),
        "trial recipe with a bad task": Case(TRIAL, ("recipe.yaml", "task.max_length", "greater than 0"),
                                             {"recipe.yaml": {**_recipe(model_dir), "task": {"name": "demo",
                                                                                            "max_length": 0}}}),
        "trial dir a file": Case((*TRIAL, "--trial-dir", "{recipe.yaml}"),
                                 ("trial_dir", "recipe.yaml", "not a folder")),
        # -- --threads and --device (trial run, train, study run and resume) and the recipe's device ---------
        "trial threads 0": Case((*TRIAL, "--threads", "0"), ("--threads", "whole number >= 1", "got 0")),
        "trial threads a word": Case((*TRIAL, "--threads", "all"), ("--threads", "valid integer")),
        "trial device tpu": Case((*TRIAL, "--device", "tpu"), ("--device", "'tpu' is not a device",
                                                              "accepted: auto, cpu, cuda, cuda:N")),
        "train threads 0": Case(("train", "{bundle.yaml}", "--threads", "0"), ("--threads", "whole number >= 1")),
        "train device tpu": Case(("train", "{bundle.yaml}", "--device", "tpu"), ("--device", "accepted: auto")),
        "run threads negative": Case((*RUN, "--threads", "-2"), ("--threads", "whole number >= 1", "got -2")),
        "run device tpu": Case((*RUN, "--device", "tpu"), ("--device", "'tpu' is not a device")),
        "run device cuda:99": Case((*RUN, "--device", "cuda:99"), ("--device", "cuda:99 asked for, but torch sees")),
        "resume threads 0": Case(("study", "resume", "done", "--storage", "{store}", "--threads", "0"),
                                 ("--threads", "whole number >= 1")),
        "resume device gpu": Case(("study", "resume", "done", "--storage", "{store}", "--device", "gpu"),
                                  ("--device", "'gpu' is not a device", "accepted: auto, cpu, cuda, cuda:N")),
        # -- --devices (study run and resume, the local pool): a GPU torch does not see (here: any) is refused
        "run devices not seen": Case((*RUN, "--executor", "local", "--devices", "0,99"),
                                     ("--devices", "cuda:99", "asked for, but torch sees")),
        "run devices a word": Case((*RUN, "--executor", "local", "--devices", "gpu0"),
                                   ("--devices", "'gpu0' is not a GPU", "accepted: GPU indices or cuda:N names")),
        "run devices with device": Case((*RUN, "--executor", "local", "--device", "cpu", "--devices", "0"),
                                        ("--devices", "--device", "give one of them")),
        "run devices with ray": Case((*RUN, "--executor", "ray", "--devices", "0"),
                                     ("--devices", "--executor local only", "--gpus-per-trial")),
        "resume devices not seen": Case(("study", "resume", "done", "--storage", "{store}", "--devices", "cuda:99"),
                                        ("--devices", "cuda:99 asked for, but torch sees")),
        "resume devices in process": Case(("study", "resume", "done", "--storage", "{store}", "--executor",
                                           "inprocess", "--devices", "0"), ("--devices", "local only")),
        "recipe unknown device": Case(RUN, ("recipe.yaml", "training.device", "'tpu' is not a device",
                                            "accepted: auto, cpu, cuda, cuda:N"),
                                      {"recipe.yaml": {**_recipe(model_dir), "training": {"device": "tpu"}}}),
        "recipe unknown device (trial run)": Case(TRIAL, ("recipe.yaml", "training.device", "accepted: auto"),
                                                  {"recipe.yaml": {**_recipe(model_dir),
                                                                   "training": {"device": "cuda:one"}}}),
    }


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """A finished one-trial study `done` with its trial on the front, its export, and a study `idle` that never
    ran, made once: cases copy the store and the bundle."""
    folder = tmp_path_factory.mktemp("bad-input-base")
    (folder / "recipe.yaml").write_text(yaml.safe_dump(_recipe(tiny_model_dir)), encoding="utf-8")
    (folder / "space.yaml").write_text(yaml.safe_dump(DONE_SPACE), encoding="utf-8")
    store = f"sqlite:///{folder / 'studies.db'}"
    with closing(Store(store)) as opened:
        new_study(opened, folder / "space.yaml", folder / "recipe.yaml", name="done", strategy="random")
        # Trained for real, scored above chance (which the tiny model is not), so that it is on the front.
        run_study(opened, "done", budget=Budget(trials=1), executor="inprocess", runner=_above_chance)
        new_study(opened, folder / "space.yaml", folder / "recipe.yaml", name="idle", strategy="random")  # never run
    result = runner.invoke(app, ["export", "done", "--out", str(folder / "exported"), "--storage", store])
    assert result.exit_code == 0, result.output
    return {"store": folder / "studies.db", "bundle": folder / "exported" / "autopeft.yaml"}


def _above_chance(task: TrialTask) -> TrialOutcome:
    """The real trial, with a score above the task's chance."""
    outcome = run_trial(task)
    return replace(outcome, objectives={**outcome.objectives, "score": 0.9})


@pytest.fixture
def workspace(tmp_path: Path, base: dict[str, Path], tiny_model_dir: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Good inputs in a fresh folder that is also the working directory (the default store's place)."""
    monkeypatch.delenv("AUTOPEFT_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "recipe.yaml", _recipe(tiny_model_dir))
    _write(tmp_path, "files.yaml", _recipe(tiny_model_dir, train="train.csv"))
    _write(tmp_path, "space.yaml", TINY_SPACE)
    _write(tmp_path, "config.yaml", {"plan": TINY_PLAN, "learning_rate": 5e-3})
    _write(tmp_path, "train.csv", GOOD_CSV)
    with sqlite3.connect(base["store"]) as src, sqlite3.connect(tmp_path / "studies.db") as dst:
        src.backup(dst)  # with what is still in the write-ahead log
    shutil.copy(base["bundle"], tmp_path / "bundle.yaml")
    yield tmp_path


def _write(folder: Path, name: str, content: Any) -> None:
    path = folder / name
    if content is None:
        path.unlink(missing_ok=True)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(content), encoding="utf-8")


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.endswith(SQLITE_SIDE_FILES)}


def _rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        studies = conn.execute("SELECT name, status FROM studies ORDER BY id").fetchall()
        trials = conn.execute("SELECT COUNT(*) FROM trials").fetchall()
    return [*studies, *trials]


def _expand(arg: str, folder: Path) -> str:
    if arg == "{store}":
        return f"sqlite:///{folder / 'studies.db'}"
    if "{" in arg:
        head, _, rest = arg.partition("{")
        name, _, tail = rest.partition("}")
        return head + str(folder / name if name != "." else folder) + tail
    return arg


# --- the table ------------------------------------------------------------------------------------------


def test_the_table_is_large_enough(tiny_model_dir: Path) -> None:
    assert len(_cases(tiny_model_dir)) >= 60


@pytest.mark.parametrize("name", sorted(_cases(Path("model"))))
def test_bad_input_is_one_line_and_writes_nothing(name: str, workspace: Path, tiny_model_dir: Path) -> None:
    case = _cases(tiny_model_dir)[name]
    for file, content in case.files.items():
        if callable(content):  # a change to the good file
            content = content(yaml.safe_load((workspace / file).read_text(encoding="utf-8")))
        _write(workspace, file, content)
    before, rows = _snapshot(workspace), _rows(workspace / "studies.db")
    result = runner.invoke(app, [_expand(a, workspace) for a in case.args])
    assert result.exit_code == 2, (result.exit_code, result.output)
    line = one_line_error(result.stderr)
    for word in case.expect:
        assert word in line, f"{word!r} not in {line!r}"
    assert _snapshot(workspace) == before, "a bad input wrote files"
    assert _rows(workspace / "studies.db") == rows, "a bad input changed the store"
    assert os.getcwd() == str(workspace)
