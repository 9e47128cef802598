"""`embedkit datasets synth-plate`: write a SIMULATED RxRx-style screen to a folder."""

from __future__ import annotations

import time
from pathlib import Path

import click

from embedkit.cli.options import friendly_errors, overwrite_option


@click.group("datasets")
def datasets_group() -> None:
    """Datasets: a generator of simulated (synthetic) Cell Painting plates.

    \b
      embedkit datasets synth-plate synth/ --cell-lines U2OS,HUVEC --wells 24
    """


@datasets_group.command("synth-plate")
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--cell-lines",
    default="U2OS,HUVEC",
    show_default=True,
    help="Comma-separated cell lines; RxRx names (U2OS, HUVEC, RPE, HepG2, HRCE, VERO) get "
    "their typical morphology, any other name a simulated de novo line.",
)
@click.option("--batches", default=2, show_default=True, help="Experiments per cell line.")
@click.option("--plates", default=1, show_default=True, help="Plates per experiment.")
@click.option("--wells", default=24, show_default=True, help="Wells per plate (B02, B03, ...).")
@click.option("--sites", default=2, show_default=True, help="Sites per well.")
@click.option("--size", default=256, show_default=True, help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--batch-effect",
    default=1.0,
    show_default=True,
    help="Strength of per-batch channel gain/offset; 0 disables.",
)
@click.option(
    "--blank-channel",
    "blank_channels",
    multiple=True,
    type=int,
    help="Write this channel (1-6) as a constant zero image; repeatable.",
)
@overwrite_option
@friendly_errors
def synth_plate_cmd(
    out: Path,
    cell_lines: str,
    batches: int,
    plates: int,
    wells: int,
    sites: int,
    size: int,
    seed: int,
    batch_effect: float,
    blank_channels: tuple[int, ...],
    overwrite: bool,
) -> None:
    """Write a SIMULATED screen to OUT in the RxRx layout (not real microscopy).

    OUT/<CellLine>-<BB>/Plate<P>/<Well>_s<site>_w<c>.png (8-bit, 6 channels in RxRx order),
    plus metadata.csv (one row per site), gene_graph.csv, gene_phenotypes.csv, config.json
    and README.txt describing how the data were simulated.
    """
    from embedkit.datasets.synthetic import SynthConfig, write_synthetic_dataset
    from embedkit.outputs import check_output_dir, summary_line

    check_output_dir(out, overwrite)
    config = SynthConfig(
        cell_lines=tuple(c.strip() for c in cell_lines.split(",") if c.strip()),
        batches=batches,
        plates=plates,
        wells=wells,
        sites=sites,
        size=size,
        seed=seed,
        batch_effect=batch_effect,
        blank_channels=blank_channels,
    )
    start = time.perf_counter()
    meta = write_synthetic_dataset(out, config, overwrite=overwrite)
    click.echo(
        summary_line(
            f"{len(meta)} SIMULATED sites ({len(meta) * config.channels} PNG files)",
            time.perf_counter() - start,
            out,
            [f"synthetic data, not real images (see {out / 'README.txt'})"],
        )
    )
