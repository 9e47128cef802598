"""`embedkit predict`: classify sites (or profiles) with a fine-tuned model."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import (
    LAYOUTS,
    batch_size_option,
    device_option,
    friendly_errors,
    num_workers_option,
    overwrite_option,
    precision_option,
    progress_option,
    show_progress,
)


@click.command("predict")
@click.argument("plate_dirs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-m",
    "--model",
    required=True,
    help="A fine-tuned model (`embedkit finetune` writes RUN_DIR/model): local-dir:PATH, a zoo "
    "name or hf-hub:org/repo.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Table of predictions; format from the suffix (.parquet .csv .tsv).",
)
@click.option(
    "--profiles",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Classify the rows of this profile table instead of plates.",
)
@click.option(
    "--crop-mode",
    type=click.Choice(["full", "center", "tiles"]),
    default=None,
    help="How sites are cropped.  [default: as in fine-tuning (config.json crop_mode)]",
)
@click.option(
    "--cell-line", default=None, help="Cell line of the plates.  [default: the one fine-tuned on]"
)
@click.option(
    "--cell-line-embeddings",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Table of cell-line embeddings holding --cell-line.",
)
@click.option("--channel-map", default=None, help="MODEL=PLATE pairs, e.g. DNA=ch5,ER=ch4.")
@click.option("--layout", default="auto", show_default=True, type=click.Choice(LAYOUTS))
@click.option("--pattern", default=None, help="Regex with named groups channel, well, site, plate.")
@batch_size_option(8, "Sites")
@num_workers_option("Image-decoding processes.  [default: 0]")
@device_option
@precision_option("bf16 autocast: for GPUs and CPUs with AMX; elsewhere not faster.")
@progress_option
@overwrite_option
@friendly_errors
def predict_cmd(
    plate_dirs,
    model,
    output,
    profiles,
    crop_mode,
    cell_line,
    cell_line_embeddings,
    channel_map,
    layout,
    pattern,
    batch_size,
    num_workers,
    device,
    precision,
    progress,
    overwrite,
) -> None:
    """Classify every site of PLATE_DIR(s) with a fine-tuned model: one row per site with
    its plate, well and site, the top-1 label and the top-5 labels with their scores.

    \b
      embedkit predict new_plate/ -m local-dir:run/model -o predictions.parquet
      embedkit predict --profiles plate.csv.gz -m local-dir:run/model -o predictions.csv
    """
    from embedkit.errors import InputError
    from embedkit.finetune.jobs import PredictOptions, predict_images, predict_profiles

    options = PredictOptions(
        crop_mode=crop_mode,
        cell_line=cell_line,
        cell_line_embeddings=str(cell_line_embeddings) if cell_line_embeddings else None,
        channel_map=channel_map,
        layout=layout,
        pattern=pattern,
        batch_size=batch_size,
        num_workers=num_workers or 0,
        device=device,
        precision=precision,
        progress=show_progress(progress),
        overwrite=overwrite,
    )
    if profiles is not None:
        if plate_dirs:
            raise InputError("give plates or --profiles TABLE, not both")
        summary = predict_profiles(profiles, model, output, options)
    else:
        if not plate_dirs:
            raise InputError("give the plate folder(s) to classify, or --profiles TABLE")
        summary = predict_images(plate_dirs, model, output, options)
    click.echo(summary.line())
