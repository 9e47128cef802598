"""`embedkit finetune` and `embedkit predict`: files in, a run folder or a table out.

`finetune_images` / `finetune_profiles` read the labelled data, draw the few-shot splits
(or read a split file), and run the protocol once per condition and seed:

* ``pretrained``: the model's encoder + a new linear head; every seed starts again from
  the loaded weights (their sha256 is checked against each run's starting weights);
* ``random-init`` (``--baselines random``, on by default): the same protocol from a
  randomly initialised encoder of the same architecture (seeded by the run's seed);
* ``nearest-centroid`` (profiles, ``--baselines nearest-centroid``): each test row gets
  the class of the nearest training centroid of the standardized features; no training.

RUN_DIR holds report.json / report.md / report.png (`embedkit.finetune.report`),
splits.csv (every row's role per seed: train, val, test, unused or excluded; read it back
with --split-file to reproduce the run), history.csv (loss and validation top-1 per run
and epoch), seeds/seed-<s>/ (the fine-tuned model of each seed of the main condition) and
model/ (the seed with the best validation top-1). The folder is written atomically: a
failed run leaves no half-written RUN_DIR.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from embedkit import __version__
from embedkit.errors import InputError
from embedkit.finetune.splits import (
    SEED_COLUMN,
    Splits,
    check_seeds,
    make_splits,
    parse_roles,
    split_column_of,
    split_table,
    splits_from_roles,
)
from embedkit.finetune.training import TrainSettings
from embedkit.outputs import check_output_dir, check_output_file, summary_line

BASELINES = ("random", "nearest-centroid", "none")
BATCH_COLUMNS = ("Metadata_Batch", "Metadata_Experiment", "experiment", "batch")
PLATE_COLUMNS = ("Metadata_Plate", "plate")
SHOW = 8


@dataclass
class FinetuneOptions:
    """Everything `embedkit finetune` is told besides its inputs and RUN_DIR."""

    label_column: str
    shots: int | None = None
    validation: int = 2
    seeds: int = 5
    condition: str = "random"
    batch_column: str | None = None
    split_file: str | None = None
    split_column: str | None = None
    drop_labels: tuple[str, ...] = ()
    graph: str | None = None
    graph_loss: str = "laplacian"
    graph_weight: float = 1e-5
    cell_line: str | None = None
    cell_line_embeddings: str | None = None
    expression: str | None = None
    expression_method: str = "pca"
    baselines: tuple[str, ...] = ("random",)
    train: TrainSettings = field(default_factory=TrainSettings)
    # images
    crop_mode: str = "full"
    crop_scale: tuple[float, float] = (0.2, 1.0)
    channel_map: str | None = None
    cache_bytes: int = 2 << 30
    # profiles
    features: Sequence[str] | None = None
    hidden: tuple[int, ...] = (512, 256)
    dropout: float = 0.1
    noise: float = 0.1
    feature_dropout: float = 0.1
    # running
    device: str = "auto"
    num_workers: int = 0
    progress: bool = False
    overwrite: bool = False
    command: str = ""


@dataclass
class FinetuneSummary:
    out_dir: Path
    report: dict
    seconds: float

    def line(self) -> str:
        splits = self.report["splits"]
        parts = []
        for condition, s in self.report["summary"].items():
            parts.append(
                f"{condition} top-1 {s['top1_mean']:.3f} ± {s['top1_std']:.3f}, "
                f"top-5 {s['top5_mean']:.3f}"
            )
        counts = (
            f"{len(self.report['runs'])} runs ({len(splits['seeds'])} seed(s)) on "
            f"{self.report['labels']['classes']} classes"
        )
        details = [
            *parts,
            f"{splits['excluded_count']} perturbation(s) excluded"
            if splits["excluded_count"]
            else "",
        ]
        return summary_line(counts, self.seconds, self.out_dir, details)


# --- shared pieces ---------------------------------------------------------------------------


def check_options(options: FinetuneOptions, profiles: bool) -> None:
    unknown = [b for b in options.baselines if b not in BASELINES]
    if unknown:
        raise InputError(f"--baselines {unknown[0]!r}: choose from {', '.join(BASELINES)}")
    if "nearest-centroid" in options.baselines and not profiles:
        raise InputError("--baselines nearest-centroid is for profile tables (--profiles)")
    if options.split_file is None and options.shots is None:
        raise InputError("give --shots K (training sites per perturbation) or --split-file FILE")
    if options.train.epochs < 1 or options.train.patience < 1 or options.train.batch_size < 1:
        raise InputError("--epochs, --patience and --batch-size must be at least 1")
    if profiles and (options.cell_line or options.expression or options.cell_line_embeddings):
        raise InputError(
            "cell-line tokens condition image models; a profile table has none (drop "
            "--cell-line, --expression and --cell-line-embeddings)"
        )
    if options.expression and options.cell_line_embeddings:
        raise InputError("give --expression or --cell-line-embeddings, not both")
    if (options.expression or options.cell_line_embeddings) and not options.cell_line:
        raise InputError("--expression / --cell-line-embeddings need --cell-line NAME")
    if options.graph_loss not in ("laplacian", "contrastive"):
        raise InputError(f"--graph-loss {options.graph_loss!r}: laplacian or contrastive")


def _log_default(message: str) -> None:
    print(message)


def _batches_of(plates: Sequence[str], columns: dict[str, list], name: str | None) -> list[str]:
    """A batch per row: the named column, else the first of BATCH_COLUMNS present, else the
    plate's folder (EXPERIMENT/PlateN → EXPERIMENT), else the plate itself."""
    if name is not None:
        values = columns.get(name)
        if values is None or all(v is None for v in values):
            raise InputError(f"--batch-column {name!r} is not a column of the labels table")
        return [str(v) for v in values]
    for candidate in BATCH_COLUMNS:
        values = columns.get(candidate)
        if values is not None and not all(v is None for v in values):
            return [str(v) for v in values]
    return [str(p).rsplit("/", 1)[0] for p in plates]


