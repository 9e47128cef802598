"""`embedkit finetune`: few-shot fine-tuning on a new cell line, with baselines, per seed."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from embedkit.cli.options import (
    device_option,
    friendly_errors,
    num_workers_option,
    overwrite_option,
    precision_option,
    progress_option,
    show_progress,
    split_columns,
)

SPLIT_CONDITIONS = ("random", "same-plate", "across-batches")  # embedkit.finetune.splits
CROP_MODES = ("full", "center", "tiles")  # evaluation crops (embedkit.images.preprocess)
GRAPH_LOSSES = ("laplacian", "contrastive")  # embedkit.graph.losses.KINDS
BASELINES = ("random", "nearest-centroid", "none")  # embedkit.finetune.jobs.BASELINES


def _floats(text: str, option: str, count: int) -> tuple[float, ...]:
    from embedkit.errors import InputError

    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{option} {text!r}: expected {count} comma-separated numbers") from None
    if len(values) != count:
        raise InputError(f"{option} {text!r}: expected {count} comma-separated numbers")
    return values


def _ints(text: str, option: str) -> tuple[int, ...]:
    from embedkit.errors import InputError

    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{option} {text!r}: expected comma-separated integers") from None
    if not values or min(values) < 1:
        raise InputError(f"{option} {text!r}: widths must be at least 1")
    return values


@click.command("finetune")
@click.option(
    "-m",
    "--model",
    default=None,
    help="Pretrained encoder: zoo name[@rev], hf-hub:org/repo[@rev] or local-dir:PATH (an image "
    "model; with --profiles an embedkit-profile-classifier, or none to train an MLP from scratch).",
)
@click.option(
    "--data",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Plate folder (or a folder of plates); repeatable. DIR:MODEL=PLATE,... maps channels.",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Table keyed by Metadata_Plate, Metadata_Well (and Metadata_Site; RxRx's "
    "experiment/plate/well/site work too) holding --label-column.",
)
@click.option("--label-column", required=True, help="Column naming the perturbation.")
@click.option(
    "--profiles",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A profile table (CellProfiler features or embeddings, Metadata_ columns) instead "
    "of plates.",
)
@click.option(
    "--shots", type=click.IntRange(min=1), default=None, help="Training sites per perturbation (k)."
)
@click.option(
    "--validation",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Validation sites per perturbation (model selection, early stopping).",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 5),
    default=5,
    show_default=True,
    help="How many of the paper's seeds (42, 229, 1234, 2025, 114514), in order.",
)
@click.option(
    "--split-condition",
    type=click.Choice(SPLIT_CONDITIONS),
    default="random",
    show_default=True,
    help="Shots from anywhere (the paper's main protocol), from one plate, or across batches.",
)
@click.option(
    "--batch-column",
    default=None,
    help="Labels column naming the batch.  [default: Metadata_Batch, Metadata_Experiment or "
    "experiment, else the plate's folder]",
)
@click.option(
    "--split-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Use this split instead of drawing one: a run's splits.csv, or a table with a "
    "train/valid/test column (e.g. the paper's u2os_data.csv).",
)
@click.option(
    "--split-column",
    default=None,
    help="Split file column.  [default: Metadata_Split, split or split1]",
)
@click.option("--drop-label", multiple=True, help="Label to leave out (e.g. controls); repeatable.")
@click.option(
    "--graph",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Perturbation graph .npz (`embedkit graph build`): adds the graph loss.",
)
@click.option(
    "--graph-loss", type=click.Choice(GRAPH_LOSSES), default="laplacian", show_default=True
)
@click.option("--graph-weight", type=click.FloatRange(min=0), default=1e-5, show_default=True)
@click.option("--cell-line", default=None, help="The new cell line (models with cell-line tokens).")
@click.option(
    "--cell-line-embeddings",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Table of cell-line embeddings holding --cell-line.",
)
@click.option(
    "--expression",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="AnnData of cell-line RNA-seq: --cell-line's embedding is computed from it.",
)
@click.option(
    "--baselines",
    default="random",
    show_default=True,
    help="Comma-separated: random (the same protocol from a random encoder), nearest-centroid "
    "(profiles), none.",
)
@click.option("--linear-probe", is_flag=True, help="Freeze the encoder; train the head only.")
@click.option("--epochs", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Early stopping on validation top-1.",
)
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=72, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.05, show_default=True)
@click.option(
    "--crop-mode",
    type=click.Choice(CROP_MODES),
    default="full",
    show_default=True,
    help="How validation and test sites are cropped (the field resized, as the reference "
    "code, or its center / tiles); `predict` uses the same.",
)
@click.option(
    "--crop-scale",
    default="0.2,1.0",
    show_default=True,
    help="Training crops: MIN,MAX fraction of the field's area.",
)
@click.option(
    "--channel-map", default=None, help="MODEL=PLATE channel pairs for every --data folder."
)
@click.option(
    "--hidden",
    default="512,256",
    show_default=True,
    help="MLP widths for --profiles without --model.",
)
@device_option
@precision_option("bf16 autocast for training and evaluation.")
@num_workers_option("Image-decoding processes.  [default: 0]")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="RUN_DIR: report.json, report.md, splits.csv, seeds/, model/.",
)
@progress_option
@overwrite_option
@friendly_errors
def finetune_cmd(
    model,
    data,
    labels,
    label_column,
    profiles,
    shots,
    validation,
    seeds,
    split_condition,
    batch_column,
    split_file,
    split_column,
    drop_label,
    graph,
    graph_loss,
    graph_weight,
    cell_line,
    cell_line_embeddings,
    expression,
    baselines,
    linear_probe,
    epochs,
    patience,
    batch_size,
    lr,
    weight_decay,
    crop_mode,
    crop_scale,
    channel_map,
    hidden,
    device,
    precision,
    num_workers,
    output,
    progress,
    overwrite,
) -> None:
    """Fine-tune MODEL on K labelled sites per perturbation of a new cell line, over seeds,
    beside a randomly initialised encoder; report test top-1/5/10.

    \b
      embedkit finetune -m local-dir:pretrained/model --data u2os/ --labels labels.csv \\
          --label-column Metadata_Gene --shots 1 --seeds 5 -o run/
      embedkit predict u2os_new/ -m local-dir:run/model -o predictions.parquet
      embedkit finetune --profiles a549.csv.gz --label-column Metadata_broad_sample \\
          --drop-label DMSO --shots 1 -m local-dir:cmea_model \\
          --baselines random,nearest-centroid -o run/
    """
    from embedkit.errors import InputError
    from embedkit.finetune.jobs import FinetuneOptions, finetune_images, finetune_profiles
    from embedkit.finetune.training import TrainSettings

    chosen = split_columns(baselines) or []
    options = FinetuneOptions(
        label_column=label_column,
        shots=shots,
        validation=validation,
        seeds=seeds,
        condition=split_condition,
        batch_column=batch_column,
        split_file=str(split_file) if split_file else None,
        split_column=split_column,
        drop_labels=tuple(drop_label),
        graph=str(graph) if graph else None,
        graph_loss=graph_loss,
        graph_weight=graph_weight,
        cell_line=cell_line,
        cell_line_embeddings=str(cell_line_embeddings) if cell_line_embeddings else None,
        expression=str(expression) if expression else None,
        baselines=tuple(b for b in chosen if b != "none"),
        train=TrainSettings(
            epochs=epochs,
            patience=patience,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            linear_probe=linear_probe,
            precision=precision,
        ),
        crop_mode=crop_mode,
        crop_scale=_floats(crop_scale, "--crop-scale", 2),
        channel_map=channel_map,
        hidden=_ints(hidden, "--hidden"),
        device=device,
        num_workers=num_workers or 0,
        progress=show_progress(progress),
        overwrite=overwrite,
        command="embedkit " + " ".join(sys.argv[1:]),
    )
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown:
        raise InputError(f"--baselines {unknown[0]!r}: choose from {', '.join(BASELINES)}")

    def log(message: str) -> None:
        click.echo(message, err=True)

    if profiles is not None:
        if data:
            raise InputError("give plates (--data) or a profile table (--profiles), not both")
        summary = finetune_profiles(profiles, output, options, model, labels, log=log)
    else:
        if not data or labels is None or model is None:
            raise InputError(
                "fine-tuning on images needs --model, --data PLATES and --labels TABLE "
                "(or give --profiles TABLE)"
            )
        summary = finetune_images(model, data, labels, output, options, log=log)
    click.echo(summary.line())
