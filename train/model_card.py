"""README.md for a trained InfoAlign folder: Hub front matter, provenance, recipe, metrics.

The card is what a user reads before trusting the weights, so it names every input file
with its sha256 (and, where the data folder has a MANIFEST.json, its upstream source,
commit and license), the exact command, the recipe, and the losses reached.
"""

from __future__ import annotations

import json
from pathlib import Path

from embedkit.io import atomic_path
from embedkit.molecules.model import ARCHITECTURE
from embedkit.zoo.hub_card import card_data, render, section, usage_lines
from train.context_graph import ContextGraph

TAGS = [
    "molecules",
    "molecular-representation",
    "infoalign",
    "gin",
    "graph-neural-network",
    "cell-painting",
    "l1000",
    "safetensors",
]
CITATION = """@inproceedings{liu2025infoalign,
  title     = {Learning Molecular Representation in a Cell},
  author    = {Liu, Gang and Seal, Srijit and Arevalo, John and Liang, Zhenwen and
               Carpenter, Anne E. and Jiang, Meng and Singh, Shantanu},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2025}
}"""


def _manifest(data_dir: str | None) -> dict[str, dict]:
    path = Path(data_dir or "") / "MANIFEST.json"
    if not data_dir or not path.exists():
        return {}
    return {entry["file"]: entry for entry in json.loads(path.read_text())}


def _provenance(graph: ContextGraph) -> list[str]:
    manifest = _manifest(graph.meta.get("data_dir"))
    rows = ["| File | sha256 | Source (commit) | Licence |", "|---|---|---|---|"]
    for name, sha in graph.meta.get("files", {}).items():
        entry = manifest.get(name, {})
        source = entry.get("source", "not in MANIFEST.json")
        if entry.get("commit"):
            source += f" ({entry['commit'][:12]})"
        check = "" if not entry or entry.get("sha256") == sha else " **(differs from manifest)**"
        rows.append(f"| `{name}` | `{sha}`{check} | {source} | {entry.get('license', 'unknown')} |")
    return rows


def _metrics(metrics: list[dict]) -> list[str]:
    if not metrics:
        return ["No completed epoch was logged."]
    last = metrics[-1]
    lines = [
        f"Final epoch {last['epoch']} (step {last['step']}):",
        "",
        "| Loss | Train | Held-out |",
        "|---|---|---|",
    ]
    for key in [k[6:] for k in last if k.startswith("train_")]:
        val = last.get(f"val_{key}")
        lines.append(
            f"| {key} | {last[f'train_{key}']:.5g} | {'' if val is None else f'{val:.5g}'} |"
        )
    lines += ["", "| Epoch | Train loss | Held-out loss | Seconds |", "|---|---|---|---|"]
    for r in metrics:
        val = f"{r['val_loss']:.5f}" if "val_loss" in r else ""
        lines.append(f"| {r['epoch']} | {r['train_loss']:.5f} | {val} | {r['epoch_seconds']} |")
    return lines


def _profile_count(summary: dict) -> int:
    return sum(v for k, v in summary["nodes"].items() if k not in ("molecule", "gene", "moa"))


def _gene_line(graph: ContextGraph) -> list[str]:
    orf = graph.summary()["spaces"].get("l1000_orf")
    if orf is None:
        return ["Genes have no feature vector here; they are walk-through nodes. "]
    return [
        f"{orf['nodes']:,} gene nodes carry the LINCS L1000 consensus signature of their "
        f"over-expression (ORF; {orf['dim']} landmark genes, significant z-scores, 0 "
        "elsewhere); the other genes are walk-through nodes. "
    ]


def _exclusions(graph: ContextGraph) -> list[str]:
    """What the graph keeps away from the evaluation sets: the reader's first question."""
    meta = graph.meta
    lines = ["### Evaluation sets kept out", ""]
    if meta.get("excluded_benchmarks"):
        lines.append(
            f"* Removed from the graph entirely (molecules, their profiles and edges): "
            f"{', '.join(meta['excluded_benchmarks'])} "
            f"({meta.get('excluded_molecules', 0):,} InChIKey-14s)."
        )
    record = meta.get("eval_annotation_exclusion")
    if record is None:
        lines.append("* This graph predates the evaluation-set exclusion record.")
    elif not record["applied"]:
        lines.append(
            "* **Evaluation-set molecules kept their target and mechanism edges** "
            "(built with `--keep-eval-annotations`)."
        )
    else:
        lines += [
            f"* No target or mechanism-of-action edges for the molecules of any evaluation "
            f"file: {record['molecules_that_lost_edges']:,} molecules lost "
            f"{record['target_edges_removed']:,} target and {record['moa_edges_removed']:,} "
            f"mechanism edges (sha256 of the sorted InChIKey-14 list "
            f"`{record['keys_sha256'][:16]}…`). Files:",
            "",
            "| Evaluation file | Molecules | In the graph |",
            "|---|---|---|",
            *[
                f"| `{name}` | {v['molecules']:,} | {v['in_graph']:,} |"
                for name, v in record["assay_files"].items()
            ],
        ]
    return [*lines, ""]