def _drop(labels: list[str | None], drop: Sequence[str]) -> tuple[list[str | None], int]:
    dropped = set(map(str, drop))
    out = [None if v in dropped else v for v in labels]
    return out, sum(v in dropped for v in labels if v is not None)


def _graph_regularizer(options: FinetuneOptions, vocab: list[str], log):
    if options.graph is None:
        return None, None
    from embedkit.graph import PerturbationGraph
    from embedkit.graph.losses import GraphRegularizer

    graph = PerturbationGraph.load(options.graph)
    reg = GraphRegularizer(graph, vocab, options.graph_loss, options.graph_weight)
    c = reg.coverage
    if not c["covered"]:
        raise InputError(
            f"--graph {options.graph} covers none of the {c['labels']} labels (e.g. "
            f"{', '.join(map(str, vocab[:3]))}); its nodes are perturbation names as in "
            f"--label-column {options.label_column}"
        )
    if c["covered"] < c["labels"]:
        log(
            f"  warning: the graph covers {c['covered']} of {c['labels']} labels "
            f"({c['fraction']:.0%}); the others take no part in the graph loss (e.g. "
            f"{', '.join(map(str, c.get('missing_examples', [])[:3]))})"
        )
    else:
        log(f"graph: covers all {c['labels']} labels")
    info = {
        "file": str(options.graph),
        "loss": options.graph_loss,
        "weight": options.graph_weight,
        "coverage": c,
    }
    return reg, info


def _split(
    options: FinetuneOptions,
    labels: list[str | None],
    plates: list[str],
    batches: list[str],
    file_roles: dict | None,
) -> Splits:
    seeds = check_seeds(options.seeds)
    if file_roles is not None:
        return splits_from_roles(labels, file_roles, seeds, str(options.split_file))
    return make_splits(
        labels, plates, batches, options.shots, options.validation, seeds, options.condition
    )


def _log_splits(splits: Splits, log) -> None:
    seed = splits.seeds[0]
    counts = splits.counts(seed)
    log(
        f"splits: {len(splits.labels)} classes; seed {seed}: {counts.get('train', 0)} train, "
        f"{counts.get('val', 0)} validation, {counts.get('test', 0)} test sites"
        + (f", {counts['unused']} unused (on training plates)" if counts.get("unused") else "")
    )
    if splits.excluded:
        names = sorted(splits.excluded)
        log(
            f"  warning: {len(names)} perturbation(s) excluded: "
            + "; ".join(f"{n} ({splits.excluded[n]})" for n in names[:SHOW])
            + (" …" if len(names) > SHOW else "")
        )


@dataclass
class Prepared:
    """The labelled rows of one run, ready for the protocol."""

    kind: str  # "images" or "profiles"
    task: Any
    names: list[str | None]  # label per row (None: unlabelled or dropped)
    keys: pd.DataFrame  # Metadata_ columns identifying each row (splits.csv)
    make_model: Callable[[str, int, list[str]], Any]  # (condition, seed, vocab) → model
    pretrained_sha256: str | None
    model_info: dict
    data_report: dict
    raw: np.ndarray | None = None  # profiles: standardized features (nearest centroid)
    cell_line: dict | None = None


