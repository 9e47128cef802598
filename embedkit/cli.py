"""The `embedkit` command line: a thin shell over the Python API.

Every sub-command parses arguments, calls one library function and prints a summary.
Errors the user can act on (`EmbedkitError`) print one line and exit with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from embedkit import __version__
from embedkit.cli_common import (
    DEFAULT_MOLECULE_MODEL,
    batch_size_option,
    device_option,
    friendly_errors,
    model_option,
    num_workers_option,
    precision_option,
    progress_option,
    show_progress,
)
from embedkit.cli_datasets import datasets_group
from embedkit.cli_images import embed_images_cmd
from embedkit.cli_plates import plates_group
from embedkit.cli_profiles import aggregate_cmd, normalize_cmd
from embedkit.cli_retrieval import evaluate_retrieval_cmd, index_group, retrieve_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="embedkit")
def main() -> None:
    """Embeddings that carry biology: molecules and cell images, from a pinned model zoo.

    \b
    Quick start:
      embedkit embed-smiles molecules.csv -o embeddings.parquet
      embedkit zoo list
    """


@main.command("embed-smiles")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output table; format from the suffix: .parquet .csv .tsv .npz .h5ad.",
)
@click.option(
    "-s",
    "--smiles-column",
    default=None,
    help="Column holding SMILES.  [default: the column named 'smiles' in any case, else the first]",
)
@click.option(
    "--id-column", default=None, help="Column copied to Metadata_ID (e.g. a compound id)."
)
@model_option
@batch_size_option(256, "Molecules")
@num_workers_option(
    "Worker processes. On CPU each featurises and runs the model on its own chunk "
    "(1 thread each); with a GPU they only featurise.  [default: one per core (max 8) for "
    ">= 2,000 rows on Linux, else 0]"
)
@device_option
@precision_option(
    "bf16 weights and activations: ~2x faster on CPUs with AVX-512 BF16 and on GPUs "
    "(cosine to fp32 >= 0.9998 on NCI molecules); fp32 is exact."
)
@click.option(
    "--on-error",
    type=click.Choice(["nan", "raise", "drop"]),
    default="nan",
    show_default=True,
    help="Invalid SMILES: keep the row with NaNs (nan), stop before writing (raise), or drop it.",
)
@progress_option
@friendly_errors
def embed_smiles(
    input_path,
    output,
    smiles_column,
    id_column,
    model,
    batch_size,
    num_workers,
    device,
    precision,
    on_error,
    progress,
) -> None:
    """Embed the SMILES in IN (csv/tsv/smi/parquet) into one row per input row, in order."""
    from embedkit.api import load
    from embedkit.molecules.embed_table import embed_smiles_file

    embedder = load(model, device=device, precision=precision)
    summary = embed_smiles_file(
        input_path,
        output,
        embedder,
        smiles_column=smiles_column,
        id_column=id_column,
        batch_size=batch_size,
        num_workers=num_workers,
        on_error=on_error,
        progress=show_progress(progress),
    )
    click.echo(summary.line())


@main.group()
def zoo() -> None:
    """List, inspect, download, verify and convert models."""


@zoo.command("list")
def zoo_list() -> None:
    """Models in the zoo (works offline: the registry ships with the package)."""
    from embedkit.zoo import list_cards

    cards = list_cards()
    width = max(len(c.name) for c in cards) if cards else 10
    click.echo(f"{'name':<{width}}  {'task':<10} {'dim':>4}  {'where':<8} summary")
    for card in cards:
        where = "shipped" if card.shipped_dir else "hub"
        click.echo(
            f"{card.name:<{width}}  {card.task:<10} {card.embedding_dim:>4}  "
            f"{where:<8} {card.summary}"
        )


@zoo.command("show")
@click.argument("name")
@friendly_errors
def zoo_show(name: str) -> None:
    """The full card of NAME, and a usage snippet."""
    from embedkit.zoo import get_card

    card = get_card(name)
    click.echo(json.dumps(card.to_dict(), indent=2))
    click.echo("\nUsage:\n" + card.usage())


@zoo.command("download")
@click.argument("name")
@friendly_errors
def zoo_download(name: str) -> None:
    """Fetch NAME[@rev] into the Hugging Face cache and verify every file."""
    from embedkit.zoo import resolve

    resolved = resolve(name)
    click.echo(
        f"{resolved.model_id}@{resolved.revision}: verified in {resolved.folder} "
        f"({resolved.source})"
    )


@zoo.command("verify")
@click.argument("names", nargs=-1)
@friendly_errors
def zoo_verify(names: tuple[str, ...]) -> None:
    """Check the sha256 of every available file (all shipped models if no NAME)."""
    from embedkit.zoo import list_cards, resolve

    targets = names or tuple(c.name for c in list_cards() if c.shipped_dir)
    for name in targets:
        resolved = resolve(name)
        click.echo(
            f"ok  {name}@{resolved.revision[:12]}  {len(resolved.sha256)} files  "
            f"({resolved.source})"
        )


@zoo.command("convert")
@click.argument("kind", type=click.Choice(["infoalign", "rxrx1-vit", "openphenom"]))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write (config.json, model.safetensors, README.md).",
)
@friendly_errors
def zoo_convert(kind: str, checkpoint: Path, output: Path) -> None:
    """Convert a third-party CHECKPOINT of KIND to safetensors + config.json.

    \b
    KIND:
      infoalign   InfoAlign's pretrain.pt (molecule GIN encoder + VIB head)
      rxrx1-vit   the seed paper's RxRx1 ViT: best_{method}_vit-s.pt,
                  final_encoder_vit-s.pt or a plain state dict (6 channels w1..w6,
                  optional cell-line "GE" tokens)
      openphenom  Recursion's OpenPhenom channel-agnostic ViT-S/16 (its model.safetensors).
                  Its weights are NON-COMMERCIAL: embedkit ships this loader, never the
                  weights; do not redistribute or use the converted folder commercially.

    Pickles are opened with torch.load(weights_only=True); load the result with
    `-m local-dir:OUTPUT`.
    """
    if kind == "infoalign":
        from embedkit.convert import convert_infoalign

        folder = convert_infoalign(checkpoint, output)
    elif kind == "rxrx1-vit":
        from embedkit.images.convert import convert_rxrx1_vit

        folder = convert_rxrx1_vit(checkpoint, output)
    else:
        from embedkit.images.convert import convert_openphenom

        folder = convert_openphenom(checkpoint, output)
        click.echo("note: OpenPhenom weights are licensed for non-commercial use only")
    click.echo(f"converted {checkpoint} → {folder}; use it with -m local-dir:{folder}")


@main.group()
def evaluate() -> None:
    """Score models on public benchmarks, always beside baselines."""


@evaluate.command("property")
@model_option
@click.option(
    "--data-dir",
    default=None,
    help="Folder holding benchmarks/<dataset>/assays.csv.gz.  [default: $EMBEDKIT_DATA_DIR]",
)
@click.option(
    "--datasets",
    default="chembl2k,broad6k,biogenadme",
    show_default=True,
    help="Comma-separated benchmark names.",
)
@click.option(
    "--seeds",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Seeds; each is a new scaffold split and probe initialisation.",
)
@click.option("--quick", is_flag=True, help="Smoke run: 1 seed, 600 molecules, 100 epochs.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the full report (every run, summary, table) as JSON.",
)
@friendly_errors
def evaluate_property_cmd(model, data_dir, datasets, seeds, quick, output) -> None:
    """InfoAlign's property-prediction protocol on frozen embeddings.

    Scaffold split 60/15/25, MLP probe; ROC-AUC % (ChEMBL2K, Broad6K) and MAE x 100 (Biogen
    ADME). MODEL is scored beside the same architecture with random weights, ECFP4 + MLP
    and ECFP4 + random forest, run in the same call.
    """
    from embedkit.data_dir import resolve_data_dir
    from embedkit.evaluation.report import FULL, QUICK, run_property_report, write_report

    settings = dict(QUICK if quick else {**FULL, "seeds": seeds})
    report = run_property_report(model, resolve_data_dir(data_dir), datasets.split(","), **settings)
    click.echo(report["table_markdown"])
    if output is not None:
        write_report(report, output)
    click.echo(
        f"{len(report['results'])} runs in {report['elapsed_s']:.0f} s"
        + (f" → {output}" if output else "")
    )


main.add_command(embed_images_cmd)
main.add_command(plates_group)
main.add_command(datasets_group)
main.add_command(aggregate_cmd)
main.add_command(normalize_cmd)
main.add_command(index_group)
main.add_command(retrieve_cmd)
evaluate.add_command(evaluate_retrieval_cmd)

__all__ = ["DEFAULT_MOLECULE_MODEL", "main"]

if __name__ == "__main__":
    main()
