"""`embedkit index build|add|info`: FAISS indexes of measured profiles."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli.options import (
    PROFILE_ON_ERROR_CHOICES,
    friendly_errors,
    index_dir_option,
    model_option,
    on_error_option,
    overwrite_option,
)

# embedkit.retrieval.scoring.METRICS and DEFAULT_METRIC, spelled here so that `--help`
# imports no numpy (tests/test_retrieval.py checks they agree).
METRIC_CHOICES = ("likelihood", "cosine", "centered", "zscore", "csls", "inverted-softmax")
DEFAULT_METRIC = "inverted-softmax"
METRIC_HELP = (
    "How a decoded molecule scores a profile. likelihood: the decoder's Bernoulli "
    "log-likelihood (InfoAlign's); cosine: cosine of decoded and scaled profile; centered / "
    "zscore: the same after centring (and z-scoring) predictions on the reference molecules "
    "and profiles on the index's mean; csls / inverted-softmax: z-scored cosine with a "
    "hubness correction learnt from the reference molecules. The default won the "
    "cross-validation in docs/retrieval.md."
)


def metric_check_option(command: str):
    """`--metric` of the commands that query an index: a check, not a choice."""
    return click.option(
        "--metric",
        type=click.Choice(METRIC_CHOICES),
        default=None,
        help=f"The scoring {command} expects; an index built for another is refused.  "
        "[default: the index's own]",
    )


profile_on_error_option = on_error_option(
    "Profiles with missing features: stop and list their rows (raise), or leave them out "
    "(drop; counted in the summary). They are never indexed silently.",
    PROFILE_ON_ERROR_CHOICES,
    old_on_nan=True,
)


@click.group("index")
def index_group() -> None:
    """FAISS indexes of measured profiles, projected into a model's decoder space.

    \b
      embedkit index build profiles.parquet -o cp_index/
      embedkit index add more_profiles.parquet -i cp_index/
      embedkit index info cp_index/
    """


@index_group.command("build")
@click.argument("profiles", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Index folder to create; missing parent folders are created.",
)
@model_option
@click.option(
    "--feature-space",
    default=None,
    help="Decoder space to use.  [default: the one sharing most columns with PROFILES]",
)
@click.option(
    "--metric",
    type=click.Choice(METRIC_CHOICES),
    default=DEFAULT_METRIC,
    show_default=True,
    help=METRIC_HELP,
)
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="SMILES table of reference molecules, stored with the index: the calibrated "
    "scorings centre on their mean decoding, and `index info` measures hubness with them. "
    "Invalid SMILES are left out and counted.  [default: 1,000 LINCS compounds shipped "
    "with embedkit]",
)
@click.option(
    "--controls",
    default=None,
    help="pandas query on the profiles' Metadata_ selecting control profiles; activity "
    "(Profile_Activity) is the distance from their median.  [default: the median of all "
    "profiles]",
)
@click.option(
    "--index-type",
    type=click.Choice(["auto", "flat", "ivf", "hnsw"]),
    default="auto",
    show_default=True,
    help="auto = exact (flat) up to 1,000,000 profiles, HNSW above.",
)
@profile_on_error_option
@overwrite_option
@friendly_errors
def index_build(
    profiles,
    output,
    model,
    feature_space,
    metric,
    reference,
    controls,
    index_type,
    on_error,
    overwrite,
) -> None:
    """Index PROFILES (a table with Metadata_ columns and feature columns).

    Feature columns are matched by name to the model's decoder spaces; a subset of a
    space is fine (only the shared columns are scored). They are min-max scaled with the
    model's training range, as the decoders saw them. The reference molecules are decoded
    and stored with the index.
    """
    from embedkit.api import load
    from embedkit.outputs import check_output_dir
    from embedkit.retrieval.jobs import build_index_file

    check_output_dir(output, overwrite)  # before the model loads

    embedder = load(model, device="cpu", with_heads=True, task="molecules", command="index build")
    click.echo(
        build_index_file(
            profiles,
            output,
            embedder,
            feature_space,
            metric,
            index_type,
            on_error,
            overwrite,
            reference=reference,
            controls=controls,
        )
    )


@index_group.command("add")
@click.argument("profiles", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@index_dir_option("Index folder to append to.")
@profile_on_error_option
@click.option(
    "--allow-duplicates",
    is_flag=True,
    help="Add profiles the index already holds (same metadata and features).  [default: "
    "skip them and count them in the summary]",
)
@friendly_errors
def index_add(profiles, index_dir, on_error, allow_duplicates) -> None:
    """Append PROFILES to an index without rebuilding it (same feature columns).

    Concurrent adds to one index wait for each other (a lock beside the folder); none
    loses the other's rows.
    """
    from embedkit.retrieval.jobs import add_to_index_file

    click.echo(add_to_index_file(profiles, index_dir, on_error, allow_duplicates))


@index_group.command("info")
@click.argument("index_dir", type=click.Path(file_okay=False, path_type=Path))
@friendly_errors
def index_info(index_dir) -> None:
    """What an index holds, which model built it, from which files (checksums verified),
    and how hub-prone its scoring is with the reference molecules as queries."""
    from embedkit.retrieval.info import describe_index

    click.echo(describe_index(index_dir))
