"""`autopeft evaluate` and `autopeft predict`: a trained adapter scored on, or run over, any data file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from autopeft.cli.app import app, console

Folder = Annotated[Path, typer.Argument(metavar="DIR", help="What `autopeft train` wrote (or a peft/ in it).")]
Data = Annotated[str, typer.Option("--data", help="A CSV / TSV / JSONL file the task reader accepts, or demo:dev.")]
Columns = Annotated[str | None, typer.Option(
    "--columns", help="text[,pair][,label] columns: names, or 0-based indices for a file without a header.")]


@app.command("evaluate")
def evaluate(
    folder: Folder,
    data: Data,
    columns: Columns = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the metrics here as JSON.")] = None,
) -> None:
    """Score a trained adapter on a labelled file with the task's metric."""
    from autopeft.export.evaluate import check_out_file, evaluate_file, write_atomically

    if out is not None:
        check_out_file(out)
    result = evaluate_file(folder, data, columns=columns)
    others = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k != result.metric)
    trained = "" if result.trained_dev_score is None else f"; dev {result.trained_dev_score:.4f} when trained"
    console.print(f"{result.metric}: {result.score:.4f}" + (f" ({others})" if others else "") +
                  f" on {result.examples:,} examples of {result.data}{trained}", highlight=False, soft_wrap=True)
    if out is not None:
        write_atomically(out, json.dumps(result.to_dict(), indent=2) + "\n")
        console.print(f"metrics -> {out}", highlight=False, soft_wrap=True)


@app.command("predict")
def predict(
    folder: Folder,
    data: Data,
    out: Annotated[Path, typer.Option("--out", help="CSV: index, label, (label_name,) prob_<label>... per example.")],
    columns: Columns = None,
) -> None:
    """Predict every example of a file (labels not needed) and write one CSV row per example."""
    from autopeft.export.evaluate import check_out_file, predict_file, write_atomically

    check_out_file(out)
    result = predict_file(folder, data, columns=columns)
    write_atomically(out, result.csv_text())
    console.print(f"{len(result.rows):,} predictions for {result.data} -> {out}", highlight=False, soft_wrap=True)
