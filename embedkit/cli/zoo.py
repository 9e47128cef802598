"""`embedkit zoo list|show|download|verify|convert`: the model registry on the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from embedkit.cli.options import friendly_errors, overwrite_option
from embedkit.registry import converters, get_converter


@click.group("zoo")
def zoo_group() -> None:
    """List, inspect, download, verify and convert models.

    \b
    Examples:
      embedkit zoo list
      embedkit zoo show infoalign-gin-lincs-small
      embedkit zoo show vit-s16-cellpaint-demo --json
      embedkit zoo verify
      embedkit zoo convert infoalign pretrain.pt -o infoalign-released/
    """


@zoo_group.command("list")
@friendly_errors
def zoo_list() -> None:
    """Models in the zoo (works offline: cards and registry ship with the package)."""
    from embedkit.errors import EmbedkitError
    from embedkit.registry import get_kind
    from embedkit.zoo import list_cards

    cards = list_cards()
    rows = [("name", "task", "architecture", "dim", "where", "summary")]
    for card in cards:
        where = "shipped" if card.shipped_dir else "hub"
        try:
            task = get_kind(card.architecture, where=f"zoo card {card.name}").task
        except EmbedkitError:  # one card for a kind this version lacks must not hide the rest
            task, where = "?", f"{where}, unknown architecture"
        rows.append(
            (card.name, task, card.architecture, str(card.embedding_dim), where, card.summary)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        cells = [f"{row[i]:<{widths[i]}}" if i != 3 else f"{row[i]:>{widths[i]}}" for i in range(5)]
        click.echo("  ".join(cells) + "  " + row[5])


@zoo_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The raw card as JSON (for scripts).")
@friendly_errors
def zoo_show(name: str, as_json: bool) -> None:
    """The card of NAME: task, architecture, input, licence, provenance, metrics and usage."""
    from embedkit.zoo import get_card
    from embedkit.zoo.card_text import card_text

    card = get_card(name)
    if as_json:
        click.echo(json.dumps(card.to_dict(), indent=2))
    else:
        click.echo(card_text(card))


@zoo_group.command("download")
@click.argument("name")
@friendly_errors
def zoo_download(name: str) -> None:
    """Fetch NAME[@rev] into the Hugging Face cache and verify every file."""
    from embedkit.zoo import resolve

    resolved = resolve(name)
    shown = resolved.model_id  # hf-hub:org/repo@main → hf-hub:org/repo@<the commit it named>
    shown = shown.rpartition("@")[0] or shown if shown.startswith("hf-hub:") else shown
    click.echo(f"{shown}@{resolved.revision}: verified in {resolved.folder} ({resolved.source})")


@zoo_group.command("verify")
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


def _convert_help() -> str:
    """The help of `zoo convert`, listing the registry's converters (one source of truth)."""
    from textwrap import wrap

    lines = [
        "Convert a third-party CHECKPOINT of KIND to safetensors + config.json.",
        "",
        "\b",
        "KIND:",
    ]
    for conv in converters().values():
        text = wrap(conv.help, 64)
        lines.append(f"  {conv.name:<11} {text[0]}")
        lines += [f"  {'':<11} {more}" for more in text[1:]]
    lines += [
        "",
        "Pickles are opened with torch.load(weights_only=True); load the result with "
        "`-m local-dir:OUTPUT`.",
    ]
    return "\n".join(lines)


@zoo_group.command("convert", help=_convert_help())
@click.argument("kind", type=click.Choice(list(converters())))
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write (config.json, model.safetensors, README.md).",
)
@click.option(
    "--feature-spaces",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='infoalign: JSON {space: {"columns": [...], "min": [...], "max": [...]}} naming '
    "the columns each decoder predicts (not stored in the checkpoint); spaces: morgan, "
    "gene_crispr, gene_orf, cp_bray, cp_jump, l1000. Needed for retrieval.",
)
@overwrite_option
@friendly_errors
def zoo_convert(
    kind: str, checkpoint: Path, output: Path, feature_spaces: Path | None, overwrite: bool
) -> None:
    from embedkit.outputs import check_output_dir, summary_line

    check_output_dir(output, overwrite)
    converter = get_converter(kind)
    options = {"feature_spaces": feature_spaces} if feature_spaces is not None else {}
    if options and "feature_spaces" not in converter.options:
        from embedkit.errors import InputError

        raise InputError(f"--feature-spaces applies to infoalign checkpoints, not {kind}")
    start = time.perf_counter()
    folder = converter.run(checkpoint, output, **options)
    details = [f"use it with -m local-dir:{folder}", converter.note]
    click.echo(
        summary_line(
            f"converted {checkpoint} ({kind})", time.perf_counter() - start, folder, details
        )
    )