def _protocol(
    prep: Prepared,
    splits: Splits,
    options: FinetuneOptions,
    staging: Path,
    log,
) -> dict:
    """Every condition × seed; models and splits.csv into `staging`; returns report.json."""
    from tqdm.auto import tqdm

    from embedkit.device import resolve_device
    from embedkit.finetune.training import fit, topk_accuracy

    vocab = splits.labels
    index = {name: i for i, name in enumerate(vocab)}
    classes = np.array([index.get(n, -1) if n is not None else -1 for n in prep.names])
    prep.task.set_labels(classes)
    device = resolve_device(options.device)
    graph, graph_info = _graph_regularizer(options, vocab, log)
    conditions = []
    if prep.pretrained_sha256 is not None:
        conditions.append("pretrained")
    if "random" in options.baselines or not conditions:
        conditions.append("random-init")
    main = conditions[0]
    runs: list[dict] = []
    history: list[dict] = []
    best: dict | None = None
    for condition in conditions:
        for seed in splits.seeds:
            rows = {r: splits.indices(seed, r) for r in ("train", "val", "test")}
            model = prep.make_model(condition, seed, vocab)
            bar = tqdm(
                total=options.train.epochs,
                desc=f"{condition} seed {seed}",
                unit="epoch",
                disable=not options.progress,
                leave=False,
            )
            result, _ = fit(
                model,
                prep.task,
                rows["train"],
                rows["val"],
                rows["test"],
                options.train,
                seed,
                device,
                graph,
                bar,
            )
            bar.close()
            if condition == "pretrained" and result.start_sha256 != prep.pretrained_sha256:
                raise RuntimeError(  # a bug, never a user error
                    f"seed {seed} did not start from the pretrained weights"
                )
            run = {
                "condition": condition,
                "seed": seed,
                "top1": result.top[1],
                "top5": result.top[5],
                "top10": result.top[10],
                "val_top1": result.val_top1,
                "best_epoch": result.best_epoch,
                "epochs": result.epochs,
                "seconds": round(result.seconds, 3),
                "peak_rss_mb": round(result.peak_rss_mb, 1),
                "start_weights_sha256": result.start_sha256,
                "train_sites": int(len(rows["train"])),
                "val_sites": int(len(rows["val"])),
                "test_sites": int(len(rows["test"])),
            }
            if result.peak_gpu_mb is not None:
                run["peak_gpu_mb"] = round(result.peak_gpu_mb, 1)
            runs.append(run)
            history += [{"condition": condition, "seed": seed, **h} for h in result.history]
            log(
                f"{condition} seed {seed}: top-1 {run['top1']:.3f}, top-5 {run['top5']:.3f} "
                f"(epoch {result.best_epoch} of {result.epochs}, {result.seconds:.1f} s)"
            )
            if condition == main:
                model.extra = {
                    **model.extra,
                    "finetune": {
                        "seed": seed,
                        "condition": condition,
                        "top1": run["top1"],
                        "top5": run["top5"],
                        "val_top1": run["val_top1"],
                        "best_epoch": result.best_epoch,
                        "label_column": options.label_column,
                        "base_model": prep.model_info.get("spec"),
                    },
                }
                model.cpu().save_pretrained(staging / "seeds" / f"seed-{seed}")
                score = -1.0 if result.val_top1 is None else result.val_top1
                if best is None or score > best["score"]:
                    best = {"score": score, "seed": seed, "val_top1": result.val_top1}
            del model
    if prep.raw is not None and "nearest-centroid" in options.baselines:
        for seed in splits.seeds:
            tick = time.perf_counter()
            train, val, test = (splits.indices(seed, r) for r in ("train", "val", "test"))
            top = topk_accuracy(*_centroid_scores(prep.raw, classes, train, test, len(vocab)))
            val_top = topk_accuracy(*_centroid_scores(prep.raw, classes, train, val, len(vocab)))
            runs.append(
                {
                    "condition": "nearest-centroid",
                    "seed": seed,
                    "top1": top[1],
                    "top5": top[5],
                    "top10": top[10],
                    "val_top1": val_top[1] if len(val) else None,
                    "seconds": round(time.perf_counter() - tick, 3),
                    "train_sites": int(len(train)),
                    "val_sites": int(len(val)),
                    "test_sites": int(len(test)),
                }
            )
    shutil.copytree(staging / "seeds" / f"seed-{best['seed']}", staging / "model")
    keys = prep.keys
    table = split_table(keys, options.label_column, prep.names, splits)
    table.to_csv(staging / "splits.csv", index=False)
    pd.DataFrame(history).to_csv(staging / "history.csv", index=False)
    from embedkit.finetune.report import summarize

    return {
        "runs": runs,
        "summary": summarize(runs),
        "best": {
            "condition": main,
            "seed": best["seed"],
            "val_top1": best["val_top1"],
            "model": "model",
        },
        "input": prep.kind,
        "model": {**prep.model_info, "pretrained_weights_sha256": prep.pretrained_sha256},
        "data": prep.data_report,
        "labels": {
            "column": options.label_column,
            "classes": len(vocab),
            "vocabulary": vocab,
            "dropped": list(options.drop_labels),
        },
        "splits": {**splits.summary(), "file": "splits.csv"},
        "settings": {
            **dataclasses.asdict(options.train),
            "baselines": list(options.baselines),
            "device": str(device),
            **(
                {"crop_mode": options.crop_mode, "crop_scale": list(options.crop_scale)}
                if prep.kind == "images"
                else {"noise": options.noise, "feature_dropout": options.feature_dropout}
            ),
        },
        "graph": graph_info,
        "cell_line": prep.cell_line,
        "embedkit_version": __version__,
        "command": options.command,
    }


