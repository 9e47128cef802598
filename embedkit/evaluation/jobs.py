"""File-level evaluation jobs: `embedkit evaluate map` (phenotypic activity and consistency
with copairs). Read a profile table, call `embedkit.evaluation.phenotypic`, write the mAP
tables and the plot atomically with their run info, and return the summary lines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from embedkit.errors import InputError
from embedkit.evaluation.phenotypic import (
    LABEL_SEPARATOR,
    MapResult,
    MapSettings,
    counted,
    phenotypic_activity,
    phenotypic_consistency,
)
from embedkit.outputs import check_output_file, summary_line

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


@dataclass
class MapSummary:
    """What `evaluate map` found and wrote, for its summary lines."""

    activity: MapResult
    settings: MapSettings
    seconds: float
    outputs: list[Path]
    consistency: MapResult | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line for activity, one for consistency when asked, then the summary line."""
        act, threshold = self.activity, self.settings.threshold
        groups = counted(len(act.table), "group")
        lines = [
            f"activity by {act.key}: {groups} ({act.rows:,} profiles vs the controls), "
            f"mean mAP {act.mean_map:.3f}, {act.active} active at corrected p < {threshold:g}"
        ]
        if self.consistency is not None:
            con = self.consistency
            mean = f"mean mAP {con.mean_map:.3f}, " if len(con.table) else ""
            lines.append(
                f"consistency by {con.key}: {counted(len(con.table), 'label')} ({con.rows} "
                f"consensus profiles of active groups), {mean}{con.active} consistent at "
                f"corrected p < {threshold:g}"
            )
        counts = f"{groups}, mean mAP {act.mean_map:.3f}, {act.active} active at {threshold:g}"
        details = [*self.notes, f"null size {self.settings.null_size:,}, seed {self.settings.seed}"]
        lines.append(summary_line(counts, self.seconds, self.outputs, details))
        return lines


def _table_output(path: str | Path, overwrite: bool) -> Path:
    path = check_output_file(path, overwrite)
    names = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    if not names or names[-1] not in TABLE_SUFFIXES:
        raise InputError(f"{path}: write the mAP table as {', '.join(TABLE_SUFFIXES)}")
    return path


def consistency_path(output: Path) -> Path:
    """The consistency table's default name: `OUT_consistency.csv` beside `OUT.csv`."""
    suffix = "".join(output.suffixes)
    stem = output.name[: len(output.name) - len(suffix)] if suffix else output.name
    return output.with_name(f"{stem}_consistency{suffix}")


def evaluate_map_file(
    input_path: str | Path,
    output: str | Path,
    group_by: str,
    controls: str,
    *,
    features: list[str] | None = None,
    consistency_by: str | None = None,
    consistency_output: str | Path | None = None,
    plot: str | Path | None = None,
    settings: MapSettings | None = None,
    label_separator: str | None = LABEL_SEPARATOR,
    overwrite: bool = False,
) -> MapSummary:
    """`embedkit evaluate map`: mAP per group against the controls (and per label of
    `consistency_by` over the active groups), written atomically; outputs are checked
    before any work."""
    from embedkit.io import write_table
    from embedkit.plots import plot_format
    from embedkit.profiles.jobs import read_profiles
    from embedkit.provenance import input_fields

    start = time.perf_counter()
    settings = settings or MapSettings()
    output = _table_output(output, overwrite)
    con_output = None
    if consistency_by is not None:
        con_output = _table_output(consistency_output or consistency_path(output), overwrite)
    elif consistency_output is not None:
        raise InputError("--consistency-output needs --consistency-by")
    if plot is not None:
        plot_format(plot)
        plot = check_output_file(plot, overwrite)
    outputs = [p for p in (output, con_output, plot) if p is not None]
    if len({p.resolve() for p in outputs}) < len(outputs):
        raise InputError("the outputs must be different files")

    table = read_profiles(Path(input_path))
    activity = phenotypic_activity(table, group_by, controls, features, settings)
    consistency = None
    if consistency_by is not None:
        consistency = phenotypic_consistency(
            table, group_by, consistency_by, activity, controls, features, settings, label_separator
        )
    info = {
        "step": "evaluate map",
        **input_fields(input_path),
        "group_by": group_by,
        "controls": controls,
        **settings.record(),
        "copairs": _copairs_version(),
    }
    write_table(activity.table, output, run_info={**info, "notes": activity.notes})
    if consistency is not None:
        con_info = {**info, "consistency_by": consistency_by, "label_separator": label_separator}
        write_table(
            consistency.table, con_output, run_info={**con_info, "notes": consistency.notes}
        )
    if plot is not None:
        plot_map(activity, consistency, settings.threshold, plot)
    notes = [*activity.notes, *(consistency.notes if consistency is not None else [])]
    return MapSummary(activity, settings, time.perf_counter() - start, outputs, consistency, notes)


def _copairs_version() -> str:
    from importlib import metadata

    return metadata.version("copairs")


def plot_map(
    activity: MapResult, consistency: MapResult | None, threshold: float, path: Path
) -> Path:
    """mAP against -log10(corrected p), active points coloured, the threshold dashed: the
    figure of copairs' recipes (one panel each for activity and consistency)."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

    from embedkit.plots import save_figure

    results = [("activity", activity, "active")]
    if consistency is not None:
        results.append(("consistency", consistency, "consistent"))
    fig = Figure(figsize=(5.5 * len(results), 4.5))
    for axis, (title, result, word) in zip(
        fig.subplots(1, len(results), squeeze=False)[0], results, strict=True
    ):
        table = result.table
        p = table["corrected_p_value"].astype(float).clip(lower=np.finfo(float).tiny)
        y = -np.log10(p) if len(table) else pd.Series(dtype=float)
        below = table["below_corrected_p"].astype(bool).to_numpy()
        axis.scatter(table["mean_average_precision"][~below], y[~below], s=18, c="0.6")
        axis.scatter(table["mean_average_precision"][below], y[below], s=18, c="tab:red")
        axis.axhline(-np.log10(threshold), color="black", linestyle="--", linewidth=0.8)
        share = f"{100 * below.mean():.0f}%" if len(table) else "none"
        axis.set_title(f"{title} by {result.key}: {word} {below.sum()}/{len(table)} ({share})")
        axis.set_xlabel("mAP")
        axis.set_ylabel("-log10(corrected p)")
        axis.set_xlim(-0.02, 1.02)
        axis.set_ylim(bottom=0)
    fig.tight_layout()
    return save_figure(fig, path)
