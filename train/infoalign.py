"""InfoAlign pretraining: GIN + VIB encoder, decoders aligned along context-graph walks.

Loss per batch (paper eq. 3, as the reference computes it): for every feature space m,
the mean over the valid (walk node, feature) entries of α · BCE-with-logits(dec_m(μ), y),
where y is the node's min-max scaled feature vector (NaN entries masked) and α the walk's
cumulative edge-weight product (α = 1 for the molecule itself, so its own Morgan bits are
always a target); plus β · KL(q(z|x) ‖ N(0, I)), computed **analytically** (no sample),
with β = 1e-9. Decoders read μ, not a sampled z, as the released model does.

Runs as one process or under `torchrun` (DDP: gloo on CPU, nccl on CUDA). Every step
re-seeds its walk and dropout generators from (seed, epoch, step, rank), so a run resumed
from `checkpoint.pt` retraces the uninterrupted run exactly.

    python -m train.infoalign build-graph --data-dir DATA --out runs/ia/context_graph.npz
    torchrun --standalone --nproc_per_node=2 -m train.infoalign train --out runs/ia --bf16
    python -m train.infoalign publish runs/ia/model --push org/embedkit-infoalign

This module is the entry point (`run_training` and the click CLI); the pieces live in
`train.loss`, `train.trainer` (the method on the shared loop), `train.loop` (steps,
checkpoints, resume, `metrics.jsonl`), `train.distributed` (DDP runtime) and
`train.dataset` (featurization cache, split).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import click
import torch.distributed as dist

from embedkit.data_dir import DATA_DIR_ENV, resolve_data_dir
from embedkit.io import read_table
from train.context_graph import (
    ContextGraph,
    GraphConfig,
    build_context_graph,
    exclusion_line,
    format_summary,
)
from train.dataset import featurize_cached
from train.distributed import Runtime, setup_runtime
from train.loop import config_options, run
from train.sources import molecule_keys
from train.trainer import MODEL_DIR, TRAIN_HELPS, InfoAlignMethod, ModelOutput, TrainConfig


def prepare_graph(
    graph_path: Path | None, data_dir: str | None, out: Path, rt: Runtime, log=print
) -> tuple[ContextGraph, Path]:
    """Use --graph, else out/context_graph.npz, building it (on rank 0) when missing."""
    path = graph_path or out / "context_graph.npz"
    if not path.exists():
        if graph_path is not None:
            raise click.UsageError(f"--graph {path} does not exist")
        if rt.main:
            graph = build_context_graph(resolve_data_dir(data_dir))
            graph.save(path)
            log(format_summary(graph.summary()))
            log(exclusion_line(graph.meta["eval_annotation_exclusion"]))
        rt.barrier()
    return ContextGraph.load(path), path


def run_training(
    cfg: TrainConfig,
    out: Path,
    graph_path: Path | None = None,
    data_dir: str | None = None,
    resume: bool = False,
    save_dtype: str = "float32",
    threads: int | None = None,
    command: str | None = None,
    card_license: str = "other",
    log=print,
    log_every: int = 0,
) -> Path:
    """The whole recipe: graph → cached graphs → the shared loop → model folder (rank 0)."""
    rt = setup_runtime(threads)
    log = log if rt.main else (lambda _message: None)
    if rt.main:
        out.mkdir(parents=True, exist_ok=True)
    rt.barrier()
    graph, gpath = prepare_graph(graph_path, data_dir, out, rt, log)
    cache = out / "molgraphs.npz"
    if rt.main:
        featurize_cached([str(s) for s in graph.smiles], cache)
    rt.barrier()
    mol_graphs = featurize_cached([str(s) for s in graph.smiles], cache)
    output = ModelOutput(gpath, save_dtype, command, card_license)
    method = InfoAlignMethod(cfg, rt, graph, mol_graphs, output, log)
    log(
        f"training on {len(method.train_ids):,} molecules ({len(method.val_ids):,} held "
        f"out), {rt.world} process(es), {method.steps_per_epoch} steps/epoch"
    )
    run(method, out, resume=resume, log=log, log_every=log_every)
    if rt.world > 1:
        rt.barrier()  # every rank done with its collectives before any tears the group down
        dist.destroy_process_group()
    return out / MODEL_DIR


@click.group()
def cli() -> None:
    """InfoAlign pretraining: build the context graph, train (torchrun for DDP), publish."""


@cli.command("build-graph")
@click.option("--data-dir", default=None, help=f"Data folder [default: ${DATA_DIR_ENV}].")
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Output .npz (a .json summary is written next to it).",
)
@click.option(
    "--exclude-benchmark",
    multiple=True,
    help="Benchmark folder whose molecules stay out of the graph (repeatable).",
)
@click.option(
    "--exclude-molecules",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Table (InChIKey or SMILES column) of molecules to hold out of the graph entirely.",
)
@click.option(
    "--top-expression",
    default=0.01,
    show_default=True,
    help="Fraction of |L1000 z| entries that become molecule–gene edges.",
)
@click.option(
    "--sim-threshold",
    default=0.8,
    show_default=True,
    help="Lowest similarity threshold (Tanimoto for molecules, cosine for profiles).",
)
@click.option(
    "--sim-sparsity",
    default=0.995,
    show_default=True,
    help="Keep at most the top (1 − sparsity) of pairs per feature space.",
)
@click.option(
    "--molecule-similarity",
    type=click.Choice(["tanimoto-scaffold", "cosine"]),
    default="tanimoto-scaffold",
    show_default=True,
    help="Molecule–molecule edges: Tanimoto inside Murcko scaffolds (the reference) or "
    "cosine over all pairs.",
)
@click.option(
    "--exclude-assays",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Another evaluation file (SMILES or InChIKey column) whose molecules get no "
    "target/mechanism edges, besides DATA/benchmarks/** (repeatable).",
)
@click.option(
    "--keep-eval-annotations",
    is_flag=True,
    help="Keep the target and mechanism edges of evaluation-set molecules (leaks labels).",
)
@click.option(
    "--all-compounds/--profiled-compounds-only",
    default=True,
    show_default=True,
    help="Every LINCS compound and Repurposing Hub sample as a node, or only those met in "
    "a profile, target or benchmark file.",
)
@click.option("--moa/--no-moa", default=True, show_default=True, help="Mechanism nodes.")
@click.option(
    "--gene-features/--no-gene-features",
    default=True,
    show_default=True,
    help="ORF over-expression L1000 signatures on gene nodes.",
)
@click.option(
    "--profile-fraction",
    type=click.FloatRange(0.0, 1.0),
    default=1.0,
    show_default=True,
    help="Keep this seeded share of the profile and gene-signature nodes (learning curves).",
)
def build_graph_cmd(
    data_dir,
    out_path,
    exclude_benchmark,
    exclude_molecules,
    top_expression,
    sim_threshold,
    sim_sparsity,
    molecule_similarity,
    exclude_assays,
    keep_eval_annotations,
    all_compounds,
    moa,
    gene_features,
    profile_fraction,
) -> None:
    """Build the context graph from a data folder and print its node/edge counts.

    Molecules of every evaluation file (DATA/benchmarks/** and --exclude-assays) keep their
    structure but lose their target and mechanism edges, unless --keep-eval-annotations.
    """
    held_out = molecule_keys(read_table(exclude_molecules)) if exclude_molecules else set()
    config = GraphConfig(
        exclude_molecules=tuple(sorted(held_out)),
        sim_threshold=sim_threshold,
        sim_sparsity=sim_sparsity,
        molecule_similarity=molecule_similarity,
        expression_top_fraction=top_expression,
        exclude_benchmarks=tuple(exclude_benchmark),
        exclude_assays=tuple(str(p.resolve()) for p in exclude_assays),
        keep_eval_annotations=keep_eval_annotations,
        all_compounds=all_compounds,
        moa_edges=moa,
        gene_features=gene_features,
        profile_fraction=profile_fraction,
    )
    tick = time.perf_counter()
    graph = build_context_graph(data_dir, config)
    graph.save(out_path)
    click.echo(format_summary(graph.summary()))
    click.echo(exclusion_line(graph.meta["eval_annotation_exclusion"]))
    click.echo(f"wrote {out_path} in {time.perf_counter() - tick:.1f}s")


@cli.command("train")
@click.option(
    "--graph",
    "graph_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Context graph .npz [default: OUT/context_graph.npz, built if missing].",
)
@click.option(
    "--data-dir", default=None, help=f"Data folder for building [default: ${DATA_DIR_ENV}]."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder: checkpoint.pt, metrics.jsonl, model/.",
)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt if present.")
@click.option(
    "--save-dtype",
    type=click.Choice(["float32", "float16", "bfloat16"]),
    default="float32",
    show_default=True,
    help="Precision of model.safetensors.",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Torch threads per process [default: cores / processes].",
)
@click.option(
    "--license",
    "card_license",
    default="other",
    show_default=True,
    help="Licence written into the model card's front matter.",
)
@click.option(
    "--log-every",
    default=10,
    show_default=True,
    help="Progress line every N steps (0: per epoch only).",
)
@click.option("--push", "push_repo", default=None, help="Upload model/ to this Hub repo id.")
@click.option("--dry-run", is_flag=True, help="With --push: write and check the folder only.")
@config_options(TrainConfig, TRAIN_HELPS)
def train_cmd(
    graph_path,
    data_dir,
    out,
    resume,
    save_dtype,
    threads,
    card_license,
    log_every,
    push_repo,
    dry_run,
    **recipe,
) -> None:
    """Pretrain the encoder (run under torchrun for DDP) and write a Hub-layout folder."""
    cfg = TrainConfig(**recipe)
    command = " ".join([_launcher(), *(shlex.quote(a) for a in sys.argv[1:])])
    folder = run_training(
        cfg,
        out,
        graph_path,
        data_dir,
        resume,
        save_dtype,
        threads,
        command,
        card_license,
        log=lambda m: click.echo(m),
        log_every=log_every,
    )
    if push_repo and int(os.environ.get("RANK", "0")) == 0:
        from train.publish import publish

        publish(folder, push_repo, push=not dry_run, log=lambda m: click.echo(m))


def _launcher() -> str:
    world = os.environ.get("LOCAL_WORLD_SIZE")
    return (
        f"torchrun --nproc_per_node={world} -m train.infoalign"
        if world
        else ("python -m train.infoalign")
    )


@cli.command("publish")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--push", "push_repo", default=None, help="Hub repo id to upload to.")
@click.option("--dry-run", is_flag=True, help="Check the folder and list what would be sent.")
@click.option("--private", is_flag=True, help="Create the repo as private.")
def publish_cmd(folder, push_repo, dry_run, private) -> None:
    """Check a model folder and upload it with huggingface_hub (--push REPO_ID)."""
    from train.publish import publish

    publish(
        folder,
        push_repo,
        push=bool(push_repo) and not dry_run,
        private=private,
        log=lambda m: click.echo(m),
    )


if __name__ == "__main__":
    cli()