def _centroid_scores(x, classes, train, rows, n_classes):
    """(−distance to each class's training centroid (N, C), labels (N,)) as torch tensors."""
    import torch

    centroids = np.zeros((n_classes, x.shape[1]), np.float32)
    for c in range(n_classes):
        members = train[classes[train] == c]
        if len(members):
            centroids[c] = x[members].mean(axis=0)
    d = ((x[rows][:, None, :] - centroids[None]) ** 2).sum(axis=2)
    return torch.from_numpy(-d), torch.as_tensor(classes[rows], dtype=torch.long)


def _run(prep: Prepared, splits: Splits, options: FinetuneOptions, out_dir: Path, log, tick):
    from embedkit.finetune.card import write_finetuned_card
    from embedkit.finetune.report import write_report
    from embedkit.io import atomic_dir

    with atomic_dir(out_dir) as staging:
        report = _protocol(prep, splits, options, staging, log)
        report["seconds"] = round(time.perf_counter() - tick, 2)
        write_report(staging, report)
        write_finetuned_card(staging / "model", report)  # publishable as it is
    return FinetuneSummary(out_dir, report, time.perf_counter() - tick)


# --- images ----------------------------------------------------------------------------------


def _cell_line_table(options: FinetuneOptions, dim: int) -> tuple[dict | None, str]:
    """The table --cell-line is looked up in: --cell-line-embeddings, or embeddings of
    --expression computed here (`embedkit.cell_lines`)."""
    if options.cell_line_embeddings:
        from embedkit.cell_lines import read_cell_line_table

        table = read_cell_line_table(options.cell_line_embeddings)
        return table, str(options.cell_line_embeddings)
    if options.expression:
        from embedkit.cell_lines import embed_expression, read_expression

        embedding = embed_expression(
            read_expression(options.expression),
            method=options.expression_method,
            dim=dim,
            source=str(options.expression),
        )
        return embedding.as_dict(), f"{options.expression} ({options.expression_method})"
    return None, "the model"


def _image_model_parts(base) -> dict:
    """The constructor arguments of an image model, without its head (a fresh copy)."""
    from embedkit.images.vit import ViTConfig

    return {
        "encoder": ViTConfig(**copy.deepcopy(base.encoder.config.to_dict())),
        "channels": list(base.channels),
        "channel_aliases": copy.deepcopy(base.channel_aliases),
        "crop_size": base.crop_size,
        "normalization": copy.deepcopy(base.normalization),
        "cell_lines": copy.deepcopy(base.cell_lines),
    }


def _split_file_roles_images(options, spec_data, channels, aliases, sites, log) -> dict | None:
    """Roles per row of `sites` from --split-file (None without one)."""
    if options.split_file is None:
        return None
    from embedkit.images.training_data import DataSpec, collect_sites, normalize_well
    from embedkit.io import read_table

    path = Path(options.split_file)
    table = read_table(path)
    column = split_column_of(table, path, options.split_column)
    position = {key: i for i, key in enumerate(sites.keys)}
    if SEED_COLUMN in table.columns:  # our own splits.csv: keys are the imaged sites
        missing = [
            c for c in ("Metadata_Plate", "Metadata_Well", "Metadata_Site") if c not in table
        ]
        if missing:
            raise InputError(f"{path} has no column {', '.join(missing)}")
        out: dict = {}
        for seed, part in table.groupby(SEED_COLUMN, sort=True):
            roles = np.full(len(sites), "unused", dtype=object)
            parsed = parse_roles(part[column], path, column)
            wells = part["Metadata_Well"].map(normalize_well)
            unmatched = 0
            for plate, well, site, role in zip(
                part["Metadata_Plate"].astype(str),
                wells,
                part["Metadata_Site"],
                parsed,
                strict=True,
            ):
                i = position.get((plate, well, int(site)))
                if i is None:
                    unmatched += 1
                else:
                    roles[i] = role
            if unmatched:
                log(f"  warning: {unmatched} rows of {path.name} (seed {seed}) match no site")
            out[int(seed)] = roles.astype(str)
        return out
    listed = collect_sites(
        DataSpec(spec_data, str(path), column), channels, aliases, True, False, log=log
    )
    roles = np.full(len(sites), "unused", dtype=object)
    matched = 0
    for key, label in zip(listed.keys, listed.labels, strict=True):
        i = position.get(key)
        if i is not None:
            roles[i] = listed.label_vocab[label]
            matched += 1
    roles = parse_roles(roles, path, column)
    outside = int((roles == "unused").sum())
    if outside:
        log(f"  {outside} labelled sites are not in {path.name}; not used")
    return {None: roles}