def _warm_start(config: dict) -> list[str]:
    if not config.get("init_from"):
        return []
    return [
        f"Started from the weights of `{config['init_from']}` (`--init-from`): the encoder, "
        "and the decoders of feature spaces with unchanged columns.",
        "",
    ]


def render_model_card(
    *,
    graph: ContextGraph,
    graph_path: Path | str,
    config: dict,
    metrics: list[dict],
    command: str | None,
    runtime: dict,
    save_dtype: str,
    license: str = "other",
) -> str:
    summary = graph.summary()
    partial = runtime.get("steps_done", 0) < runtime.get("steps_planned", 0)
    body = [
        "# InfoAlign-style GIN molecule encoder (embedkit)",
        "",
        "A GIN with a virtual node and a variational information-bottleneck head, pretrained "
        "with the InfoAlign objective: decoders reconstruct the Morgan fingerprint, Cell "
        "Painting and L1000 profiles of the nodes met on random walks from each molecule over "
        "a cellular context graph. **The embedding is μ** "
        f"({config['emb_dim']}-d).",
        "",
        *(
            [
                "> **Partial run:** stopped at step "
                f"{runtime['steps_done']} of {runtime['steps_planned']}.",
                "",
            ]
            if partial
            else []
        ),
        section("use", usage_lines(ARCHITECTURE, "local-dir:/path/to/this/folder")),
        "",
        "Decoders are kept (named by feature space); `config.json` → `extra.feature_spaces` "
        "lists each space's column names and the min/max used to scale targets to [0, 1], so "
        "decoder outputs (sigmoid) can be mapped back to profile units and matched by column.",
        "",
        "## Architecture",
        "",
        f"GIN-virtual, {config['num_layer']} layers × {config['emb_dim']}, OGB atom/bond "
        f"features, sum readout, VIB head (μ, σ); decoders "
        f"{', '.join(f'`{n}` ({s.values.shape[1]})' for n, s in graph.spaces.items())}. "
        f"Weights stored as {save_dtype} safetensors.",
        "",
        "## Training data (context graph)",
        "",
        f"{summary['num_nodes']:,} nodes and {summary['num_edges']:,} edges, built by "
        f"`train.context_graph` from `{Path(graph_path).name}`:",
        "",
        "| Nodes | Count |",
        "|---|---|",
        *[f"| {k} | {v:,} |" for k, v in summary["nodes"].items()],
        "",
        "| Edges | Count |",
        "|---|---|",
        *[f"| {k} | {v:,} |" for k, v in summary["edges"].items()],
        "",
        *_gene_line(graph),
        f"Graph construction: `{json.dumps(graph.meta.get('config', {}))}`.",
        "",
        *_exclusions(graph),
        *_warm_start(config),
        "### Provenance",
        "",
        *_provenance(graph),
        "",
        "## Recipe",
        "",
        "```",
        command or "(command not recorded)",
        "```",
        "",
        "| Setting | Value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in config.items()],
        *[f"| runtime.{k} | {v} |" for k, v in runtime.items()],
        "",
        "Loss: α-weighted, NaN-masked BCE-with-logits per feature space (mean over valid "
        "entries) + β·KL(q(z|x)‖N(0, I)) computed analytically; decoders read μ; Adam with the "
        "reference cosine decay (7/16 of a cycle, no warm-up).",
        "",
        "## Metrics",
        "",
        *_metrics(metrics),
        "",
        "## Limitations",
        "",
        f"* Small graph: {summary['nodes'].get('molecule', 0):,} molecules and "
        f"{_profile_count(summary):,} profiles, versus the paper's 129,592 molecules, 128,935 "
        "morphology and 13,795 expression profiles. Most walks never reach a profile, so "
        "expect weaker cellular alignment than the published checkpoint.",
        "* Benchmark molecules (structures, no labels) can be graph nodes; see *Evaluation "
        "sets kept out* above for what was removed.",
        "* Always compare downstream results with a randomly initialized encoder of the same "
        "architecture, which is a strong baseline for frozen embeddings.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return render(card_data(ARCHITECTURE, license, TAGS), "\n".join(body))


def write_model_card(folder: Path | str, **kwargs) -> Path:
    path = Path(folder) / "README.md"
    with atomic_path(path) as tmp:
        tmp.write_text(render_model_card(**kwargs))
    return path
