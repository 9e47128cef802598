"""`embedkit plates inspect`: see how embedkit reads a plate folder before embedding it."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import LAYOUTS, friendly_errors, overwrite_option


@click.group("plates")
def plates_group() -> None:
    """Plate folders: which layout, plates, wells, sites and channels embedkit finds.

    \b
      embedkit plates inspect rxrx1/images/U2OS-01
      embedkit plates inspect BR00117006/Images -o load_data.csv
      embedkit plates inspect field/ --layout channel-names
    """


@plates_group.command(
    "inspect", short_help="Show the layout, plates, wells, sites and channels under DIR."
)
@click.argument("folders", metavar="DIR [DIR...]", nargs=-1, required=True, type=click.Path())
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="auto",
    show_default=True,
    help="How file names map to plate/well/site/channel. auto: a .csv → index-csv; "
    "otherwise rxrx (Plate1/B02_s1_w3.png) or phenix (r01c01f01p01-ch1sk1fk1fl1.tiff), "
    "whichever names more files; files named per stain (Hoechst.tif) → channel-names.",
)
@click.option(
    "--pattern",
    default=None,
    metavar="REGEX",
    help="Python regex searched in each file's path relative to DIR, with named groups "
    "channel (required) and well, site, plate (optional). Implies --layout pattern.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write one row per site in load_data.csv form (Metadata_Plate/Well/Site, "
    "FileName_X, PathName_X); format from the suffix: .csv .tsv .parquet. "
    "Read it back with --layout index-csv.",
)
@overwrite_option
@friendly_errors
def inspect_cmd(
    folders: tuple[str, ...],
    layout: str,
    pattern: str | None,
    output: Path | None,
    overwrite: bool,
) -> None:
    """Print what embedkit finds under DIR: layout, plates, wells, sites, channels with
    file counts, sites missing channels, and files it could not place.

    DIR is a folder of images (searched recursively) or, with index-csv, a load_data.csv.

    \b
    Examples:
      embedkit plates inspect rxrx1/images/U2OS-01
      embedkit plates inspect BR00117006/Images -o load_data.csv
      embedkit plates inspect load_data.csv --layout index-csv
      embedkit plates inspect bray_u2os_field/ --layout channel-names
      embedkit plates inspect examplehuman/ \\
        --pattern '(?P<well>[A-P]\\d\\d)f(?P<site>\\d\\d)d(?P<channel>\\d)'
    """
    from embedkit.images.jobs import inspect_plates

    summary = inspect_plates(folders, layout, pattern, output, overwrite)
    click.echo(summary.index.summary())
    if output is not None:
        click.echo(summary.line())
