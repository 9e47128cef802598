"""The file-level jobs behind `embedkit graph build|info`: read the inputs, build or load
the graph, write it atomically, and return what to print (the CLI only parses flags)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from embedkit.errors import InputError
from embedkit.outputs import check_output_file, summary_line

EXAMPLES = 5


@dataclass
class GraphSummary:
    """The build's one summary line, and the warnings to print before it."""

    counts: str
    details: list[str]
    seconds: float
    output: Path
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        return summary_line(self.counts, self.seconds, self.output, self.details)


def _examples(names: list[str], total: int | None = None) -> str:
    total = len(names) if total is None else total
    more = f", … ({total - EXAMPLES} more)" if total > EXAMPLES else ""
    return ", ".join(names[:EXAMPLES]) + more


def read_labels(path: str | Path, label_column: str) -> list[str]:
    """Distinct non-empty values of `label_column` in a table, first-seen order."""
    from embedkit.io import read_table

    table = read_table(path)
    if label_column not in table.columns:
        raise InputError(
            f"{path}: no column {label_column!r} (columns: "
            f"{', '.join(map(str, table.columns[:12]))})"
        )
    values = table[label_column].dropna().astype(str).str.strip()
    return list(dict.fromkeys(v for v in values if v))


def build_graph_file(
    perturbations: str | Path,
    output: str | Path,
    string: list[str | Path] = (),
    hetionet: list[str | Path] = (),
    edges: list[str | Path] = (),
    stitch: list[str | Path] = (),
    image_features: str | Path | None = None,
    label_column: str | None = None,
    features: list[str] | None = None,
    image_threshold: float | None = None,
    string_threshold: float | None = None,
    walk_steps: int | None = None,
    walk_min_weight: float | None = None,
    combine: str = "mean",
    overwrite: bool = False,
) -> GraphSummary:
    """`embedkit graph build`: sources → one graph `.npz` over the table's perturbations."""
    from embedkit.graph import build as b
    from embedkit.graph.mapping import read_perturbation_table

    start = time.perf_counter()
    output = check_output_file(output, overwrite)
    if output.suffix.lower() != ".npz":
        raise InputError(f"{output}: a perturbation graph is written as .npz; name it *.npz")
    if (image_features is None) != (label_column is None):
        raise InputError("--image-features and --label-column go together; give both or neither")
    table = read_perturbation_table(perturbations)
    threshold = b.STRING_THRESHOLD if string_threshold is None else string_threshold
    sources = [b.string_source(p, table, threshold) for p in string]
    steps = b.WALK_STEPS if walk_steps is None else walk_steps
    floor = b.MIN_WEIGHT if walk_min_weight is None else walk_min_weight
    sources += [b.hetionet_source(p, table, steps, floor) for p in hetionet]
    sources += [b.edge_list_source(p, table) for p in edges]
    sources += [b.stitch_source(p, table, threshold) for p in stitch]
    if image_features is not None:
        from embedkit.profiles.jobs import read_profiles

        frame = read_profiles(Path(image_features))
        cut = b.IMAGE_THRESHOLD if image_threshold is None else image_threshold
        sources.append(
            b.image_source(frame, label_column, table, features, cut, path=image_features)
        )
    graph, report = b.build_graph(table, sources, combine)
    graph.save(output)

    warnings = []
    if report.uncovered:
        warnings.append(
            f"{len(report.uncovered)} of {report.perturbations} perturbations have no gene or "
            f"id in any source and stay isolated: {_examples(report.uncovered)}"
        )
    for name, d in report.per_source.items():
        if d["covered_perturbations"] == 0:
            warnings.append(
                f"{name} knows none of the perturbations' genes or ids (check the gene "
                "symbols, or the compound column for STITCH)"
            )
        if d.get("labels_not_in_table"):
            warnings.append(
                f"{name}: {d['labels_not_in_table']} labels are not in the perturbation table "
                "and were ignored"
            )
    shared = report.shared_gene_pairs
    sources_note = ", ".join(
        f"{name} {d['edges']:,} edges over {d['covered_perturbations']:,} perturbations"
        for name, d in report.per_source.items()
    )
    return GraphSummary(
        f"{report.perturbations:,} perturbations, {report.edges:,} edges, "
        f"{report.isolated:,} isolated, {len(report.uncovered):,} with no gene in any source",
        [
            f"{combine} of {len(sources)} sources ({sources_note})",
            f"{shared:,} pair{'s share' if shared != 1 else ' shares'} a gene",
        ],
        time.perf_counter() - start,
        output,
        warnings,
    )


def _source_line(name: str, d: dict) -> str:
    what = d.get("weighting", "")
    return (
        f"  {name}: {d.get('edges', 0):,} edges, {d.get('covered_perturbations', 0):,} "
        f"perturbations known ({what})"
    )


def describe_graph(
    path: str | Path, labels: str | Path | None = None, label_column: str | None = None
) -> str:
    """`embedkit graph info`: sizes, degrees, isolated nodes, sources, label coverage."""
    from embedkit.graph.graph import PerturbationGraph

    if (labels is None) != (label_column is None):
        raise InputError("--labels and --label-column go together; give both or neither")
    graph = PerturbationGraph.load(path)
    info = graph.info()
    n = info["perturbations"]
    density = info["edges"] / (n * (n - 1) / 2) if n > 1 else 0.0
    lines = [
        f"graph:         {path}",
        f"perturbations: {n:,}",
        f"edges:         {info['edges']:,} (density {density:.4f}; weights "
        f"{info['weight_min']:.3g}–{info['weight_max']:.3g}, median {info['weight_median']:.3g})",
        f"degree:        min {info['degree_min']}, median {info['degree_median']:g}, "
        f"mean {info['degree_mean']:.2f}, max {info['degree_max']}",
        f"isolated:      {info['isolated']:,}"
        + (
            f" ({_examples(info['isolated_examples'], info['isolated'])})"
            if info["isolated"]
            else ""
        ),
    ]
    sources = info["sources"]
    if sources.get("combine"):
        lines.append(f"combined by:   {sources.get('combine_rule', sources['combine'])}")
    inputs = sources.get("inputs", {})
    if inputs:
        lines.append("sources:")
        lines += [_source_line(name, d) for name, d in inputs.items()]
    if labels is not None:
        cov = graph.coverage(read_labels(labels, label_column))
        shown = cov["missing_examples"][:EXAMPLES]
        missing = f": {', '.join(shown)}" + (" …" if cov["missing"] > len(shown) else "")
        lines.append(
            f"coverage:      {cov['covered']:,} of {cov['labels']:,} labels of {labels} "
            f"({100 * cov['fraction']:.1f}%) are in the graph, {cov['connected']:,} with an "
            f"edge; {cov['missing']:,} missing{missing if cov['missing'] else ''}"
        )
    return "\n".join(lines)