def finetune_images(
    model: str,
    data: Sequence[str | Path],
    labels: str | Path,
    out_dir: str | Path,
    options: FinetuneOptions,
    log: Callable[[str], None] = _log_default,
) -> FinetuneSummary:
    """`embedkit finetune --data PLATES --labels labels.csv`: see the module docstring."""
    tick = time.perf_counter()
    check_options(options, profiles=False)
    out_dir = check_output_dir(out_dir, options.overwrite)
    if not data:
        raise InputError("give the plates with --data DIR (repeatable)")

    import torch

    from embedkit.api import load
    from embedkit.finetune.data import ImageTask
    from embedkit.finetune.image_classifier import ImageClassifier
    from embedkit.finetune.training import weights_sha256
    from embedkit.images.training_data import Augmentation, DataSpec, collect_sites

    embedder = load(model, device="cpu", task="images", command="finetune")
    base = embedder.model
    if base.normalization.get("kind") != "instance":
        raise InputError(
            f"{model} normalizes with fixed statistics; fine-tuning trains with per-crop "
            "instance normalization, so it needs a model that uses it"
        )
    parts = _image_model_parts(base)
    spec_data = tuple(f"{d}:{options.channel_map}" if options.channel_map else str(d) for d in data)
    spec = DataSpec(spec_data, str(labels), options.label_column)
    sites = collect_sites(
        spec,
        parts["channels"],
        parts["channel_aliases"],
        True,
        False,
        log=log,
        keep=BATCH_COLUMNS + ((options.batch_column,) if options.batch_column else ()),
    )
    names = [sites.label_vocab[i] for i in sites.labels]
    names, dropped = _drop(names, options.drop_labels)
    if dropped:
        log(f"  {dropped} sites labelled {', '.join(options.drop_labels)} left out (--drop-label)")
    plates = [k[0] for k in sites.keys]
    batches = _batches_of(plates, sites.columns, options.batch_column)
    file_roles = _split_file_roles_images(
        options, spec_data, parts["channels"], parts["channel_aliases"], sites, log
    )
    splits = _split(options, names, plates, batches, file_roles)
    _log_splits(splits, log)

    # the cell line
    dim = base.encoder.config.cell_line_dim
    cell_line_info = None
    line_vector = None
    if options.cell_line is not None:
        if base.encoder.config.cell_line_tokens == 0:
            raise InputError(
                f"--cell-line {options.cell_line}: {model} has no cell-line tokens (pretrain "
                "with cell-line embeddings to use them)"
            )
        table, source = _cell_line_table(options, dim)
        line_vector = base.cell_line_vector(options.cell_line, table)
        parts["cell_lines"] = {**parts["cell_lines"], options.cell_line: line_vector.tolist()}
        cell_line_info = {"name": options.cell_line, "source": source, "dim": dim}
        log(f"cell line: {options.cell_line} ({source}), {dim} values → tokens")
    else:
        line_vector = base.cell_line_vector(None)  # a model with tokens says what it needs

    pretrained_state = {k: v.detach().clone() for k, v in base.encoder.state_dict().items()}
    pretrained_sha = weights_sha256(base.encoder)
    crop_mode = options.crop_mode

    extra = {"base_model": str(model)}
    if base.extra.get("simulated"):  # a model trained on simulated plates stays marked
        extra["simulated"] = base.extra["simulated"]

    def make_model(condition: str, seed: int, vocab: list[str]):
        torch.manual_seed(seed)
        fresh = copy.deepcopy(parts)
        clf = ImageClassifier(
            **fresh,
            extra=extra,
            labels=vocab,
            cell_line=options.cell_line,
            crop_mode=crop_mode,
        )
        if condition == "pretrained":
            clf.encoder.load_state_dict(pretrained_state)
        return clf

    aug = Augmentation(
        crop_size=base.crop_size,
        crop_scale_min=options.crop_scale[0],
        crop_scale_max=options.crop_scale[1],
        flips=True,
        rotations=True,
        blur_prob=[0.0],
        gain_prob=0.0,
        background_prob=0.0,
        contrast_prob=0.0,
    )
    task = ImageTask(
        sites,
        np.full(len(sites), -1),
        aug,
        {"crop_size": base.crop_size, "normalization": base.normalization},
        crop_mode,
        line_vector,
        options.num_workers,
        options.cache_bytes,
    )
    keys = pd.DataFrame(
        {
            "Metadata_Plate": plates,
            "Metadata_Well": [k[1] for k in sites.keys],
            "Metadata_Site": [k[2] for k in sites.keys],
            "Metadata_Batch": batches,
        }
    )
    prep = Prepared(
        "images",
        task,
        names,
        keys,
        make_model,
        pretrained_sha,
        {
            "spec": str(model),
            "architecture": type(base).ARCHITECTURE,
            "run_info": embedder.run_info,
            "embedding_dim": base.embedding_dim,
        },
        {**sites.report, "data": [str(d) for d in data], "labels_file": str(labels)},
        cell_line=cell_line_info,
    )
    del embedder
    return _run(prep, splits, options, out_dir, log, tick)


