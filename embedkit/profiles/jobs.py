"""File-level profile jobs (`embedkit aggregate`, `embedkit normalize`): read a profile
table, call the frame-level operation, write the result with its provenance, and return a
summary. The CLI only parses flags and prints `summary.line()`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from embedkit.outputs import check_output_file, summary_line


def read_profiles(path: Path) -> pd.DataFrame:
    """A profile table by suffix, typed as pandas would (see `embedkit.profiles.reading`)."""
    from embedkit.profiles.reading import read_profiles as read_typed

    return read_typed(path)


def run_info_with_step(path: Path, step: dict) -> dict:
    """The input's run info (model id, revision…) plus this step (with the input's
    portable path and sha256), so provenance travels."""
    from embedkit.io import read_run_info
    from embedkit.provenance import input_fields

    try:
        info = dict(read_run_info(path))
    except (OSError, ValueError, KeyError):
        info = {}
    steps = info.get("profile_steps")
    steps = list(steps) if isinstance(steps, list) else []
    info["profile_steps"] = [*steps, {**step, **input_fields(path)}]
    return info


def write_profiles(table: pd.DataFrame, output: Path, feature_names: list[str], info: dict) -> None:
    """Write atomically by suffix; `feature_names` (any prefix) are the .npz/.h5ad matrix."""
    from embedkit.io import write_table

    write_table(table, output, run_info=info, features=feature_names)


@dataclass
class ProfileSummary:
    """What a profile job did, for the command's one summary line."""

    counts: str
    seconds: float
    output: Path
    notes: list[str] = field(default_factory=list)  # what the user must know about the result

    def line(self) -> str:
        return summary_line(self.counts, self.seconds, self.output, self.notes)


def aggregate_file(
    input_path: str | Path,
    output: str | Path,
    strata: list[str],
    method: str = "median",
    features: list[str] | None = None,
    overwrite: bool = False,
    platemap: str | Path | None = None,
) -> ProfileSummary:
    """`embedkit aggregate`: one profile per stratum, written atomically.

    With `platemap`, the rows are annotated first (`embedkit.profiles.platemap`), so its
    columns can be strata and those constant within a stratum are kept."""
    from embedkit.profiles.aggregate import OBJECT_COUNT, aggregate
    from embedkit.profiles.features import infer_features
    from embedkit.profiles.platemap import annotate, read_platemap

    start = time.perf_counter()
    input_path, output = Path(input_path), check_output_file(output, overwrite)
    plate_map = read_platemap(platemap) if platemap is not None else None
    table = read_profiles(input_path)
    notes = []
    step: dict = {"step": "aggregate", "strata": strata, "method": method}
    if plate_map is not None:
        table, report = annotate(table, plate_map)
        notes.append(report.note(Path(platemap).name))
        step["platemap"] = {**plate_map.provenance, **report.record()}
    out = aggregate(table, strata=strata, method=method, features=features)
    feats = [f for f in infer_features(table, features) if f not in strata]
    write_profiles(out, output, feats, run_info_with_step(input_path, step))
    objects = int(out[OBJECT_COUNT].sum())
    return ProfileSummary(
        f"{len(table):,} rows → {len(out):,} rows ({objects:,} objects), {len(feats)} features, "
        f"{method} by {','.join(strata)}",
        time.perf_counter() - start,
        output,
        notes,
    )


def normalize_file(
    input_path: str | Path,
    output: str | Path,
    method: str,
    controls: str | None = None,
    by: list[str] | None = None,
    features: list[str] | None = None,
    n_components: int | None = None,
    overwrite: bool = False,
) -> ProfileSummary:
    """`embedkit normalize`: features normalized against controls, written atomically."""
    import warnings

    from embedkit.profiles.features import infer_features
    from embedkit.profiles.normalize import (
        PC_PREFIX,
        ZeroMadWarning,
        control_mask,
        group_rows,
        normalize,
        unselected_features,
    )

    start = time.perf_counter()
    input_path, output = Path(input_path), check_output_file(output, overwrite)
    table = read_profiles(input_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ZeroMadWarning)
        out = normalize(
            table, method, controls=controls, by=by, features=features, n_components=n_components
        )
    notes = [str(w.message) for w in caught if issubclass(w.category, ZeroMadWarning)]
    feats_in = infer_features(table, features)
    left_out = unselected_features(table, feats_in, features)
    if left_out:
        notes.append(
            f"{len(left_out)} numeric columns not in --features left out of the output "
            f"(e.g. {left_out[0]})"
        )
    feats_out = [c for c in out.columns if str(c).startswith(PC_PREFIX)] or feats_in
    step = {
        "step": "normalize",
        "method": method,
        "controls": controls,
        "by": by,
        "n_components": n_components,
        **({"notes": notes} if notes else {}),
    }
    write_profiles(out, output, feats_out, run_info_with_step(input_path, step))
    n_controls = int(control_mask(table, controls).sum())
    where = f"{len(group_rows(table, by))} groups of {','.join(by)}" if by else "whole table"
    shape = f"{len(feats_in)} features" + (
        f" → {len(feats_out)} PCs" if feats_out is not feats_in else ""
    )
    return ProfileSummary(
        f"{len(table):,} rows → {len(out):,} rows, {shape}, {method} on {n_controls:,} "
        f"control rows, {where}",
        time.perf_counter() - start,
        output,
        notes,
    )
