"""`python -m train vit`: pretrain the microscopy ViT with WSL, SimCLR, BYOL, MoCo v3 or MAE.

    python -m train vit --method simclr --data PLATES --metadata metadata.csv \\
        --label-column Metadata_Gene [--graph graph.npz --graph-loss laplacian] \\
        [--cell-line-embeddings scvi_256.parquet --cell-line-tokens 4] -o runs/simclr
    torchrun --nproc-per-node 8 -m train vit --method mae ...    # DDP, one process per GPU

One module per method (`train.vit_wsl`, `vit_simclr`, `vit_byol`, `vit_mocov3`,
`vit_mae`) on the shared loop (`train.loop`); their recipes are train/configs/*.json, and
any key can be set with `--config FILE`, `--set KEY=VALUE` or `--key-name VALUE`
(`--print-config` shows the result). RUN_DIR gets checkpoint.pt, metrics.jsonl (a record
per step; TensorBoard events too when it is installed) and model/ (the encoder as an
`embedkit-vit` Hub folder with its card), which `embedkit embed-images -m
local-dir:RUN_DIR/model`, `python -m train.ship` and `python -m train publish` take.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import shlex
from pathlib import Path

import click

from embedkit.cli.options import friendly_errors
from embedkit.errors import InputError
from train.distributed import Runtime, setup_runtime
from train.loop import Run, run
from train.vit_common import (
    GRAPH_LOSSES,
    DataSpec,
    VitMethod,
    VitRecipe,
    cell_line_vectors,
    channel_names,
    collect_sites,
    load_recipe,
)

METHODS = {
    "wsl": "train.vit_wsl",
    "simclr": "train.vit_simclr",
    "byol": "train.vit_byol",
    "mocov3": "train.vit_mocov3",
    "mae": "train.vit_mae",
}
SHOW = 5


def method_class(name: str) -> type[VitMethod]:
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name]).METHOD


def recipe_for(
    method: str, config_file: Path | None = None, overrides: dict | None = None
) -> VitRecipe:
    """The method's recipe: shipped config ← `config_file` ← `overrides`."""
    cls = method_class(method)
    recipe = load_recipe(cls.recipe_class, method, config_file, overrides)
    for key in ("temperature", "graph_temperature"):
        value = getattr(recipe, key, None)
        if value is not None and value <= 0:
            raise InputError(f"{key} must be positive, got {value}")
    mask = getattr(recipe, "mask_ratio", None)
    if mask is not None and not 0 < mask < 1:
        raise InputError(f"mask_ratio must lie strictly between 0 and 1, got {mask}")
    return recipe


def describe_coverage(coverage: dict) -> str:
    """`GraphRegularizer.coverage` in words (labels, covered, connected, missing)."""
    if {"labels", "covered"} <= coverage.keys():
        text = f"the graph covers {coverage['covered']} of {coverage['labels']} labels"
        if "connected" in coverage:
            text += f", {coverage['connected']} of them with an edge"
        return text
    return "; ".join(f"{k} {v}" for k, v in coverage.items()) or "(no coverage reported)"


def absent_labels(coverage: dict) -> tuple[int, list[str]]:
    """How many labels the graph lacks, and a few of them."""
    missing = coverage.get("missing", 0)
    examples = list(coverage.get("missing_examples", []) or [])
    if isinstance(missing, list | tuple | set | frozenset):
        examples, missing = sorted(map(str, missing)), len(missing)
    return int(missing or 0), [str(e) for e in examples]