# --- profiles --------------------------------------------------------------------------------


def finetune_profiles(
    profiles: str | Path,
    out_dir: str | Path,
    options: FinetuneOptions,
    model: str | None = None,
    labels: str | Path | None = None,
    log: Callable[[str], None] = _log_default,
) -> FinetuneSummary:
    """`embedkit finetune --profiles TABLE`: a profile table (Metadata_ columns + features)
    instead of plates; the label column is in the table (or in --labels, joined on the
    Metadata_ columns both share). Without --model the encoder is an MLP of `hidden`
    widths trained from random initialisation only."""
    tick = time.perf_counter()
    check_options(options, profiles=True)
    out_dir = check_output_dir(out_dir, options.overwrite)

    import torch

    from embedkit.finetune.data import ProfileTask
    from embedkit.finetune.profile_classifier import ProfileClassifier
    from embedkit.finetune.training import weights_sha256
    from embedkit.io import coerce_numeric_text, read_table
    from embedkit.profiles.features import infer_features, metadata_columns

    path = Path(profiles)
    table = coerce_numeric_text(read_table(path))
    if labels is not None:
        table = _join_labels(table, read_table(Path(labels)), labels, options.label_column)
    if options.label_column not in table.columns:
        raise InputError(
            f"{path} has no column {options.label_column!r} (--label-column); its metadata "
            f"columns: {', '.join(metadata_columns(table)) or '(none)'}"
        )
    base = None
    model_info: dict = {"spec": None, "architecture": "embedkit-profile-classifier"}
    if model is not None:
        from embedkit.api import load

        embedder = load(model, device="cpu", task="profile-classification", command="finetune")
        base = embedder.model
        features = list(base.features)
        x = base.matrix(table, str(path))
        hidden, dropout = list(base.hidden), base.dropout
        model_info = {
            "spec": str(model),
            "architecture": base.ARCHITECTURE,
            "run_info": embedder.run_info,
            "embedding_dim": base.embedding_dim,
        }
    else:
        features = infer_features(table, options.features)
        x = table[features].to_numpy(dtype=np.float32)
        hidden, dropout = list(options.hidden), options.dropout
        model_info["hidden"] = hidden
    finite = np.isfinite(x).all(axis=1)
    raw_labels = table[options.label_column].tolist()
    names: list[str | None] = []
    for value, ok in zip(raw_labels, finite, strict=True):
        text = "" if value is None else str(value).strip()
        missing = text.lower() in ("", "nan", "none", "na", "<na>")
        names.append(None if missing or not ok else text)
    names, dropped = _drop(names, options.drop_labels)
    no_label = sum(
        str(v).strip().lower() in ("", "nan", "none", "na", "<na>") or v is None for v in raw_labels
    )
    report = {
        "table": str(path),
        "rows": len(table),
        "features": len(features),
        "no_label": int(no_label),
        "missing_features": int((~finite).sum()),
        "dropped_label_rows": int(dropped),
    }
    log(
        f"data: {len(table)} rows × {len(features)} features in {path.name}; "
        f"{sum(n is not None for n in names)} labelled rows used"
    )
    if (~finite).any():
        log(f"  warning: {int((~finite).sum())} rows have missing or infinite features; skipped")
    if no_label:
        log(f"  warning: {no_label} rows have no {options.label_column}; skipped")
    if not finite.any():
        raise InputError(f"{path}: every row has missing or infinite feature values")
    mean, std = x[finite].mean(axis=0), x[finite].std(axis=0)
    standardized = np.where(std > 1e-6, (np.nan_to_num(x) - mean) / np.maximum(std, 1e-6), 0.0)
    plates = _column_or(table, PLATE_COLUMNS, path.stem)
    batches = (
        [str(v) for v in table[options.batch_column]]
        if options.batch_column
        else _column_or(table, BATCH_COLUMNS, None) or plates
    )
    if options.batch_column and options.batch_column not in table.columns:
        raise InputError(f"--batch-column {options.batch_column!r} is not a column of {path}")
    keys = pd.DataFrame({"Metadata_Row": np.arange(len(table))})
    for column in ("Metadata_Plate", "Metadata_Well"):
        if column in table.columns:
            keys[column] = table[column].astype(str).to_numpy()
    file_roles = _split_file_roles_profiles(options, keys)
    splits = _split(options, names, plates, batches, file_roles)
    _log_splits(splits, log)
    pretrained_sha = weights_sha256(base.encoder) if base is not None else None
    pretrained_state = (
        {k: v.detach().clone() for k, v in base.encoder.state_dict().items()} if base else None
    )

    def make_model(condition: str, seed: int, vocab: list[str]):
        torch.manual_seed(seed)
        clf = ProfileClassifier(
            features,
            mean.astype(float).tolist(),
            std.astype(float).tolist(),
            hidden,
            dropout,
            vocab,
            {"base_model": model, "table": str(path)},
        )
        if condition == "pretrained":
            clf.encoder.load_state_dict(pretrained_state)
        return clf

    task = ProfileTask(
        standardized, np.full(len(table), -1), options.noise, options.feature_dropout
    )
    prep = Prepared(
        "profiles",
        task,
        names,
        keys,
        make_model,
        pretrained_sha,
        model_info,
        report,
        raw=standardized.astype(np.float32),
    )
    return _run(prep, splits, options, out_dir, log, tick)


