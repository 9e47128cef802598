"""Do the five pretraining methods, the graph loss and cell-line tokens help on a de novo
cell line? Few-shot linear probes on a SIMULATED screen grounded in real priors.

Everything below runs the user's commands, in this order (the JSON records each one):

1. `embedkit graph build` on the real STRING pair list and Hetionet PPI
   (`DATA/kg/gene_gene_StringDB.txt`, `DATA/kg/hetionet_protein_interactions.txt.gz`) over
   every gene they name, then `embedkit datasets synth-plate --graph … --genes N
   --cell-line-embeddings DATA/cell_lines/scvi_cell_line_embeddings_256.parquet` for the
   lines HUVEC, RPE, HEPG2 (pretraining) and U2OS (held out: the de novo line). The graph
   picks the screen's N real genes and shapes their SIMULATED phenotypes; the real scVI
   embeddings shape each line's SIMULATED morphology and response. Then `embedkit graph
   build` again on the screen's own `perturbations.csv`: the graph the graph loss uses.
2. `python -m train vit --method M` on the three pretraining lines, for each of WSL,
   SimCLR, BYOL, MoCo v3 and MAE, and `--variants` (+ graph loss, + cell-line tokens, +
   both). CPU scale: a ViT of depth 3 and width 192 (3 heads, patch 16) on 64 px crops,
   100 steps of 64 sites, 1 compute thread + 1 loader worker; the MAE decoder 128 wide x 2
   deep (the recipe's 256 x 8 would cost five times the encoder here); everything else is
   each method's recipe (train/configs). 48 px crops of the 64 px fields were tried first:
   resampling removes much of the simulated signal (pixel statistics of the views fall
   from 26 % to 9 % top-1), so the crop is the whole field.
3. Frozen features of every U2OS site (the full 64 px field resized to the crop size,
   instance-normalized, as `embed-images --crop-mode full`; models with cell-line tokens
   get U2OS's row of the table, a line they never saw), standardized per plate on its
   control sites. A logistic regression per split: k = 1 or 5 sites of each perturbation
   to train on, the rest to test, `--probe-seeds` random splits: perturbation top-1 /
   top-5 accuracy. The baseline is a RANDOMLY INITIALIZED encoder of the same
   architecture (`--random-seeds` of them), probed the same way in the same run. Two
   references that are not encoders say how much signal the sites hold: per-channel pixel
   statistics of the raw field, and of the instance-normalized field the encoders see.
4. Proposition 3.1 (`embedkit.graph.evidence`): on the per-perturbation mean features, the
   ratio of the mean distance between graph neighbours to that between non-neighbours, and
   the mean distance of a site to its perturbation's mean (relative to the overall spread),
   on U2OS and on one pretraining plate, with and without the graph loss; on the
   control-standardized features of the probe and on the L2-normalized features as they
   come (`unit`: the geometry the graph losses act on).
5. Performance: sites/s of every run end to end (metrics.jsonl, first steps left out), peak
   RSS of each training process (ru_maxrss; its loader worker included when larger), and in
   this process for each method the DataLoader alone vs the training step alone (one
   batch held in memory) in bf16 autocast and fp32: is loading the bottleneck?

All images, phenotypes and responses are SIMULATED (docs/synthetic.md); only the gene
graph and the cell-line embeddings are real. Nothing here is a claim about real
microscopy. Timings are of a 2-core CPU that other jobs may share: read them as such.

    python benchmarks/bench_pretrain_synthetic.py --work runs/bench   # ~25 min on 2 shared cores
    python benchmarks/bench_pretrain_synthetic.py --quick         # smoke test, ~3 min
    python benchmarks/bench_pretrain_synthetic.py --work runs/bench --probe-only \\
        --zoo-model vit-s16-cellpaint-demo --out probe.json   # zoo models on the same screen
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `train/` runs from a checkout (it is not in the wheel)
    sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
PRETRAIN_LINES = ("HUVEC", "RPE", "HEPG2")
DE_NOVO = "U2OS"
METHODS = ("wsl", "simclr", "byol", "mocov3", "mae")
LABEL = "Metadata_Gene"
NEGCON = "negcon"
TABLE = "cell_lines/scvi_cell_line_embeddings_256.parquet"
KG = ("kg/gene_gene_StringDB.txt", "kg/hetionet_protein_interactions.txt.gz")


def default_data_dir() -> Path:
    env = os.environ.get("EMBEDKIT_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help="folder with kg/ and cell_lines/ [default: $EMBEDKIT_DATA_DIR, else ../shared/data]",
    )
    p.add_argument("--work", type=Path, default=None, help="keep the screen and runs here")
    p.add_argument("--genes", type=int, default=120)
    p.add_argument("--wells", type=int, default=160, help="wells per plate (1/4 controls)")
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--sites", type=int, default=4)
    p.add_argument("--size", type=int, default=64, help="simulated field side, px")
    p.add_argument("--crop-size", type=int, default=64)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--embed-dim", type=int, default=192)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument(
        "--mae-decoder",
        default="128,2,4",
        help="MAE decoder width,depth,heads (the recipe's 256,8,16 costs 5x the encoder here)",
    )
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument(
        "--variants",
        default="wsl+graph,wsl+tokens,wsl+graph+tokens,simclr+graph,simclr+tokens",
        help="extra runs: METHOD+graph, METHOD+tokens, METHOD+graph+tokens (comma-separated)",
    )
    p.add_argument(
        "--graph-weight",
        type=float,
        default=0.1,
        help="graph loss weight of the + graph runs (the loss kind is each recipe's)",
    )
    p.add_argument("--probe-seeds", type=int, default=5)
    p.add_argument("--shots", default="1,5")
    p.add_argument("--random-seeds", type=int, default=2)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of each training run and of this process (1 compute thread + 1 "
        "loader worker fill 2 cores)",
    )
    p.add_argument(
        "--probe-only",
        action="store_true",
        help="reuse the screen in --work: baselines, references and --zoo-model probes only",
    )
    p.add_argument("--perf-steps", type=int, default=6, help="timed steps per method/precision")
    p.add_argument("--fp32-run-steps", type=int, default=40, help="fp32 end-to-end SimCLR run")
    p.add_argument("--zoo-model", action="append", default=[], help="also probe a zoo model")
    p.add_argument("--quick", action="store_true", help="a small smoke test")
    p.add_argument("--out", type=Path, default=RESULTS / "pretrain_synthetic.json")
    args = p.parse_args(argv)
    if args.quick:
        args.genes, args.wells, args.batches, args.sites = 24, 32, 2, 4
        args.steps, args.batch_size, args.depth = 10, 32, 2
        args.probe_seeds, args.random_seeds, args.perf_steps = 2, 1, 2
        args.variants = "wsl+graph+tokens"
        args.fp32_run_steps = 6
    return args


# -- running the user's commands ------------------------------------------------------------


# A small process between this one and the command: the peak RSS that wait4 reports for a
# child includes what its parent held when it forked (Linux keeps the pre-exec high-water
# mark), so the command is started from this launcher, whose own footprint is small.
LAUNCHER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(code)"
)


def run_command(cmd: list[str], log: Path) -> dict:
    """Run `cmd` (output to `log`), return wall seconds and its peak RSS (ru_maxrss of the
    command's process tree: the largest of the process and its loader workers)."""
    rss = log.with_suffix(".rss")
    start = time.perf_counter()
    with open(log, "w") as handle:
        code = subprocess.call(
            [sys.executable, "-c", LAUNCHER, str(rss), *cmd],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    wall = time.perf_counter() - start
    if code:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"{shlex.join(cmd)} failed ({code}):\n{tail}")
    return {"seconds": round(wall, 1), "peak_rss_mb": round(int(rss.read_text()) / 1024, 1)}


def embedkit_cli() -> list[str]:
    exe = Path(sys.executable).with_name("embedkit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "embedkit.cli"]


def show(cmd: list[str], work: Path) -> str:
    """The command as a user would type it (work-folder paths made relative)."""
    text = shlex.join(["embedkit", *cmd[1:]] if cmd[0].endswith("embedkit") else cmd)
    text = text.replace(sys.executable, "python")
    return text.replace(str(work) + "/", "")


# -- data -----------------------------------------------------------------------------------


def make_world(args, work: Path, data: Path, result: dict) -> dict:
    """Graph over every gene, the SIMULATED screen, the screen's own graph."""
    cli = embedkit_cli()
    string, hetionet = (str(data / k) for k in KG)
    steps = {}
    s = pd.read_csv(string)
    h = pd.read_csv(hetionet, sep="\t", usecols=["source_symbol", "target_symbol"])
    genes = sorted(
        set(s.iloc[:, 0]) | set(s.iloc[:, 1]) | set(h.source_symbol) | set(h.target_symbol)
    )
    pd.DataFrame({"perturbation": genes, "gene": genes}).to_csv(work / "all_genes.csv", index=False)
    full = [
        *cli,
        "graph",
        "build",
        "--perturbations",
        str(work / "all_genes.csv"),
        "--string",
        string,
        "--hetionet",
        hetionet,
        "-o",
        str(work / "all_genes.npz"),
    ]
    steps["graph_all_genes"] = {"command": show(full, work), **run_command(full, work / "g1.log")}
    synth = [
        *cli,
        "datasets",
        "synth-plate",
        str(work / "synth"),
        "--cell-lines",
        ",".join([*PRETRAIN_LINES, DE_NOVO]),
        "--graph",
        str(work / "all_genes.npz"),
        "--genes",
        str(args.genes),
        "--cell-line-embeddings",
        str(data / TABLE),
        "--wells",
        str(args.wells),
        "--batches",
        str(args.batches),
        "--plates",
        "1",
        "--sites",
        str(args.sites),
        "--size",
        str(args.size),
        "--seed",
        "0",
    ]
    steps["synth_plate"] = {"command": show(synth, work), **run_command(synth, work / "s.log")}
    steps["synth_plate"]["output"] = (work / "s.log").read_text().strip().splitlines()[-1]
    graph = [
        *cli,
        "graph",
        "build",
        "--perturbations",
        str(work / "synth/perturbations.csv"),
        "--string",
        string,
        "--hetionet",
        hetionet,
        "-o",
        str(work / "graph.npz"),
    ]
    steps["graph_screen"] = {"command": show(graph, work), **run_command(graph, work / "g2.log")}
    steps["graph_screen"]["output"] = (work / "g2.log").read_text().strip().splitlines()[-1]
    meta = pd.read_csv(work / "synth/metadata.csv")
    meta[meta.Metadata_CellLine != DE_NOVO].to_csv(work / "pretrain_metadata.csv", index=False)
    result["data"] = steps
    return {"meta": meta}


def compare_graphs(work: Path) -> dict:
    """The graph that shaped the phenotypes (the screen's gene_graph.csv) vs the one
    `graph build` makes from the same sources for the screen's genes."""
    from embedkit.graph import PerturbationGraph

    g = PerturbationGraph.load(work / "graph.npz")
    shaped = pd.read_csv(work / "synth/gene_graph.csv")
    a, b = shaped.columns[:2]
    truth = {frozenset(p) for p in zip(shaped[a], shaped[b], strict=True)}
    coo = g.adjacency.tocoo()
    names = g.perturbations
    built = {
        frozenset((names[i], names[j])) for i, j in zip(coo.row, coo.col, strict=True) if i < j
    }
    info = g.info()
    return {
        "screen_graph_nodes": len(names),
        "screen_graph_edges": len(built),
        "edges_that_shaped_the_phenotypes": len(truth),
        "shared_edges": len(truth & built),
        **{k: info[k] for k in ("degree_min", "degree_median", "degree_mean", "degree_max")},
        "weight_median": round(info["weight_median"], 4),
        "isolated": info["isolated"],
    }


def read_fields(meta: pd.DataFrame, synth: Path) -> np.ndarray:
    """Every site's 6 channels as float32 (N, 6, H, W) in [0, 1]."""
    from embedkit.images.reading import read_site

    fields = []
    for row in meta.itertuples():
        base = synth / row.Metadata_Plate / f"{row.Metadata_Well}_s{row.Metadata_Site}"
        fields.append(read_site([f"{base}_w{c}.png" for c in range(1, 7)]))
    return np.stack(fields)


class Sites:
    """A set of sites held in memory (read once), and their crops per crop size and
    channel plan: the full field resized to the crop, instance-normalized, as
    `embed-images --crop-mode full` does."""

    def __init__(self, meta: pd.DataFrame, synth: Path):
        self.meta = meta.reset_index(drop=True)
        self.fields = read_fields(self.meta, synth)
        self.cache: dict = {}

    def crops(self, crop: int, sources: list[int]):
        import torch
        import torch.nn.functional as F

        from embedkit.images.preprocess import instance_normalize

        key = (crop, tuple(sources))
        if key not in self.cache:
            x = torch.from_numpy(self.fields[:, sources])
            if x.shape[-1] != crop or x.shape[-2] != crop:
                x = F.interpolate(x, size=(crop, crop), mode="area")
            self.cache[key] = instance_normalize(x).contiguous()
        return self.cache[key]


def reference_features(fields: np.ndarray, normalized: bool) -> np.ndarray:
    """Pixel statistics per channel (not an encoder): of the raw 8-bit field (mean, sd, p90,
    foreground share and foreground mean above 30/255: intensity), or of the
    instance-normalized field (p10, p50, p75, p90, p99, share above 1 and 2 sd, mean
    absolute horizontal gradient: what is left once each channel's level and scale, which
    the encoders never see, are divided out)."""
    n, c = fields.shape[:2]
    x = fields.reshape(n, c, -1).astype(np.float64)
    if not normalized:
        x = x * 255
        fg = x > 30
        share = fg.mean(2)
        fg_mean = np.where(fg.any(2), (x * fg).sum(2) / np.maximum(fg.sum(2), 1), 0.0)
        p90 = np.percentile(x, 90, axis=2)
        return np.concatenate([x.mean(2), x.std(2), p90, share, fg_mean], axis=1)
    mu, sd = x.mean(2, keepdims=True), x.std(2, keepdims=True)
    z = np.where(sd > 1e-6, (x - mu) / np.maximum(sd, 1e-6), 0.0)
    q = np.percentile(z, [10, 50, 75, 90, 99], axis=2).transpose(1, 0, 2).reshape(n, -1)
    grad = np.abs(np.diff(z.reshape(fields.shape), axis=-1)).mean((-2, -1))
    return np.concatenate([q, (z > 1).mean(2), (z > 2).mean(2), grad], axis=1)


# -- features and probes --------------------------------------------------------------------


def encode(model, sites: Sites, line: str | None) -> np.ndarray:
    """Frozen features of every site (fp32), with the line's tokens when the model has them."""
    import torch

    from embedkit.images.channels import plan_channels

    plan = plan_channels(model.channels, [f"w{i + 1}" for i in range(6)], model.channel_aliases)
    sources = [int(s[1:]) - 1 for s in plan.sources]
    crops = sites.crops(model.crop_size, sources)
    vector = model.cell_line_vector(line) if model.encoder.config.cell_line_tokens else None
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(crops), 256):
            chunk = crops[i : i + 256]
            lines = None if vector is None else vector[None].expand(len(chunk), -1).float()
            out.append(model.encoder(chunk, lines).float())
    return torch.cat(out).numpy()


def standardize_on_controls(x: np.ndarray, meta: pd.DataFrame) -> np.ndarray:
    """Per plate: centre and scale every feature by the plate's control sites."""
    x = x.astype(np.float64).copy()
    for _, idx in meta.groupby("Metadata_Plate").indices.items():
        ctrl = idx[meta.Metadata_PertType.to_numpy()[idx] == NEGCON]
        mu, sd = x[ctrl].mean(0), x[ctrl].std(0)
        x[idx] = (x[idx] - mu) / np.maximum(sd, 1e-6 * max(sd.mean(), 1e-12))
    return x


def probe(x: np.ndarray, labels: np.ndarray, shots: list[int], seeds: int) -> dict:
    """Few-shot logistic regression: k sites per perturbation to train on, the rest to test."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    out = {}
    for k in shots:
        top1, top5 = [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            train, test = [], []
            for idx in by_class:
                perm = rng.permutation(idx)
                train.extend(perm[:k])
                test.extend(perm[k:])
            train, test = np.array(train), np.array(test)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf = LogisticRegression(max_iter=1000, C=1.0).fit(x[train], labels[train])
            proba = clf.predict_proba(x[test])
            ranked = clf.classes_[np.argsort(-proba, axis=1)[:, :5]]
            truth = labels[test][:, None]
            top1.append(float((ranked[:, 0] == truth[:, 0]).mean()))
            top5.append(float((ranked == truth).any(axis=1).mean()))
        out[f"k{k}"] = {
            "top1": round(float(np.mean(top1)), 4),
            "top1_sd": round(float(np.std(top1)), 4),
            "top5": round(float(np.mean(top5)), 4),
            "top5_sd": round(float(np.std(top5)), 4),
            "test_sites": int(len(labels) - k * len(classes)),
        }
    out["classes"] = int(len(classes))
    out["chance_top1"] = round(1 / len(classes), 4)
    return out


def proposition_31(x: np.ndarray, labels: np.ndarray, graph) -> dict:
    from embedkit.graph.evidence import intra_perturbation_distance, neighbor_distance_ratio

    names = list(graph.perturbations)
    index = {n: i for i, n in enumerate(names)}
    means = np.zeros((len(names), x.shape[1]))
    present = np.zeros(len(names), bool)
    for name in np.unique(labels):
        if name in index:
            means[index[name]] = x[labels == name].mean(0)
            present[index[name]] = True
    keep = np.flatnonzero(present)
    adj = graph.adjacency[keep][:, keep]
    return {
        "neighbour_to_non_neighbour_distance": round(neighbor_distance_ratio(means[keep], adj), 4),
        "intra_perturbation_distance_relative": round(
            intra_perturbation_distance(x, labels, relative=True), 4
        ),
    }


def evaluate(model, probe_sites: Sites, train_sites: Sites, graph, args) -> dict:
    """Probe and Proposition 3.1 measures of a model (an `ImageModel`) or of a function
    fields → features (the pixel-statistics references)."""
    shots = [int(k) for k in args.shots.split(",")]
    out = {}
    for name, sites, line in (
        ("u2os", probe_sites, DE_NOVO),
        ("pretrain_plate", train_sites, None),
    ):
        meta = sites.meta
        if callable(model) and not hasattr(model, "encoder"):
            x = model(sites.fields)
        else:
            x = encode(model, sites, line or str(meta.Metadata_CellLine.iloc[0]))
        treated = meta.Metadata_PertType.to_numpy() != NEGCON
        labels = meta[LABEL].to_numpy()[treated].astype(str)
        # the geometry the graph losses act on: L2-normalized features as they come
        unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        out[f"prop31_{name}_unit_features"] = proposition_31(unit[treated], labels, graph)
        x = standardize_on_controls(x, meta)
        if name == "u2os":
            out["probe"] = probe(x[treated], labels, shots, args.probe_seeds)
        out[f"prop31_{name}"] = proposition_31(x[treated], labels, graph)
    return out


# -- training -------------------------------------------------------------------------------


def recipe_settings(args, method: str) -> dict:
    """The recipe keys this benchmark changes (the rest are train/configs/METHOD.json)."""
    out = {
        "depth": args.depth,
        "embed_dim": args.embed_dim,
        "num_heads": args.heads,
        "patch_size": args.patch_size,
    }
    if method == "mae":
        dim, depth, heads = (int(v) for v in args.mae_decoder.split(","))
        out |= {"decoder_dim": dim, "decoder_depth": depth, "decoder_heads": heads}
    return out


def recipe_overrides(args, method: str) -> list[str]:
    return [x for k, v in recipe_settings(args, method).items() for x in ("--set", f"{k}={v}")]


def train_command(
    args,
    work: Path,
    data: Path,
    method: str,
    graph: bool,
    tokens: bool,
    out: Path,
    steps: int,
    bf16: bool = True,
) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "train",
        "vit",
        "--method",
        method,
        "--data",
        str(work / "synth"),
        "--metadata",
        str(work / "pretrain_metadata.csv"),
        "--label-column",
        LABEL,
        "--steps",
        str(steps),
        "--batch-size",
        str(args.batch_size),
        "--crop-size",
        str(args.crop_size),
        *recipe_overrides(args, method),
        "--checkpoint-every",
        str(10 * steps),
        "--log-every",
        "0",
        "--threads",
        str(args.threads),
        "-o",
        str(out),
    ]
    if graph:
        cmd += ["--graph", str(work / "graph.npz"), "--graph-weight", f"{args.graph_weight:g}"]
    if tokens:
        cmd += ["--cell-line-embeddings", str(data / TABLE)]
    if not bf16:
        cmd += ["--no-bf16"]
    return cmd


def throughput(run: Path, skip: int) -> dict:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x]
    steps = [r for r in records if "seconds" in r or "epoch_seconds" in r]
    seconds = [r.get("seconds", r.get("epoch_seconds")) for r in steps]
    rates = [r["images_per_second"] for r in steps]
    items = [s * q for s, q in zip(seconds, rates, strict=True)]
    kept = slice(skip, None) if len(steps) > skip else slice(None)
    first = {k: v for k, v in records[0].items() if k.endswith("loss")}
    last = {k: v for k, v in records[-1].items() if k.endswith("loss")}
    return {
        "sites_per_s": round(sum(items[kept]) / max(sum(seconds[kept]), 1e-9), 1),
        "train_seconds": round(sum(seconds), 1),
        "first_losses": {k: round(v, 4) for k, v in first.items()},
        "last_losses": {k: round(v, 4) for k, v in last.items()},
    }


def random_model(args, data: Path, method: str, tokens: bool, seed: int):
    """The same architecture as the run's encoder, randomly initialized (as the run starts)."""
    import torch

    from train.vit import recipe_for
    from train.vit_common import build_image_model, cell_line_vectors, channel_names

    recipe = recipe_for(
        method,
        None,
        {**recipe_settings(args, method), "crop_size": args.crop_size, "steps": 1},
    )
    channels, aliases = channel_names(recipe.channels)
    table, dim = None, 0
    if tokens:
        table, vectors = cell_line_vectors(str(data / TABLE), list(PRETRAIN_LINES), "")
        dim = vectors.shape[1]
    torch.manual_seed(seed)
    return build_image_model(recipe, channels, aliases, table, dim)


def random_twin(model):
    """A randomly initialized model of `model`'s architecture, channels and cell lines."""
    from embedkit.images.model import ImageModel

    return ImageModel(
        model.encoder.config,
        model.channels,
        model.channel_aliases,
        model.crop_size,
        model.normalization,
        model.cell_lines,
    )


# -- performance in this process -------------------------------------------------------------


def perf_method(args, work: Path, method: str) -> dict:
    """DataLoader alone vs the training step alone (bf16 autocast, fp32) for one method."""
    import torch

    from train.distributed import Runtime
    from train.loop import Step, autocast
    from train.vit import method_class, recipe_for
    from train.vit_common import DataSpec, channel_names, collect_sites

    rt = Runtime(0, 1, torch.device("cpu"))
    overrides = {
        **recipe_settings(args, method),
        "crop_size": args.crop_size,
        "steps": args.steps,
        "batch_size": args.batch_size,
    }
    recipe = recipe_for(method, None, overrides)
    spec = DataSpec((str(work / "synth"),), str(work / "pretrain_metadata.csv"), LABEL)
    channels, aliases = channel_names(recipe.channels)
    cls = method_class(method)
    sites = collect_sites(spec, channels, aliases, True, False, lambda _m: None)
    m = cls(recipe, rt, sites, spec, channels=(channels, aliases), log=lambda _m: None)
    out = {"views": m.views, "loader_workers": m.workers, "batch_sites": m.micro}
    n = max(2, args.perf_steps)
    batches = m.batches(0, 0)
    first = next(batches)  # worker start-up
    t0 = time.perf_counter()
    for _ in range(n):
        next(batches)
    out["loader_sites_per_s"] = round(n * m.micro / (time.perf_counter() - t0), 1)
    m.loader = None  # let its worker go
    for bf16 in (True, False):
        torch.manual_seed(0)
        module = m.build()
        optimizer = m.optimizer(module)
        module.train()
        times = []
        for i in range(n + 2):
            step = Step(i, 0, i, torch.Generator().manual_seed(i))
            t = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast(rt, bf16):
                losses = m.train_step(module, first, step)
            losses["loss"].backward()
            optimizer.step()
            m.after_step(module, step)
            times.append(time.perf_counter() - t)
        rate = m.micro * n / sum(times[2:])  # two steps warm up
        out["step_sites_per_s_" + ("bf16" if bf16 else "fp32")] = round(rate, 1)
        del module, optimizer
    out["loader_over_step_bf16"] = round(
        out["loader_sites_per_s"] / out["step_sites_per_s_bf16"], 2
    )
    return out


# -- report ---------------------------------------------------------------------------------


def write(result: dict, path: Path) -> None:
    from embedkit.io import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")


def fmt(p: dict, k: str, key: str) -> str:
    v = p[k]
    return f"{100 * v[key]:.1f} ± {100 * v[key + '_sd']:.1f}"


def table(result: dict) -> str:
    rows = [
        "| encoder (SIMULATED screen) | k=1 top-1 % | k=1 top-5 % | k=5 top-1 % | k=5 top-5 % "
        "| nbr/non-nbr U2OS | intra U2OS | nbr/non-nbr U2OS, unit | nbr/non-nbr train plate "
        "| nbr/non-nbr train plate, unit | sites/s e2e | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result["encoders"].items():
        p = r["probe"]
        t = r.get("training", {})
        ratio = "neighbour_to_non_neighbour_distance"
        rows.append(
            f"| {name} | {fmt(p, 'k1', 'top1')} | {fmt(p, 'k1', 'top5')} | "
            f"{fmt(p, 'k5', 'top1')} | {fmt(p, 'k5', 'top5')} | "
            f"{r['prop31_u2os'][ratio]:.4f} | "
            f"{r['prop31_u2os']['intra_perturbation_distance_relative']:.4f} | "
            f"{r['prop31_u2os_unit_features'][ratio]:.4f} | "
            f"{r['prop31_pretrain_plate'][ratio]:.4f} | "
            f"{r['prop31_pretrain_plate_unit_features'][ratio]:.4f} | "
            f"{t.get('sites_per_s', '')} | {t.get('peak_rss_mb', '')} |"
        )
    return "\n".join(rows)


def perf_table(perf: dict) -> str:
    rows = [
        "| method | views | loader alone sites/s | step alone bf16 sites/s | step alone fp32 "
        "sites/s | loader / step (bf16) |",
        "|---|---|---|---|---|---|",
    ]
    for m, p in perf.items():
        rows.append(
            f"| {m} | {p['views']} | {p['loader_sites_per_s']} | {p['step_sites_per_s_bf16']} | "
            f"{p['step_sites_per_s_fp32']} | {p['loader_over_step_bf16']} |"
        )
    return "\n".join(rows)


def parse_variant(text: str) -> tuple[str, bool, bool]:
    method, *extras = text.strip().split("+")
    unknown = set(extras) - {"graph", "tokens"}
    if method not in METHODS or unknown:
        raise SystemExit(f"--variants: {text!r} is not METHOD[+graph][+tokens]")
    return method, "graph" in extras, "tokens" in extras


def run_name(method: str, graph: bool, tokens: bool) -> str:
    return method + (" + graph" if graph else "") + (" + tokens" if tokens else "")


def merge_seeds(per_seed: list[dict]) -> dict:
    """Random inits: the probe's mean over inits (sd over inits); each seed kept."""
    merged = per_seed[0]
    if len(per_seed) == 1:
        return merged
    for k in merged["probe"]:
        if k.startswith("k"):
            for key in ("top1", "top5"):
                vals = [s["probe"][k][key] for s in per_seed]
                merged["probe"][k][key] = round(float(np.mean(vals)), 4)
                merged["probe"][k][key + "_sd"] = round(float(np.std(vals)), 4)
    for part in [k for k in merged if k.startswith("prop31_")]:
        for key in merged[part]:
            merged[part][key] = round(float(np.mean([s[part][key] for s in per_seed])), 4)
    merged["per_seed"] = [{k: v for k, v in s.items() if k != "per_seed"} for s in per_seed]
    merged["sd_is_over"] = "random initializations (each one's split spread is in per_seed)"
    return merged


def main(argv=None) -> int:
    args = parse_args(argv)
    data = args.data_dir
    missing = [x for x in (*KG, TABLE) if not (data / x).is_file()]
    if missing:
        print(
            f"bench_pretrain_synthetic: the real inputs are not under {data} (missing "
            f"{', '.join(missing)}); pass --data-dir DIR or set $EMBEDKIT_DATA_DIR to a folder "
            "with kg/ (STRING, Hetionet) and cell_lines/ (scVI embeddings)",
            file=sys.stderr,
        )
        return 2
    import torch

    from embedkit.api import load
    from embedkit.graph import PerturbationGraph
    from embedkit.images.model import ImageModel
    from train.vit import recipe_for

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    tmp = None
    if args.probe_only:
        if args.work is None or not (args.work / "synth" / "metadata.csv").is_file():
            print("--probe-only needs --work DIR holding an earlier run's screen", file=sys.stderr)
            return 2
        work = args.work.resolve()
    elif args.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_pretrain_")
        work = Path(tmp.name)
    else:
        work = args.work.resolve()
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    methods = [m for m in args.methods.split(",") if m]
    variants = [parse_variant(v) for v in args.variants.split(",") if v.strip()]
    result: dict = {
        "simulated": True,
        "about": "SIMULATED images (embedkit datasets synth-plate); real inputs: the STRING "
        "pair list and Hetionet PPI (gene graph) and the scVI cell-line embeddings. Not a "
        "claim about real microscopy.",
        "command": "python benchmarks/bench_pretrain_synthetic.py "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "note": "a 2-core CPU shared with other engineers' jobs: timings are noisy",
        },
        "lines": {"pretraining": list(PRETRAIN_LINES), "held_out": DE_NOVO},
    }
    print(f"work folder: {work}", flush=True)
    previous: dict = {}
    if args.probe_only:  # keep what the earlier run measured; probe its models again
        if args.out.is_file():
            previous = json.loads(args.out.read_text())
        for key in ("command", "settings", "data", "performance", "seconds"):
            if key in previous:
                result[key] = previous[key]
        result["reprobed"] = {"command": result.pop("command", ""), "at": time.ctime()}
        if "command" in previous:
            result["command"] = previous["command"]
        meta = pd.read_csv(work / "synth" / "metadata.csv")
    else:
        meta = make_world(args, work, data, result)["meta"]
        print(json.dumps(result["data"], indent=1), flush=True)
    result["graph"] = compare_graphs(work)
    result["screen"] = {
        "sites": int(len(meta)),
        "pretraining_sites": int((meta.Metadata_CellLine != DE_NOVO).sum()),
        "u2os_sites": int((meta.Metadata_CellLine == DE_NOVO).sum()),
        "u2os_treated_sites_per_gene": int(
            meta[(meta.Metadata_CellLine == DE_NOVO) & (meta.Metadata_PertType != NEGCON)]
            .groupby(LABEL)
            .size()
            .min()
        ),
    }
    write(result, args.out)
    graph = PerturbationGraph.load(work / "graph.npz")
    u2os = Sites(meta[meta.Metadata_CellLine == DE_NOVO], work / "synth")
    pretrain = meta[meta.Metadata_CellLine == PRETRAIN_LINES[0]]
    first_plate = sorted(pretrain.Metadata_Plate.unique())[0]
    plate = Sites(meta[meta.Metadata_Plate == first_plate], work / "synth")
    result["pretrain_plate_for_prop31"] = first_plate
    result["encoders"] = {}

    def record(name: str, evaluated: dict) -> None:
        result["encoders"][name] = evaluated
        extra = json.dumps(evaluated.get("training", {}))
        print(f"{name}: {json.dumps(evaluated['probe'])} {extra}", flush=True)
        write(result, args.out)

    # references (not encoders) and the baselines: random encoders of each architecture
    for name, normalized in (
        ("reference: pixel statistics, raw intensities (not an encoder)", False),
        ("reference: pixel statistics after instance normalization (not an encoder)", True),
    ):
        record(
            name,
            evaluate(lambda f, n=normalized: reference_features(f, n), u2os, plate, graph, args),
        )
    archs = {("random init", methods[0], False)}
    for method, _, tokens in variants:
        if tokens:
            k = recipe_for(method).cell_line_tokens
            archs.add((f"random init + {k} cell-line token(s)", method, True))
    for name, method, tokens in sorted(archs, key=lambda a: (a[2], a[0])):
        per_seed = [
            evaluate(random_model(args, data, method, tokens, seed), u2os, plate, graph, args)
            for seed in range(args.random_seeds)
        ]
        record(name, merge_seeds(per_seed))

    if args.probe_only:  # the earlier run's models, probed again
        for name, earlier in previous.get("encoders", {}).items():
            folder = work / "runs" / name.replace(" + ", "+") / "model"
            if "training" in earlier and folder.is_dir():
                model = ImageModel.from_pretrained(folder)
                evaluated = evaluate(model, u2os, plate, graph, args)
                record(name, {**evaluated, "training": earlier["training"]})
    else:  # the pretraining runs
        runs = [(m, False, False) for m in methods] + variants
        for method, graph_on, tokens in runs:
            name = run_name(method, graph_on, tokens)
            out = work / "runs" / name.replace(" + ", "+")
            cmd = train_command(args, work, data, method, graph_on, tokens, out, args.steps)
            usage = run_command(cmd, work / f"{out.name}.log")
            info = {"command": show(cmd, work), **usage, **throughput(out, skip=5)}
            model = ImageModel.from_pretrained(out / "model")
            info["cell_line_tokens"] = model.encoder.config.cell_line_tokens
            if graph_on:
                rec = json.loads((out / "model" / "config.json").read_text())["extra"]["recipe"]
                info["graph_loss"] = f"{rec['graph_loss']} x {rec['graph_weight']:g}"
            record(name, {**evaluate(model, u2os, plate, graph, args), "training": info})

    for name in args.zoo_model:
        model = load(name, task="images").model
        evaluated = evaluate(model, u2os, plate, graph, args)
        evaluated["note"] = (
            f"zoo model {name} (its own crop size {model.crop_size} px and channels "
            f"{', '.join(model.channels)}; cell-line tokens: "
            f"{model.encoder.config.cell_line_tokens}), not trained in this run"
        )
        record(f"zoo: {name}", evaluated)
        per_seed = []
        for seed in range(args.random_seeds):  # its baseline: the same architecture, untrained
            torch.manual_seed(seed)
            per_seed.append(evaluate(random_twin(model), u2os, plate, graph, args))
        record(f"zoo: {name}, random init of its architecture", merge_seeds(per_seed))

    perf = {}
    if not args.probe_only:
        for method in methods:
            perf[method] = perf_method(args, work, method)
            print(f"perf {method}: {json.dumps(perf[method])}", flush=True)
        result["performance"] = {"per_method": perf}
        out = work / "runs" / "simclr-fp32"
        cmd = train_command(
            args, work, data, "simclr", False, False, out, args.fp32_run_steps, False
        )
        usage = run_command(cmd, work / "fp32.log")
        result["performance"]["simclr_fp32_end_to_end"] = {
            "command": show(cmd, work),
            **usage,
            **throughput(out, skip=5),
        }
    seconds = round(time.perf_counter() - start, 1)
    if args.probe_only:
        result["reprobed"]["seconds"] = seconds
    else:
        result["seconds"] = seconds
    write(result, args.out)
    print()
    print(
        f"SIMULATED screen ({result['screen']['pretraining_sites']} pretraining sites of "
        f"{', '.join(PRETRAIN_LINES)}; probe on {result['screen']['u2os_sites']} {DE_NOVO} sites, "
        f"{result['graph']['screen_graph_nodes']} real genes); ViT depth {args.depth}, width "
        f"{args.embed_dim}, patch {args.patch_size}, crop {args.crop_size} px, {args.steps} steps "
        f"of {args.batch_size} sites; mean ± sd over {args.probe_seeds} splits"
    )
    print(table(result))
    if "performance" in result:
        print()
        print(perf_table(result["performance"]["per_method"]))
        e2e = result["performance"]["simclr_fp32_end_to_end"]
        print(
            f"\nsimclr end to end fp32 ({args.fp32_run_steps} steps): {e2e['sites_per_s']} sites/s"
        )
    print(f"\n{seconds:.0f} s; wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
