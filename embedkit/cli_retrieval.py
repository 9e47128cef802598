"""`embedkit index build|add|info`, `embedkit retrieve` and `embedkit evaluate retrieval`."""

from __future__ import annotations

from pathlib import Path

import click

from embedkit.cli_common import (
    DEFAULT_MOLECULE_MODEL,
    batch_size_option,
    device_option,
    friendly_errors,
    model_option,
    progress_option,
    show_progress,
)

on_nan_option = click.option(
    "--on-nan",
    type=click.Choice(["error", "drop"]),
    default="error",
    show_default=True,
    help="Profiles with missing features: stop and list their rows, or leave them out "
    "(counted in the summary). They are never indexed silently.",
)


def index_dir_option(help_text: str):
    return click.option(
        "-i",
        "--index",
        "index_dir",
        required=True,
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        help=help_text,
    )


index_model_option = click.option(
    "-m",
    "--model",
    default=None,
    help="Model to score with.  [default: the one the index was built with; another is refused]",
)


def load_for_index(index_dir: Path, model: str | None, device: str):
    """The model (with decoders) an index was built with. Only the manifest is read here;
    the job loads and verifies the index once and refuses a different model."""
    from embedkit.api import load
    from embedkit.retrieval.index import model_spec, read_manifest

    spec = model or model_spec(read_manifest(index_dir)["model"])
    return load(spec, device=device, with_decoders=True)


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
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="Index folder."
)
@model_option
@click.option(
    "--feature-space",
    default=None,
    help="Decoder space to use.  [default: the one sharing most columns with PROFILES]",
)
@click.option(
    "--metric",
    type=click.Choice(["likelihood", "cosine"]),
    default="likelihood",
    show_default=True,
    help="likelihood: the decoder's Bernoulli log-likelihood of the scaled profile "
    "(InfoAlign); cosine: cosine between the decoded and the scaled profile.",
)
@click.option(
    "--index-type",
    type=click.Choice(["auto", "flat", "ivf", "hnsw"]),
    default="auto",
    show_default=True,
    help="auto = exact (flat) up to 1,000,000 profiles, HNSW above.",
)
@on_nan_option
@friendly_errors
def index_build(profiles, output, model, feature_space, metric, index_type, on_nan) -> None:
    """Index PROFILES (a table with Metadata_ columns and feature columns).

    Feature columns are matched by name to the model's decoder spaces; a subset of a
    space is fine (only the shared columns are scored). They are min-max scaled with the
    model's training range, as the decoders saw them.
    """
    from embedkit.api import load
    from embedkit.retrieval.jobs import build_index_file

    embedder = load(model, device="cpu", with_decoders=True)
    click.echo(
        build_index_file(profiles, output, embedder, feature_space, metric, index_type, on_nan)
    )


@index_group.command("add")
@click.argument("profiles", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@index_dir_option("Index folder to append to.")
@on_nan_option
@friendly_errors
def index_add(profiles, index_dir, on_nan) -> None:
    """Append PROFILES to an index without rebuilding it (same feature columns)."""
    from embedkit.retrieval.jobs import add_to_index_file

    click.echo(add_to_index_file(profiles, index_dir, on_nan))


@index_group.command("info")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@friendly_errors
def index_info(index_dir) -> None:
    """What an index holds, which model built it, and from which files (checksums verified)."""
    from embedkit.retrieval.jobs import describe_index

    click.echo(describe_index(index_dir))


@click.command("retrieve")
@click.argument("queries", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@index_dir_option("Index folder from `embedkit index build`.")
@click.option("-k", default=10, show_default=True, help="Hits per query.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Hits table, one row per (query, rank); format from the suffix.",
)
@click.option(
    "--reverse",
    is_flag=True,
    help="Profile → molecules: for every indexed profile, the k QUERIES molecules most "
    "likely to produce it.",
)
@click.option(
    "-s",
    "--smiles-column",
    default=None,
    help="Column holding SMILES.  [default: the column named 'smiles' in any case, else the first]",
)
@click.option("--id-column", default=None, help="Column copied to Molecule_ID.")
@index_model_option
@device_option
@click.option(
    "--on-error",
    type=click.Choice(["nan", "raise", "drop"]),
    default="nan",
    show_default=True,
    help="Invalid SMILES: keep one row without hits (nan), stop before writing (raise), or "
    "drop it. They are never candidates with --reverse.",
)
@batch_size_option(256, "Molecules")
@progress_option
@friendly_errors
def retrieve_cmd(
    queries,
    index_dir,
    k,
    output,
    reverse,
    smiles_column,
    id_column,
    model,
    device,
    on_error,
    batch_size,
    progress,
) -> None:
    """Zero-shot: which indexed profiles is each molecule in QUERIES most likely to produce?

    Each molecule is embedded, decoded into the index's feature space by the decoder
    trained for it, and every profile is scored by the decoder's likelihood (or cosine).
    """
    from embedkit.retrieval.jobs import retrieve_file

    embedder = load_for_index(index_dir, model, device)
    summary = retrieve_file(
        queries,
        index_dir,
        output,
        embedder,
        k=k,
        reverse=reverse,
        smiles_column=smiles_column,
        id_column=id_column,
        on_error=on_error,
        batch_size=batch_size,
        progress=show_progress(progress),
    )
    click.echo(summary.line())


@click.command("retrieval")
@click.argument("queries", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@index_dir_option("Index of the candidate profiles.")
@click.option(
    "--key",
    required=True,
    help="Index metadata column naming each profile's molecule (e.g. Metadata_InChIKey).",
)
@click.option(
    "--query-key",
    default=None,
    help="QUERIES column with the same key.  [default: --key, or --key without Metadata_]",
)
@click.option("-s", "--smiles-column", default=None, help="Column holding SMILES.")
@index_model_option
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Metrics and ranks as JSON.")
@click.option("--plot", type=click.Path(path_type=Path), help="Rank histogram (PNG).")
@friendly_errors
def evaluate_retrieval_cmd(
    queries, index_dir, key, query_key, smiles_column, model, output, plot
) -> None:
    """HIT@1/@10, NDCG@1/@10 and mean rank of each molecule's own profile, beside chance.

    Every molecule in QUERIES is scored against every profile in the index (exact); its
    true profiles are those whose KEY equals its QUERY-KEY.
    """
    from embedkit.retrieval.jobs import evaluate_retrieval_file

    embedder = load_for_index(index_dir, model, "auto")
    evaluation = evaluate_retrieval_file(
        queries, index_dir, embedder, key, query_key, smiles_column, output, plot
    )
    for line in evaluation.metrics.lines():
        click.echo(line)
    if evaluation.skipped:
        click.echo(f"{evaluation.skipped} queries skipped (invalid SMILES or no true profile)")
    for path in (output, plot):
        if path is not None:
            click.echo(f"→ {path}")


__all__ = ["DEFAULT_MOLECULE_MODEL", "evaluate_retrieval_cmd", "index_group", "retrieve_cmd"]