def _column_or(table: pd.DataFrame, candidates, default: str | None):
    for c in candidates:
        if c in table.columns:
            return [str(v) for v in table[c]]
    return None if default is None else [default] * len(table)


def _join_labels(table: pd.DataFrame, labels: pd.DataFrame, path, column: str) -> pd.DataFrame:
    keys = [c for c in labels.columns if c.startswith("Metadata_") and c in table.columns]
    keys = [k for k in keys if k != column]
    if not keys:
        raise InputError(
            f"--labels {path} shares no Metadata_ column with the profile table to join on"
        )
    if column not in labels.columns:
        raise InputError(f"--labels {path} has no column {column!r} (--label-column)")
    joined = table.drop(columns=[column], errors="ignore").merge(
        labels[[*keys, column]].drop_duplicates(keys), on=keys, how="left"
    )
    return joined


def _split_file_roles_profiles(options: FinetuneOptions, keys: pd.DataFrame) -> dict | None:
    if options.split_file is None:
        return None
    from embedkit.io import read_table

    path = Path(options.split_file)
    table = read_table(path)
    column = split_column_of(table, path, options.split_column)
    on = [
        c
        for c in ("Metadata_Row", "Metadata_Plate", "Metadata_Well")
        if c in table.columns and c in keys.columns
    ]
    if not on:
        raise InputError(
            f"{path} shares no key column with the profiles (Metadata_Row, or "
            "Metadata_Plate and Metadata_Well)"
        )
    groups = (
        table.groupby(SEED_COLUMN, sort=True) if SEED_COLUMN in table.columns else [(None, table)]
    )
    out: dict = {}
    left = keys[on].astype(str)
    for seed, part in groups:
        part = part.assign(**{c: part[c].astype(str) for c in on})
        merged = left.merge(part[[*on, column]].drop_duplicates(on), on=on, how="left")
        values = merged[column].fillna("unused")
        out[None if seed is None else int(seed)] = parse_roles(values, path, column)
    return out


# --- predict ---------------------------------------------------------------------------------


@dataclass
class PredictSummary:
    rows: int
    invalid: int
    seconds: float
    output: Path
    what: str = "sites"

    def line(self) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else float("nan")
        return summary_line(
            f"{self.rows} {self.what} classified",
            self.seconds,
            self.output,
            [
                f"{self.invalid} not readable (NaN rows, Metadata_Valid False)"
                if self.invalid
                else ""
            ],
            f"{rate:.1f} {self.what}/s",
        )


TOP = 5


