"""`embedkit embed-images`: plate folders in, per-plate embedding tables out."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import (
    DEFAULT_IMAGE_MODEL,
    LAYOUTS,
    batch_size_option,
    device_option,
    friendly_errors,
    model_option_for,
    num_workers_option,
    overwrite_option,
    platemap_option,
    precision_option,
    progress_option,
    show_progress,
)


def channel_map_from_options(channels: str | None, channel_map: str | None, model_channels):
    """--channels (plate channels in model order, '-' = drop) and/or --channel-map."""
    from embedkit.errors import InputError
    from embedkit.images.channels import parse_channel_map

    mapping, drop = parse_channel_map(channel_map), []
    if channels:
        items = [c.strip() for c in channels.split(",")]
        if len(items) != len(model_channels):
            raise InputError(
                f"--channels lists {len(items)} plate channels; the model has "
                f"{len(model_channels)} ({', '.join(model_channels)}); use '-' to drop one"
            )
        for name, item in zip(model_channels, items, strict=True):
            if item == "-":
                drop.append(name)
            else:
                mapping.setdefault(name, item)
    return mapping, drop


@click.command("embed-images")
@click.argument("plate_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder: plates/<plate>.parquet (+ .json sidecar) and manifest.json.",
)
@model_option_for(DEFAULT_IMAGE_MODEL)
@click.option(
    "--layout",
    default="auto",
    show_default=True,
    type=click.Choice(LAYOUTS),
    help="How file names encode plate/well/site/channel.",
)
@click.option(
    "--pattern", default=None, help="Regex with named groups channel (required), well, site, plate."
)
@click.option(
    "--channels",
    default=None,
    help="Plate channels in the model's channel order, '-' to drop one, e.g. ch5,ch4,ch2,ch3,ch1,-",
)
@click.option(
    "--channel-map",
    default=None,
    help="MODEL=PLATE pairs, e.g. DNA=ch5,ER=ch4 (overrides names and aliases).",
)
@click.option(
    "--drop-channel",
    multiple=True,
    help="Model channel to leave out (its patch weights are dropped; repeatable).",
)
@click.option(
    "--level",
    type=click.Choice(["crop", "site", "well"]),
    default="site",
    show_default=True,
    help="One row per crop, per site (mean of crops) or per well.",
)
@click.option(
    "--crop-mode",
    type=click.Choice(["tiles", "center", "random", "full"]),
    default="tiles",
    show_default=True,
    help="Non-overlapping tiles, the center crop, random crops, or the resized field.",
)
@click.option(
    "--n-crops",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Crops per site for random.",
)
@batch_size_option(8, "Sites")
@num_workers_option(
    "Image-decoding processes running beside the model.  [default: 0 on <= 2 cores (no "
    "spare core: decoding in-process measured faster and flat in memory), else cores - 1, "
    "max 8]"
)
@device_option
@precision_option("bf16 autocast: for GPUs and CPUs with AMX; elsewhere not faster.")
@click.option("--shard", default=None, help="I/N: embed every N-th plate starting at I.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue into OUT: keep plates already embedded with the same settings (sha256 "
    "verified), embed the rest. Plates embedded with other settings are refused.",
)
@click.option(
    "--cell-line",
    default=None,
    help="Cell line of these plates (for models with cell-line tokens).",
)
@click.option(
    "--cell-line-embeddings",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Table of cell-line embeddings (name column + values).",
)
@platemap_option
@progress_option
@overwrite_option
@friendly_errors
def embed_images_cmd(
    plate_dirs,
    output,
    model,
    layout,
    pattern,
    channels,
    channel_map,
    drop_channel,
    level,
    crop_mode,
    n_crops,
    batch_size,
    num_workers,
    device,
    precision,
    shard,
    resume,
    cell_line,
    cell_line_embeddings,
    platemap,
    progress,
    overwrite,
) -> None:
    """Embed the sites of PLATE_DIR(s): one row per site (or crop, or well) per plate.

    \b
      embedkit plates inspect plate/                 # what was found, before any model runs
      embedkit embed-images plate/ -o emb/           # emb/plates/<plate>.parquet + manifest
      embedkit embed-images screen/ -o emb/ --shard 1/4 --resume
      embedkit embed-images phenix_site/ -o emb/ --channels ch5,ch4,ch3,ch2,ch1
      embedkit embed-images jump_site/ -o emb/ --channel-map DNA=ch5,RNA=ch3,AGP=ch2
        --drop-channel ER --drop-channel Mito          # the JUMP site with 3 of 5 channels
      embedkit embed-images plate/ -o emb/ --platemap platemap.csv   # + what is in each well
    """
    from embedkit.api import load
    from embedkit.images.jobs import (
        EmbedImagesOptions,
        default_decode_workers,
        embed_image_folders,
        parse_shard,
    )
    from embedkit.outputs import check_output_dir
    from embedkit.profiles.platemap import read_platemap

    check_output_dir(output, overwrite=True)  # a file named as OUT, before the model loads
    plate_map = read_platemap(platemap) if platemap is not None else None  # before, too
    embedder = load(
        model, device=device, precision=precision, task="images", command="embed-images"
    )
    mapping, drop = channel_map_from_options(channels, channel_map, embedder.model.channels)
    workers = num_workers if num_workers is not None else default_decode_workers()
    options = EmbedImagesOptions(
        level=level,
        crop_mode=crop_mode,
        n_random=n_crops,
        sites_per_batch=batch_size,
        num_workers=workers,
        shard=parse_shard(shard),
        resume=resume,
        cell_line=cell_line,
        channel_map=mapping,
        drop_channels=tuple(drop_channel) + tuple(drop),
        progress=show_progress(progress),
        overwrite=overwrite,
        platemap=plate_map,
    )
    summary = embed_image_folders(
        plate_dirs,
        embedder,
        output,
        options,
        layout,
        pattern,
        cell_line_embeddings,
        log=lambda message: click.echo(message, err=True),  # the channel mapping chosen
    )
    click.echo(summary.line())
    summary.raise_if_nothing_embedded()  # exit 2 when every site failed