def _plain(coverage: dict) -> dict:
    """The coverage as JSON values (long lists cut to a few examples)."""
    out = {}
    for key, value in dict(coverage).items():
        if isinstance(value, list | tuple | set | frozenset):
            out[key] = [str(v) for v in list(value)[: 2 * SHOW]]
        elif hasattr(value, "item"):
            out[key] = value.item()
        else:
            out[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


def graph_regularizer(spec: DataSpec, vocab: list[str], recipe: VitRecipe, rt: Runtime, log):
    """`GraphRegularizer` over the label vocabulary (coverage logged, absentees warned)."""
    if not spec.graph:
        return None, {}
    try:
        from embedkit.graph import PerturbationGraph
        from embedkit.graph.losses import GraphRegularizer
    except ImportError as err:
        raise InputError(
            "--graph needs embedkit.graph (the perturbation graph and its losses), which this "
            f"embedkit lacks ({err})"
        ) from err
    if not Path(spec.graph).is_file():
        raise InputError(f"--graph {spec.graph}: no such file")
    graph = PerturbationGraph.load(spec.graph)
    regularizer = GraphRegularizer(
        graph,
        vocab,
        kind=recipe.graph_loss,
        weight=recipe.graph_weight,
        temperature=recipe.graph_temperature,
    )
    if hasattr(regularizer, "to"):
        regularizer = regularizer.to(rt.device)
    coverage = dict(getattr(regularizer, "coverage", {}) or {})
    log(
        f"graph {spec.graph}: {recipe.graph_loss} loss, weight {recipe.graph_weight:g}; "
        f"{describe_coverage(coverage)}"
    )
    missing, examples = absent_labels(coverage)
    if missing:
        shown = f", e.g. {', '.join(examples[:SHOW])}" if examples else ""
        log(
            f"  warning: {missing} of {len(vocab)} training perturbations are not in the graph "
            f"(the graph loss leaves them out){shown}"
        )
    return regularizer, _plain(coverage)


def train_vit(
    method: str,
    recipe: VitRecipe,
    spec: DataSpec,
    out: Path,
    *,
    resume: bool = False,
    rt: Runtime,
    log=print,
    log_every: int = 0,
    command: str = "",
) -> Run:
    """Collect the sites, build the method and run it on the loop; rank 0 writes OUT."""
    log = log if rt.main else (lambda _message: None)
    cls = method_class(method)
    channels, aliases = channel_names(recipe.channels)
    need_lines = spec.cell_line_embeddings is not None
    if need_lines and recipe.cell_line_tokens < 1:
        raise InputError("--cell-line-embeddings needs --cell-line-tokens K of at least 1")
    if not need_lines:
        recipe = dataclasses.replace(recipe, cell_line_tokens=0)
    need_labels = cls.needs_labels or spec.graph is not None
    if need_labels and not spec.label_column:
        why = f"--method {method}" if cls.needs_labels else "--graph"
        raise InputError(f"{why} needs --label-column COLUMN (the perturbation of each site)")
    if need_labels and spec.metadata is None:
        raise InputError("--label-column needs --metadata FILE (a table with one row per site)")
    sites = collect_sites(spec, channels, aliases, need_labels, need_lines, log)
    cell_lines = None
    if need_lines:
        table, vectors = cell_line_vectors(
            spec.cell_line_embeddings, sites.line_vocab, spec.cell_line_column
        )
        cell_lines = (table, vectors)
        log(
            f"cell-line tokens: {recipe.cell_line_tokens} per image from "
            f"{vectors.shape[1]}-d embeddings ({Path(spec.cell_line_embeddings).name}, "
            f"{len(table)} lines); training lines: {', '.join(sites.line_vocab)}"
        )
    if cls.needs_labels and len(sites.label_vocab) < 2:
        raise InputError(
            f"--method {method} needs at least 2 labels in {spec.label_column}, found "
            f"{len(sites.label_vocab)}"
        )
    regularizer, coverage = graph_regularizer(spec, sites.label_vocab, recipe, rt, log)
    m = cls(
        recipe,
        rt,
        sites,
        spec,
        channels=(channels, aliases),
        cell_lines=cell_lines,
        graph_regularizer=regularizer,
        graph_report=coverage,
        command=command,
        log=log,
    )
    log(
        f"{method}: {len(sites)} sites, {m.steps_per_epoch} steps per epoch, "
        f"{m.total_steps} steps of {recipe.batch_size} sites ({m.micro} per micro-batch × "
        f"accumulate {recipe.accumulate} × {rt.world} process(es)); {m.workers} loader "
        "worker(s) per process"
    )
    return run(m, out, resume=resume, log=log, log_every=log_every)


# -- the command ---------------------------------------------------------------------------

NOT_IN_COMMAND = ("resume", "max_steps", "print_config", "threads", "log_every")


def _setting_args(args: list[str]) -> dict[str, str]:
    """Extra `--key-name VALUE` / `--key-name=VALUE` arguments as recipe settings."""
    settings, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise InputError(
                f"unexpected argument {arg!r} (repeat --data for each plate folder; recipe "
                "settings are --set KEY=VALUE or --key-name VALUE)"
            )
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise InputError(f"{arg} needs a value")
            value, i = args[i + 1], i + 1
        settings[name.replace("-", "_")] = value
        i += 1
    return settings


def _set_items(items: tuple[str, ...]) -> dict[str, str]:
    settings = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InputError(f"--set {item!r} is not KEY=VALUE (e.g. --set temperature=0.2)")
        settings[key.strip().replace("-", "_")] = value.strip()
    return settings


def _launcher() -> str:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return "python -m train vit"
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    nodes = f" --nnodes {world // local}" if world > local else ""
    return f"torchrun{nodes} --nproc-per-node {local} -m train vit"


def command_line(ctx: click.Context) -> str:
    """The run's command, option by option as click parsed it (without --resume and the
    like, which do not change the result)."""
    parts: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in NOT_IN_COMMAND or value is None or value == ():
            continue
        long = max(param.opts, key=len)
        if isinstance(param, click.Option) and param.secondary_opts:
            parts.append(long if value else max(param.secondary_opts, key=len))
        elif isinstance(param, click.Option) and param.is_flag:
            if value:
                parts.append(long)
        else:
            for item in value if isinstance(value, tuple) else (value,):
                parts += [long, str(item)]
    return f"{_launcher()} {shlex.join([*parts, *ctx.args])}"


def overrides_from(
    ctx: click.Context, settings: tuple[str, ...], explicit: dict[str, object]
) -> dict:
    """Recipe settings from `--key-name VALUE`, then `--set`, then the named options."""
    out = {**_setting_args(list(ctx.args)), **_set_items(settings)}
    if explicit.get("steps") is not None and explicit.get("epochs") is not None:
        raise InputError("--steps and --epochs exclude each other: give one")
    for key, value in explicit.items():
        if value is not None:
            out[key] = value
    return out


@click.command(
    "vit",
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        "help_option_names": ["-h", "--help"],
    },
    epilog="Every recipe key (see --print-config) can also be given as --key-name VALUE.",
)
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
    required=True,
    help="Pretraining method (recipe: train/configs/METHOD.json).",
)
@click.option(
    "--data",
    multiple=True,
    help="Plate folder, or DIR:MODEL=PLATE,... to map its channels (repeat for more).",
)
@click.option(
    "--metadata",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Table with one row per site (Metadata_Plate/Well/Site or RxRx's experiment/"
    "plate/well/site) and the label and cell-line columns.",
)
@click.option(
    "--label-column",
    default=None,
    help="Metadata column with each site's perturbation (needed by wsl and --graph).",
)
@click.option(
    "--graph",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Perturbation graph (embedkit graph build) for the graph regularizer.",
)
@click.option(
    "--graph-loss",
    type=click.Choice(GRAPH_LOSSES),
    default=None,
    help="Graph loss [default: the method's recipe].",
)
@click.option(
    "--graph-weight", type=float, default=None, help="Graph loss weight [default: the recipe's]."
)
@click.option(
    "--cell-line-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="K cell-line tokens [default: the recipe's; used with --cell-line-embeddings].",
)
@click.option(
    "--cell-line-embeddings",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Table of cell-line embeddings (a name column + values; e.g. scVI 256-d).",
)
@click.option(
    "--cell-line-column",
    default="Metadata_CellLine",
    show_default=True,
    help="Metadata column naming each site's cell line.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON or TOML file of recipe keys over the method's defaults.",
)
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Run length in steps.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Run length in epochs.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Sites per optimizer step, all processes together [default: the recipe's].",
)
@click.option("--crop-size", type=click.IntRange(min=1), default=None, help="Crop side in px.")
@click.option(
    "--accumulate",
    type=click.IntRange(min=1),
    default=None,
    help="Micro-batches per optimizer step (gradient accumulation).",
)
@click.option("--bf16/--no-bf16", default=None, help="bf16 autocast [default: the recipe's].")
@click.option("--seed", type=int, default=None, help="Seed [default: the recipe's].")
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this step (the schedule still plans the whole run); --resume goes on.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=None,
    help="Checkpoint every N steps (and at epoch ends) [default: the recipe's].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="DataLoader processes per training process [default: spare cores, at most 8].",
)
@click.option(
    "--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any recipe key (repeat)."
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="RUN_DIR: checkpoint.pt, metrics.jsonl, model/.",
)
@click.option("--resume", is_flag=True, help="Continue from RUN_DIR/checkpoint.pt if present.")
@click.option("--threads", type=int, default=None, help="Torch threads per process.")
@click.option(
    "--log-every", default=20, show_default=True, help="Progress line every N steps (0: none)."
)
@click.option("--print-config", is_flag=True, help="Print the resolved recipe and exit.")
@click.pass_context
@friendly_errors
def vit(
    ctx,
    method,
    data,
    metadata,
    label_column,
    graph,
    graph_loss,
    graph_weight,
    cell_line_tokens,
    cell_line_embeddings,
    cell_line_column,
    config_file,
    steps,
    epochs,
    batch_size,
    crop_size,
    accumulate,
    bf16,
    seed,
    max_steps,
    checkpoint_every,
    workers,
    settings,
    out,
    resume,
    threads,
    log_every,
    print_config,
):
    """Pretrain the microscopy ViT (WSL, SimCLR, BYOL, MoCo v3 or MAE) on plate folders."""
    explicit = {
        "graph_loss": graph_loss,
        "graph_weight": graph_weight,
        "cell_line_tokens": cell_line_tokens,
        "steps": steps,
        "epochs": epochs,
        "batch_size": batch_size,
        "crop_size": crop_size,
        "accumulate": accumulate,
        "bf16": bf16,
        "seed": seed,
        "max_steps": max_steps,
        "checkpoint_every": checkpoint_every,
        "workers": workers,
    }
    overrides = overrides_from(ctx, settings, explicit)
    if cell_line_tokens is not None and cell_line_embeddings is None:
        raise InputError("--cell-line-tokens needs --cell-line-embeddings TABLE")
    recipe = recipe_for(method, config_file, overrides)
    if print_config:
        click.echo(json.dumps({"method": method, **recipe.to_dict()}, indent=2))
        return
    if not data:
        raise InputError("give at least one --data plate folder")
    if out is None:
        raise InputError("give the run folder with -o/--out RUN_DIR")
    spec = DataSpec(
        tuple(data),
        str(metadata) if metadata else None,
        label_column,
        cell_line_column,
        str(cell_line_embeddings) if cell_line_embeddings else None,
        str(graph) if graph else None,
    )
    rt = setup_runtime(threads)
    try:
        train_vit(
            method,
            recipe,
            spec,
            out,
            resume=resume,
            rt=rt,
            log=click.echo,
            log_every=log_every,
            command=command_line(ctx),
        )
        rt.barrier()  # every rank done with gloo/nccl before any tears the group down
    finally:
        if rt.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