def prediction_columns(probabilities: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Top-1 label and score, then the top-5 labels and their scores (NaN rows → empty)."""
    n = len(probabilities)
    k = min(TOP, len(labels))
    out: dict[str, list] = {"Metadata_Prediction": [], "Metadata_PredictionScore": []}
    for j in range(1, TOP + 1):
        out[f"Metadata_Top{j}"] = []
        out[f"Metadata_Top{j}Score"] = []
    vocab = np.asarray(labels, dtype=object)
    for i in range(n):
        p = probabilities[i]
        if not np.isfinite(p).all():
            order, scores = [], []
        else:
            order = list(np.argsort(-p, kind="stable")[:k])
            scores = [float(p[o]) for o in order]
        names = [str(vocab[o]) for o in order]
        out["Metadata_Prediction"].append(names[0] if names else None)
        out["Metadata_PredictionScore"].append(scores[0] if scores else np.nan)
        for j in range(TOP):
            out[f"Metadata_Top{j + 1}"].append(names[j] if j < len(names) else None)
            out[f"Metadata_Top{j + 1}Score"].append(scores[j] if j < len(scores) else np.nan)
    return pd.DataFrame(out)


@dataclass
class PredictOptions:
    crop_mode: str | None = None  # default: the model's
    cell_line: str | None = None  # default: the model's
    cell_line_embeddings: str | None = None
    channel_map: str | None = None
    layout: str = "auto"
    pattern: str | None = None
    batch_size: int = 8
    num_workers: int = 0
    device: str = "auto"
    precision: str = "fp32"
    progress: bool = False
    overwrite: bool = False


def predict_images(
    plate_dirs: Sequence[str | Path],
    model: str,
    output: str | Path,
    options: PredictOptions | None = None,
) -> PredictSummary:
    """`embedkit predict PLATES -m MODEL -o predictions.parquet`: one row per site, in
    plate then site order: Metadata_Plate/Well/Site, Metadata_Valid/Error, the top-1 label
    (Metadata_Prediction, Metadata_PredictionScore) and the top-5 labels with scores."""
    options = options or PredictOptions()
    tick = time.perf_counter()
    output = check_output_file(output, options.overwrite)
    from tqdm.auto import tqdm

    from embedkit.api import load
    from embedkit.images.channels import parse_channel_map, plan_channels
    from embedkit.images.discovery import discover
    from embedkit.images.jobs import EmbedImagesOptions, embed_plate
    from embedkit.io import split_features, write_table

    embedder = load(
        model,
        device=options.device,
        precision=options.precision,
        with_heads=True,
        task="image-classification",
        command="predict",
    )
    clf = embedder.model
    table = None
    if options.cell_line_embeddings:
        table, _ = _cell_line_table(
            FinetuneOptions("", cell_line_embeddings=options.cell_line_embeddings), 0
        )
    line_name = options.cell_line or clf.cell_line
    cell_line = clf.cell_line_vector(line_name, table)
    index = discover([Path(p) for p in plate_dirs], layout=options.layout, pattern=options.pattern)
    plan = plan_channels(
        clf.channels, index.channels(), clf.channel_aliases, parse_channel_map(options.channel_map)
    )
    crop_mode = options.crop_mode or clf.crop_mode
    embed_options = EmbedImagesOptions(
        level="site",
        crop_mode=crop_mode,
        sites_per_batch=options.batch_size,
        num_workers=options.num_workers,
    )
    sites = index.sites()
    parts = []
    bar = tqdm(total=len(sites), unit="site", desc="predicting", disable=not options.progress)
    for plate in sorted(sites["plate"].unique(), key=str):
        frame, _ = embed_plate(
            sites[sites["plate"] == plate], embedder, plan, embed_options, cell_line, bar
        )
        meta, vectors = split_features(frame)
        probabilities = embedder.probabilities(vectors)
        parts.append(
            pd.concat(
                [meta.reset_index(drop=True), prediction_columns(probabilities, clf.labels)], axis=1
            )
        )
    bar.close()
    out = pd.concat(parts, ignore_index=True) if parts else prediction_columns(np.zeros((0, 1)), [])
    run_info = {
        **embedder.run_info,
        "task": "image-classification",
        "crop_mode": crop_mode,
        "cell_line": line_name,
        "precision": embedder.precision,
        "channels": plan.describe(),
        "embedkit_version": __version__,
    }
    write_table(out, output, run_info)
    invalid = int((~out["Metadata_Valid"].astype(bool)).sum()) if len(out) else 0
    return PredictSummary(len(out), invalid, time.perf_counter() - tick, output)


def predict_profiles(
    profiles: str | Path,
    model: str,
    output: str | Path,
    options: PredictOptions | None = None,
) -> PredictSummary:
    """`embedkit predict --profiles TABLE -m MODEL -o out.parquet`: one row per input row,
    in input order: its Metadata_ columns, Metadata_Valid/Error and the predictions."""
    options = options or PredictOptions()
    tick = time.perf_counter()
    output = check_output_file(output, options.overwrite)
    from embedkit.api import load
    from embedkit.io import coerce_numeric_text, read_table, write_table

    embedder = load(
        model,
        device=options.device,
        precision=options.precision,
        with_heads=True,
        task="profile-classification",
        command="predict",
    )
    path = Path(profiles)
    table = coerce_numeric_text(read_table(path))
    result = embedder.embed(table)
    probabilities = embedder.probabilities(result.embeddings)
    meta = table[[c for c in table.columns if str(c).startswith("Metadata_")]].reset_index(
        drop=True
    )
    meta = meta.assign(Metadata_Valid=result.valid, Metadata_Error=result.errors)
    out = pd.concat([meta, prediction_columns(probabilities, embedder.model.labels)], axis=1)
    from embedkit.provenance import input_fields

    write_table(
        out,
        output,
        {
            **embedder.run_info,
            "task": "profile-classification",
            "embedkit_version": __version__,
            **input_fields(path),
        },
    )
    invalid = int((~result.valid).sum())
    return PredictSummary(len(out), invalid, time.perf_counter() - tick, output, "profiles")
