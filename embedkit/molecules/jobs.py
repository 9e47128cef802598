"""The file-level molecule job behind `embedkit embed-smiles`: read a table of SMILES, embed
it, write one row per input row (atomically) and return a summary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from embedkit import __version__
from embedkit.errors import InputError
from embedkit.io import embeddings_frame, read_table, write_table
from embedkit.outputs import check_output_file, summary_line

if TYPE_CHECKING:  # torch is imported where a model runs, not to parse a command line
    from embedkit.molecules.embedder import MoleculeEmbedder

ON_ERROR_CHOICES = ("nan", "raise", "drop")


class InvalidMoleculeError(InputError):
    """Raised under `--on-error raise` at the first SMILES RDKit cannot use."""


@dataclass
class EmbedSummary:
    rows: int
    embedded: int
    invalid: int
    dropped: int
    seconds: float
    output: Path
    renamed: dict[str, str] = field(default_factory=dict)  # input columns kept under new names

    @property
    def per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        dropped = f", {self.dropped} dropped" if self.dropped else ""
        counts = f"{self.rows} rows in, {self.embedded} embedded, {self.invalid} invalid{dropped}"
        rate = f"{self.per_second:,.0f} molecules/s"
        kept = ", ".join(f"{a} as {b}" for a, b in self.renamed.items())
        details = [f"input columns kept under new names: {kept}" if kept else ""]
        return summary_line(counts, self.seconds, self.output, details, rate=rate)


def pick_smiles_column(table: pd.DataFrame, requested: str | None, source: str) -> str:
    """The requested column, else one named 'smiles' in any case, else the first column."""
    columns = [str(c) for c in table.columns]
    if requested is not None:
        if requested not in columns:
            raise InputError(
                f"{source}: no column {requested!r}; columns are: {', '.join(columns[:20])}"
            )
        return requested
    for column in columns:
        if column.lower() in ("smiles", "metadata_smiles"):
            return column
    return columns[0]


def read_smiles_table(
    path: str | Path, smiles_column: str | None, id_column: str | None
) -> tuple[pd.DataFrame, str]:
    """A non-empty table, its SMILES column, and a checked id column (embed, retrieve)."""
    table = read_table(Path(path), keep_blank_rows=True)  # a blank line is an invalid row
    if len(table) == 0:
        raise InputError(f"{path}: the table has a header but no rows")
    column = pick_smiles_column(table, smiles_column, str(path))
    if id_column is not None and id_column not in table.columns:
        raise InputError(f"{path}: no id column {id_column!r}")
    return table, column


# The columns embedkit writes itself; an input column of the same name is kept, renamed.
OWN_COLUMNS = (
    "Metadata_ID",
    "Metadata_SMILES",
    "Metadata_Model",
    "Metadata_Valid",
    "Metadata_Error",
)


def metadata_frame(
    table: pd.DataFrame, smiles_column: str, id_column: str | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Carry every input column, renamed into the pycytominer `Metadata_` namespace, and
    the renames that kept an input column from being overwritten by one of embedkit's own
    (`Valid` → `Metadata_Valid_input`, …): a user's column is never replaced nor dropped."""
    meta = pd.DataFrame(index=table.index)
    if id_column is not None:
        meta["Metadata_ID"] = table[id_column].astype(str)
    meta["Metadata_SMILES"] = table[smiles_column]
    taken = set(OWN_COLUMNS) | {str(c) for c in table.columns if str(c).startswith("Metadata_")}
    renamed = {}
    for column in table.columns:
        if column in (smiles_column, id_column):
            continue
        name = column if str(column).startswith("Metadata_") else f"Metadata_{column}"
        if name in OWN_COLUMNS or name in meta.columns:
            base, n = f"{name}_input", 1
            name = base
            while name in taken or name in meta.columns:
                n += 1
                name = f"{base}{n}"
            renamed[str(column)] = name
        meta[name] = table[column]
    return meta, renamed


def embed_smiles_file(
    input_path: str | Path,
    output_path: str | Path,
    embedder: MoleculeEmbedder,
    smiles_column: str | None = None,
    id_column: str | None = None,
    batch_size: int = 256,
    num_workers: int | None = None,
    on_error: str = "nan",
    progress: bool = False,
    overwrite: bool = False,
) -> EmbedSummary:
    """Read, embed and write atomically; one output row per input row unless `drop`.
    An existing output is refused unless `overwrite`."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    start = time.perf_counter()
    input_path, output_path = Path(input_path), check_output_file(output_path, overwrite)
    table, column = read_smiles_table(input_path, smiles_column, id_column)
    smiles = table[column].tolist()
    result = embedder.embed(
        smiles, batch_size=batch_size, num_workers=num_workers, progress=progress
    )
    invalid = np.flatnonzero(~result.valid)
    if on_error == "raise" and len(invalid):
        row = int(invalid[0])
        raise InvalidMoleculeError(
            f"{input_path}: row {row + 1} ({column}={str(smiles[row])[:60]!r}): "
            f"{result.errors[row]}; {len(invalid)} invalid rows in all; nothing was written"
        )
    meta, renamed = metadata_frame(table, column, id_column)
    meta["Metadata_Model"] = embedder.run_info.get("model_id", "")
    meta["Metadata_Valid"] = result.valid
    meta["Metadata_Error"] = result.errors
    out = embeddings_frame(meta, result.embeddings)
    dropped = 0
    if on_error == "drop":
        out = out[result.valid].reset_index(drop=True)
        dropped = len(invalid)
    run_info = {
        "embedkit_version": __version__,
        **embedder.run_info,
        "input": str(input_path),
        "smiles_column": column,
        "renamed_columns": renamed,
        "preprocessing": "RDKit parse; OGB 9 atom / 3 bond features; embedding = mu of q(z|x)",
        "precision": embedder.precision,
    }
    write_table(out, output_path, run_info)
    return EmbedSummary(
        rows=len(table),
        embedded=int(result.valid.sum()),
        invalid=len(invalid),
        dropped=dropped,
        seconds=time.perf_counter() - start,
        output=output_path,
        renamed=renamed,
    )
